"""Stage 6, the result: each resolution's pick trained through the trainer (final/r{R}/), the best
one chosen and search_result.json written with the MasterNet, the regression quality and every
resolution's selection."""
from __future__ import annotations

import logging

from genet_jax.arch.spec import NetworkSpec
from genet_jax.arch.structure_string import to_structure_string
from genet_jax.nas.candidates import NoStructureFits
from genet_jax.nas.context import SearchContext, SearchError, run_config
from genet_jax.nas.local_linear import LocalLinearModel
from genet_jax.nas.master import load_master
from genet_jax.nas.regression import run_regression
from genet_jax.nas.selection import run_selection
from genet_jax.nas.store import write_json
from genet_jax.training.loop import train

log = logging.getLogger("genet_jax.search")
RESULT_FILE = "search_result.json"


def train_pick(ctx: SearchContext, selection: dict) -> dict:
    """{'accuracy', 'top5', 'checkpoint'} of the selected structure trained from scratch."""
    spec = NetworkSpec.from_dict(selection["spec"])
    run = run_config(ctx, ctx.path("final", f"r{selection['resolution']}"), spec, ctx.config.final.epochs,
                     steps=ctx.config.final.num_train_steps)
    final = train(run, ctx.sources())
    if final.interrupted:
        raise SearchError("interrupted (SIGTERM); re-run the same command to resume")
    return {"accuracy": final.eval["top1"], "top5": final.eval["top5"], "checkpoint": final.checkpoint_dir}


def run_final(ctx: SearchContext, allow_missing: bool = False) -> dict:
    """Regression, then selection (and final training) per resolution; search_result.json."""
    master = load_master(ctx)
    model, quality = run_regression(ctx, allow_missing)
    per_resolution, failed = select_per_resolution(ctx, model)
    if not per_resolution:
        raise SearchError("no resolution has a structure under the budget: " + "; ".join(
            f"{f['resolution']}: {f['error']}" for f in failed))
    best, resolution_choice = best_resolution(per_resolution)
    spec = NetworkSpec.from_dict(best["spec"])
    result = {"selected": {"spec": spec.to_dict(), "structure_string": to_structure_string(spec),
                           "resolution": best["resolution"], "predicted_accuracy": best["predicted_accuracy"],
                           "measured_latency_ms": best["measured_latency_ms"], "budget_ms": best["budget_ms"],
                           "trained_accuracy": best.get("trained", {}).get("accuracy")},
              "master": {"spec": master["spec"], "accuracy": master["accuracy"],
                         "measured_latency_ms": ctx.probe(NetworkSpec.from_dict(master["spec"]))},
              "regression_quality": quality, "resolution_choice": resolution_choice,
              "resolutions": per_resolution, "resolutions_without_a_fit": failed,
              "probe_settings": ctx.settings.__dict__}
    write_json(ctx.path(RESULT_FILE), result)
    return result


def select_per_resolution(ctx: SearchContext, model: LocalLinearModel) -> tuple[list[dict], list[dict]]:
    """Each resolution's selection (less its probe list) with its trained accuracy when final
    training is configured; and the resolutions where no structure fits, with the reason."""
    per_resolution, failed = [], []
    for resolution in ctx.config.selection.resolutions:
        try:
            chosen = run_selection(ctx, model, int(resolution))
        except NoStructureFits as e:
            log.warning("resolution %d: %s", resolution, e)
            failed.append({"resolution": int(resolution), "error": str(e)})
            continue
        entry = {k: v for k, v in chosen.items() if k != "measured"}
        if ctx.config.final.epochs > 0 or ctx.config.final.num_train_steps > 0:
            entry["trained"] = train_pick(ctx, chosen)
        per_resolution.append(entry)
    return per_resolution, failed


def best_resolution(per_resolution: list[dict]) -> tuple[dict, str]:
    """The best entry, by trained accuracy when the picks were trained, else by predicted accuracy;
    and how it was chosen."""
    trained = [e for e in per_resolution if "trained" in e]
    if trained:
        return max(trained, key=lambda e: e["trained"]["accuracy"]), \
            "trained accuracy on the NAS validation split"
    return max(per_resolution, key=lambda e: e["predicted_accuracy"]), \
        "predicted accuracy (no final training: the model has no resolution term)"
