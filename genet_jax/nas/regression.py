"""Stage 3, regression: every shard's fine-tune results merged, the local linear model
(genet_jax.nas.local_linear) fitted to them and written with its in-sample and leave-one-out
quality to pseudo_gradients.{json,csv} and plots/accuracy_predicted_vs_measured.png."""
from __future__ import annotations

import numpy as np

from genet_jax.arch.spec import NetworkSpec
from genet_jax.nas import report, store
from genet_jax.nas.context import SearchContext, SearchError
from genet_jax.nas.finetune import jobs, results_dir
from genet_jax.nas.local_linear import LocalLinearModel, Sample, fit_local_linear_model, fit_quality, leave_one_out
from genet_jax.nas.master import load_master
from genet_jax.nas.store import write_json
from genet_jax.nas.weights import WEIGHTS_FIELD, check_finetune_weights, finetune_weights

MISSING_JOBS_SHOWN = 10  # the error names this many of the jobs without a result


def run_regression(ctx: SearchContext, allow_missing: bool = False) -> tuple[LocalLinearModel, dict]:
    """The fitted model and its quality {'in_sample', 'leave_one_out'}."""
    master = load_master(ctx)
    master_spec = NetworkSpec.from_dict(master["spec"])
    baseline, records = finetune_records(ctx, master_spec, allow_missing)
    samples = [Sample.from_record(r) for r in records]
    ridge = ctx.config.regression.ridge
    model = fit_local_linear_model(master_spec, baseline, samples, ridge)
    held_out = leave_one_out(master_spec, baseline, samples, ridge)
    fitted = [model.predict(NetworkSpec.from_dict(r["spec"])) for r in records]
    accuracy = [s.accuracy for s in samples]
    quality = {"in_sample": fit_quality(accuracy, fitted), "leave_one_out": fit_quality(accuracy, held_out)}
    table = {**model.to_dict(), "masternet_accuracy": master["accuracy"], "masternet_weights": master[WEIGHTS_FIELD],
             WEIGHTS_FIELD: finetune_weights(ctx), "quality": quality, "samples": [
        {"job": r["job"], "block": r["block"], "replacement": r["replacement"], "accuracy": r["accuracy"],
         "fitted": f, "held_out_prediction": None if np.isnan(h) else float(h)}
        for r, f, h in zip(records, fitted, held_out)]}
    write_json(ctx.path("pseudo_gradients.json"), table)
    report.write_csv(ctx.path("pseudo_gradients.csv"), model.rows())
    report.plot_predicted_vs_measured(ctx.path("plots", "accuracy_predicted_vs_measured.png"),
                                      accuracy, held_out, baseline, quality)
    return model, quality


def finetune_records(ctx: SearchContext, master_spec: NetworkSpec, allow_missing: bool) -> tuple[float, list[dict]]:
    """The baseline job's accuracy and the perturbed jobs' records, in job order. Missing jobs are an
    error unless `allow_missing`; a missing baseline always is."""
    results = store.load_results(results_dir(ctx))
    all_jobs = jobs(ctx, master_spec)
    missing = [job.job for job in all_jobs if job.key not in results]
    if missing and (not allow_missing or all_jobs[0].job in missing):
        raise SearchError(f"{len(missing)} of {len(all_jobs)} fine-tunes have no result yet (jobs {missing[:MISSING_JOBS_SHOWN]}): "
                          "finish every shard" + ("" if all_jobs[0].job in missing else ", or pass --allow_missing"))
    check_finetune_weights(ctx, [results[job.key] for job in all_jobs if job.key in results], results_dir(ctx))
    baseline = results[all_jobs[0].key]["accuracy"]
    return baseline, [results[job.key] for job in all_jobs[1:] if job.key in results]
