"""Stage 5, selection per resolution (genet_jax.nas.candidates): random structures scored by the
local linear model and the calibrated latency table, the most accurate under the budget measured
with the full-network probe; kept in selection_r{R}.json (a records.SelectionRecord) with
plots/candidates_r{R}.png. In a multi-process job process 0 measures every latency for all
(store.MeasurementCache), so every process makes the same pick from the same numbers."""
from __future__ import annotations

import logging
import os
import time

import numpy as np
from tqdm import tqdm

from genet_jax.arch.spec import NetworkSpec
from genet_jax.arch.structure_string import to_structure_string
from genet_jax.latency.timing import measurement_context
from genet_jax.nas import report
from genet_jax.nas.calibration import calibrated_table, check_table, type_keys_of
from genet_jax.nas.candidates import Candidates, Selection, predict_accuracy, predict_latency, sample_candidates, select
from genet_jax.nas.context import SearchContext
from genet_jax.nas.local_linear import LocalLinearModel
from genet_jax.nas.records import SelectionRecord, load_record
from genet_jax.nas.store import fingerprint, write_json

log = logging.getLogger("genet_jax.search")
SECONDS_PER_MINUTE = 60
MIN_TIMED_SECONDS = 1e-9  # scoring timed as zero seconds (a coarse clock) still gives a finite rate


def budget_ms(ctx: SearchContext, master_spec: NetworkSpec) -> float:
    """The latency budget: `selection.budget_ms`, else a fraction of the MasterNet's probed latency."""
    sel = ctx.config.selection
    if sel.budget_ms > 0:
        return float(sel.budget_ms)
    return float(sel.budget_master_fraction) * ctx.probe(master_spec)


def run_selection(ctx: SearchContext, model: LocalLinearModel, resolution: int) -> SelectionRecord:
    """selection_r{R}.json: read back when selected from the same inputs, else selected and written."""
    path = ctx.path(f"selection_r{resolution}.json")
    budget = budget_ms(ctx, model.master)
    inputs = fingerprint(model.to_dict(), budget, ctx.settings_key, ctx.config.seed,
                         ctx.config.selection.to_dict(), ctx.config.latency.to_dict())
    if os.path.exists(path):
        stored = load_record(SelectionRecord, path)
        if stored.fingerprint == inputs:
            return logged(stored)
        log.info("%s was selected from other inputs (fine-tune results, budget or settings): redoing", path)
    return logged(select_at(ctx, model, resolution, budget, inputs))


def logged(selection: SelectionRecord) -> SelectionRecord:
    """`selection`, its pick and measurements logged in full precision (in a multi-process job every
    process logs the same line)."""
    log.info("selection @%d: %s, predicted top-1 %r, measured %r ms/image, budget %r ms/image",
             selection.resolution, to_structure_string(selection.spec), selection.predicted_accuracy,
             selection.measured_latency_ms, selection.budget_ms)
    return selection


def select_at(ctx: SearchContext, model: LocalLinearModel, resolution: int, budget: float,
              inputs: str) -> SelectionRecord:
    """Selection at `resolution` under `budget`, written to selection_r{R}.json with `inputs` (its fingerprint)."""
    path = ctx.path(f"selection_r{resolution}.json")
    master = model.master.replace(resolution=resolution)
    table = calibrated_table(ctx, model, resolution, budget)
    type_keys = type_keys_of(model, master)
    sel = ctx.config.selection
    started = time.perf_counter()
    candidates = sample_candidates(master, type_keys, ctx.space, sel.num_candidates, ctx.config.seed)
    accuracy = predict_accuracy(model, candidates)
    latency = predict_latency(table, candidates, master.stem_width)
    scoring_seconds = time.perf_counter() - started
    with tqdm(desc=f"full-network probes @{resolution}", unit="net", leave=False) as bar:
        choice = select(master, candidates, accuracy, latency, budget, ctx.probe, sel.top_k,
                        slack=sel.table_slack, progress=bar.update)
    table_check = check_table(ctx, table, master, type_keys, budget)
    result = SelectionRecord(
        fingerprint=inputs, resolution=resolution, budget_ms=budget,
        latency_measured_on=measurement_context(ctx.settings),
        **_choice_fields(choice), **_candidate_counts(candidates, latency, budget, sel.table_slack),
        scoring_seconds=scoring_seconds,
        candidates_per_minute=len(candidates) / max(scoring_seconds, MIN_TIMED_SECONDS) * SECONDS_PER_MINUTE,
        latency_table=table_check, measured=tuple(choice.measured),
        selection_probes_median_abs_relative_error=_probe_error(choice))
    report.plot_candidates(ctx.path("plots", f"candidates_r{resolution}.png"), latency, accuracy, budget,
                           choice.measured, choice, ctx.config.seed)
    write_json(path, result.to_json())
    return result


def _choice_fields(choice: Selection) -> dict:
    return {"spec": choice.spec, "predicted_accuracy": choice.predicted_accuracy,
            "predicted_latency_ms": choice.predicted_latency, "measured_latency_ms": choice.measured_latency}


def _candidate_counts(candidates: Candidates, latency: np.ndarray, budget: float, slack: float) -> dict:
    return {"candidates": len(candidates), "candidates_under_budget": int(np.sum(latency <= budget)),
            "candidates_within_slack": int(np.sum(latency <= budget * (1 + slack)))}


def _probe_error(choice: Selection) -> float:
    """Median relative error of the table on the structures selection probed."""
    return float(np.median([abs(m["predicted_latency"] - m["measured_latency"]) / m["measured_latency"]
                            for m in choice.measured]))
