"""Stage 6, the result: each resolution's pick trained through the trainer (final/r{R}/) and measured
on the weights genet_jax.nas.weights names, the best one chosen and search_result.json written with
the MasterNet, the regression quality and every resolution's selection (a records.SearchResult)."""
from __future__ import annotations

from genet_jax.arch.structure_string import to_structure_string
from genet_jax.nas.context import SearchContext, SearchError
from genet_jax.nas.master import load_master
from genet_jax.nas.records import (MasterSummary, NoFit, ResolutionPick, SearchResult, SelectedStructure,
                                   SelectionRecord, TrainedPick)
from genet_jax.nas.store import write_json
from genet_jax.nas.train_configs import pick_train_config
from genet_jax.nas.weights import measured_evaluation
from genet_jax.training.loop import train

RESULT_FILE = "search_result.json"


def train_pick(ctx: SearchContext, selection: SelectionRecord) -> TrainedPick:
    """The selected structure trained from scratch."""
    final = train(pick_train_config(ctx.config, selection.resolution, selection.spec), ctx.sources())
    if final.interrupted:
        raise SearchError("interrupted (SIGTERM); re-run the same command to resume")
    weights, evaluation = measured_evaluation(final)
    return TrainedPick(accuracy=evaluation["top1"], top5=evaluation["top5"], weights=weights,
                       checkpoint=final.checkpoint_dir)


def write_search_result(ctx: SearchContext, quality: dict, per_resolution: list[ResolutionPick],
                        failed: list[NoFit]) -> SearchResult:
    """search_result.json: the best resolution's pick (by `best_resolution`), the MasterNet, the
    regression quality and every resolution's selection (or why none fits)."""
    if not per_resolution:
        raise SearchError("no resolution has a structure under the budget: " + "; ".join(
            f"{f.resolution}: {f.error}" for f in failed))
    master = load_master(ctx)
    best, resolution_choice = best_resolution(per_resolution)
    trained = best.trained
    selected = SelectedStructure(
        spec=best.spec, structure_string=to_structure_string(best.spec), resolution=best.resolution,
        predicted_accuracy=best.predicted_accuracy, measured_latency_ms=best.measured_latency_ms,
        budget_ms=best.budget_ms, trained_accuracy=None if trained is None else trained.accuracy,
        trained_weights=None if trained is None else trained.weights)
    result = SearchResult(
        selected=selected, master=MasterSummary(spec=master.spec, accuracy=master.accuracy, weights=master.weights,
                                                measured_latency_ms=ctx.probe(master.spec)),
        regression_quality=quality, resolution_choice=resolution_choice, resolutions=tuple(per_resolution),
        resolutions_without_a_fit=tuple(failed), probe_settings=dict(ctx.settings.__dict__))
    write_json(ctx.path(RESULT_FILE), result.to_json())
    return result


def final_training_configured(ctx: SearchContext) -> bool:
    return ctx.config.final.epochs > 0 or ctx.config.final.num_train_steps > 0


def best_resolution(per_resolution: list[ResolutionPick]) -> tuple[ResolutionPick, str]:
    """The best entry, by trained accuracy when the picks were trained, else by predicted accuracy;
    and how it was chosen."""
    trained = [e for e in per_resolution if e.trained is not None]
    if trained:
        return max(trained, key=lambda e: e.trained.accuracy), \
            "trained accuracy on the NAS validation split"
    return max(per_resolution, key=lambda e: e.predicted_accuracy), \
        "predicted accuracy (no final training: the model has no resolution term)"
