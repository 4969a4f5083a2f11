"""Stage 4, the latency table per resolution (genet_jax.nas.latency_table): built once from part
probes (latency/parts_r{R}.json), calibrated against full-network probes of the MasterNet and of
structures near the budget, kept in latency/table_r{R}.json; then checked against probes of other
near-budget structures (plots/latency_table_r{R}.png)."""
from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np

from genet_jax.arch.spec import NetworkSpec
from genet_jax.nas import report
from genet_jax.nas.candidates import predict_latency, sample_candidates
from genet_jax.nas.context import SearchContext
from genet_jax.nas.latency_table import LatencyTable, PartProbeCache, build_latency_table
from genet_jax.nas.local_linear import LocalLinearModel, fit_quality
from genet_jax.nas.store import fingerprint, read_json, write_json

log = logging.getLogger("genet_jax.search")

NEAR_BUDGET_POOL = 20_000  # random structures drawn to find those near the budget
# "Near the budget": the table puts them within +-30% of it, where selection decides.
NEAR_BUDGET_LOW, NEAR_BUDGET_HIGH = 0.7, 1.3
# Seed offsets of the near-budget draws, distinct primes so the calibration probes and the check
# probes are different structures (a check on the calibration set would flatter the table); the
# values are part of a search's reproducibility and must not change.
CALIBRATION_SEED_OFFSET = 7919
CHECK_SEED_OFFSET = 104729


def type_keys_of(model: LocalLinearModel, master: NetworkSpec) -> list[list[str]]:
    """Per super-block, the types selection may use: those the regression has a fit for."""
    return [model.allowed_types(i) for i in range(len(master.blocks))]


def near_budget(ctx: SearchContext, table: LatencyTable, master: NetworkSpec, type_keys: list[list[str]],
                budget: float, count: int, seed: int) -> list[NetworkSpec]:
    """`count` random structures (never the MasterNet) the table puts near the budget: `rows_near_budget`."""
    pool = sample_candidates(master, type_keys, ctx.space, NEAR_BUDGET_POOL, seed)
    rows = rows_near_budget(predict_latency(table, pool, master.stem_width), budget, count, seed)
    return [pool.spec(master, row) for row in rows]


def rows_near_budget(predicted: np.ndarray, budget: float, count: int, seed: int) -> list[int]:
    """Up to `count` rows, never row 0 (the MasterNet), drawn at random from those predicted within
    NEAR_BUDGET_LOW..HIGH of the budget; where fewer lie there (a budget far from every structure, or
    timings skewed by a loaded machine), the rest are the rows nearest to it in ratio. Sorted."""
    predicted = np.asarray(predicted, dtype=np.float64)
    near = (predicted >= NEAR_BUDGET_LOW * budget) & (predicted <= NEAR_BUDGET_HIGH * budget)
    near[:1] = False
    rows = np.flatnonzero(near)
    picked = [int(r) for r in np.random.default_rng(seed).choice(rows, min(count, len(rows)), replace=False)] \
        if len(rows) else []
    if len(picked) < count:
        distance = np.abs(np.log(np.maximum(predicted, np.finfo(np.float64).tiny) / budget))
        distance[near] = np.inf
        distance[:1] = np.inf
        order = [int(row) for row in np.argsort(distance, kind="stable") if np.isfinite(distance[row])]
        picked += order[:count - len(picked)]
    return sorted(picked)


def calibrated_table(ctx: SearchContext, model: LocalLinearModel, resolution: int, budget: float) -> LatencyTable:
    """The table at `resolution`: read back when built from the same inputs, else built and calibrated."""
    path = ctx.path("latency", f"table_r{resolution}.json")
    master = model.master.replace(resolution=resolution)
    type_keys = type_keys_of(model, master)
    inputs = fingerprint(master.to_dict(), type_keys, ctx.settings_key, budget, ctx.config.seed,
                         ctx.config.latency.to_dict(), ctx.config.space.to_dict())
    if os.path.exists(path):
        stored = read_json(path)
        if stored.get("fingerprint") == inputs:
            return LatencyTable.from_dict(stored["table"])
        log.info("%s was built for other inputs (types, settings or budget): rebuilding", path)
    parts = PartProbeCache(ctx.path("latency", f"parts_r{resolution}.json"))
    table = build_latency_table(model.master, type_keys, ctx.space, resolution, ctx.settings,
                                ctx.config.latency.grid_points, timer=parts,
                                line_points=ctx.config.latency.line_points)
    if ctx.config.latency.calibration_probes:
        calibrate(ctx, table, master, type_keys, budget)
    write_json(path, {"fingerprint": inputs, "table": table.to_dict()})
    return table


def calibrate(ctx: SearchContext, table: LatencyTable, master: NetworkSpec, type_keys: list[list[str]],
              budget: float) -> None:
    """A first scale from the MasterNet's full-network probe (to find structures near the budget),
    then the power-law fit over the MasterNet and those structures."""
    raw_master, measured_master = table.predict_spec(master), ctx.probe(master)
    table.calibrate([raw_master], [measured_master])
    specs = near_budget(ctx, table, master, type_keys, budget, ctx.config.latency.calibration_probes,
                        ctx.config.seed + CALIBRATION_SEED_OFFSET)
    table_raw = dataclasses.replace(table, scale=1.0, exponent=1.0)
    raw = [raw_master] + [table_raw.predict_spec(spec) for spec in specs]
    measured = [measured_master] + ctx.probe.many(specs, "calibration probes")
    table.calibrate(raw, measured)


def check_table(ctx: SearchContext, table: LatencyTable, master: NetworkSpec, type_keys: list[list[str]],
                budget: float) -> dict:
    """The table against full-network probes of near-budget structures it was not calibrated on."""
    count = ctx.config.latency.validation_probes
    specs = near_budget(ctx, table, master, type_keys, budget, count, ctx.config.seed + CHECK_SEED_OFFSET) \
        if count >= 1 else []
    if not specs:
        return {"pairs": 0, "scale": table.scale, "exponent": table.exponent}
    predicted = np.asarray([table.predict_spec(spec) for spec in specs])
    measured = np.asarray(ctx.probe.many(specs, "table check probes"))
    uncalibrated = table.uncalibrated(predicted)
    quality = fit_quality(measured, predicted)
    report.plot_latency_table(ctx.path("plots", f"latency_table_r{master.resolution}.png"),
                              measured, predicted, uncalibrated)
    return {"pairs": int(len(measured)), "scale": table.scale, "exponent": table.exponent,
            "median_abs_relative_error": float(np.median(np.abs(predicted - measured) / measured)),
            "median_abs_relative_error_uncalibrated": float(np.median(np.abs(uncalibrated - measured) / measured)),
            "spearman": quality["spearman"],
            "probes": [{"predicted_ms": float(p), "measured_ms": float(m)} for p, m in zip(predicted, measured)]}
