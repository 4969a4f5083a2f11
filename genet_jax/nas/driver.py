"""Sequencing of the LLR-NAS stages. Each stage writes everything expensive to the workdir the
moment it exists and reads back what is there, so re-running the same command redoes nothing that
finished:

    master.json                     MasterNet spec, NAS-validation accuracy A*, checkpoint
    masternet/                      its trainer workdir (when the search trains it)
    results/finetunes-*.jsonl       one line per finished fine-tune (one file per shard)
    finetunes/<key>/                a fine-tune's trainer workdir while it runs (resumable)
    pseudo_gradients.{json,csv}     the local linear model and its held-out quality
    latency/table_r{R}.json         the latency lookup table per resolution
    latency/parts_r{R}.json         every part probe behind it (a killed table build resumes)
    latency/probes.json             every full-network probe (spec key @ resolution -> ms/image)
    selection_r{R}.json, final/r{R} selection and training of the pick per resolution
    search_result.json, plots/*.png

The stages, one module each over a SearchContext (genet_jax.nas.context): master, finetune,
regression, selection (which builds its latency table through calibration), final (training the
picks, the result). They hand each other typed records (genet_jax.nas.records), the files above,
and derive every trainer config through genet_jax.nas.train_configs. The command line's `select`
stage is regression, then selection and final training per resolution, then the result.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Optional

import ml_collections

from genet_jax.nas.candidates import NoStructureFits
from genet_jax.nas.context import SearchContext, SearchError, open_context
from genet_jax.nas.final import final_training_configured, train_pick, write_search_result
from genet_jax.nas.finetune import run_finetunes
from genet_jax.nas.local_linear import LocalLinearModel
from genet_jax.nas.master import run_master
from genet_jax.nas.records import NoFit, ResolutionPick
from genet_jax.nas.regression import run_regression
from genet_jax.nas.selection import run_selection
from genet_jax.nas.store import together_with_every_process
from genet_jax.workdir_lock import create_workdir, hold_workdir, shard_lock_file

__all__ = ["STAGES", "SearchError", "run_search"]

log = logging.getLogger("genet_jax.search")
# `all` runs them in this order; `select` is regression, latency table, selection and final training.
STAGES = ("master", "finetune", "select")


def run_search(config: ml_collections.ConfigDict, stage: str = "all", shard: tuple[int, int] = (0, 1),
               allow_missing: bool = False,
               on_stage: Optional[Callable[[str, Any], None]] = None) -> SearchContext:
    """Run `stage` (or `all`) of the search `config` describes; `shard` = (i, n) fine-tunes jobs
    i, i+n, ... only; `allow_missing` selects with the fine-tune results there are. After each stage
    `on_stage(stage, outcome)`: the MasterRecord, the number of fine-tunes run now, the SearchResult."""
    if stage != "all" and stage not in STAGES:
        raise ValueError(f"stage must be 'all' or one of {STAGES}, got {stage!r}")
    ctx = open_context(config)
    create_workdir(ctx.workdir)
    on_stage = on_stage or (lambda name, outcome: None)
    if stage == "finetune" and shard[1] > 1:  # shards run side by side: each excludes only itself and the rest
        with hold_workdir(ctx.workdir, shared=True), hold_workdir(ctx.workdir, shard_lock_file(*shard)):
            _run_stages(ctx, stage, shard, allow_missing, on_stage)
    else:
        with hold_workdir(ctx.workdir):
            _run_stages(ctx, stage, shard, allow_missing, on_stage)
    return ctx


def _run_stages(ctx: SearchContext, stage: str, shard: tuple[int, int], allow_missing: bool,
                on_stage: Callable[[str, Any], None]) -> None:
    if stage in ("all", "master"):
        on_stage("master", run_master(ctx))
        together_with_every_process()  # process 0 writes master.json, which every process reads next
    if stage in ("all", "finetune"):
        on_stage("finetune", run_finetunes(ctx, *shard))
        together_with_every_process()  # process 0 appends the results, which every process regresses on
    if stage in ("all", "select"):
        regression = run_regression(ctx, allow_missing)
        per_resolution, failed = [], []
        for resolution in ctx.config.selection.resolutions:
            try:
                per_resolution.append(select_and_train(ctx, regression.model, int(resolution)))
            except NoStructureFits as e:
                log.warning("resolution %d: %s", resolution, e)
                failed.append(NoFit(resolution=int(resolution), error=str(e)))
        on_stage("select", write_search_result(ctx, regression.quality, per_resolution, failed))


def select_and_train(ctx: SearchContext, model: LocalLinearModel, resolution: int) -> ResolutionPick:
    """The selection at `resolution` with, when final training is configured, its pick's training."""
    chosen = run_selection(ctx, model, resolution)
    return ResolutionPick.of(chosen, train_pick(ctx, chosen) if final_training_configured(ctx) else None)
