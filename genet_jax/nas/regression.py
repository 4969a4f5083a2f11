"""Stage 3, regression: every shard's fine-tune results merged, the local linear model
(genet_jax.nas.local_linear) fitted to them and written with its in-sample and leave-one-out
quality to pseudo_gradients.{json,csv} (a records.RegressionRecord) and
plots/accuracy_predicted_vs_measured.png."""
from __future__ import annotations

import numpy as np

from genet_jax.arch.spec import NetworkSpec
from genet_jax.nas import report
from genet_jax.nas.context import SearchContext, SearchError
from genet_jax.nas.finetune import finetune_results, jobs, results_dir
from genet_jax.nas.local_linear import Sample, fit_local_linear_model, fit_quality, leave_one_out
from genet_jax.nas.master import load_master
from genet_jax.nas.records import FinetuneRecord, FittedSample, RegressionRecord
from genet_jax.nas.store import write_json
from genet_jax.nas.weights import check_finetune_weights, finetune_weights

REGRESSION_FILE = "pseudo_gradients.json"
MISSING_JOBS_SHOWN = 10  # the error names this many of the jobs without a result


def run_regression(ctx: SearchContext, allow_missing: bool = False) -> RegressionRecord:
    """The fitted model with its quality, written to pseudo_gradients.{json,csv} and plotted."""
    regression = fit_regression(ctx, allow_missing)
    write_json(ctx.path(REGRESSION_FILE), regression.to_json())
    report.write_csv(ctx.path("pseudo_gradients.csv"), regression.model.rows())
    held_out = [np.nan if s.held_out_prediction is None else s.held_out_prediction for s in regression.samples]
    report.plot_predicted_vs_measured(ctx.path("plots", "accuracy_predicted_vs_measured.png"),
                                      [s.accuracy for s in regression.samples], held_out,
                                      regression.model.master_accuracy, regression.quality)
    return regression


def fit_regression(ctx: SearchContext, allow_missing: bool = False) -> RegressionRecord:
    """The local linear model fitted to the fine-tune results, with its in-sample and
    leave-one-out quality {'in_sample', 'leave_one_out'}."""
    master = load_master(ctx)
    baseline, records = finetune_records(ctx, master.spec, allow_missing)
    samples = [Sample(r.block, r.replacement, r.accuracy) for r in records]
    ridge = ctx.config.regression.ridge
    model = fit_local_linear_model(master.spec, baseline, samples, ridge)
    held_out = leave_one_out(master.spec, baseline, samples, ridge)
    fitted = [model.predict(r.spec) for r in records]
    accuracy = [s.accuracy for s in samples]
    quality = {"in_sample": fit_quality(accuracy, fitted), "leave_one_out": fit_quality(accuracy, held_out)}
    fitted_samples = tuple(
        FittedSample(job=r.job, block=r.block, replacement=r.replacement, accuracy=r.accuracy, fitted=f,
                     held_out_prediction=None if np.isnan(h) else float(h))
        for r, f, h in zip(records, fitted, held_out))
    return RegressionRecord(model=model, masternet_accuracy=master.accuracy, masternet_weights=master.weights,
                            weights=finetune_weights(ctx), quality=quality, samples=fitted_samples)


def finetune_records(ctx: SearchContext, master_spec: NetworkSpec,
                     allow_missing: bool) -> tuple[float, list[FinetuneRecord]]:
    """The baseline job's accuracy and the perturbed jobs' records, in job order. Missing jobs are an
    error unless `allow_missing`; a missing baseline always is."""
    results = finetune_results(ctx)
    all_jobs = jobs(ctx, master_spec)
    missing = [job.job for job in all_jobs if job.key not in results]
    if missing and (not allow_missing or all_jobs[0].job in missing):
        raise SearchError(f"{len(missing)} of {len(all_jobs)} fine-tunes have no result yet (jobs {missing[:MISSING_JOBS_SHOWN]}): "
                          "finish every shard" + ("" if all_jobs[0].job in missing else ", or pass --allow_missing"))
    check_finetune_weights(ctx, [results[job.key] for job in all_jobs if job.key in results], results_dir(ctx))
    baseline = results[all_jobs[0].key].accuracy
    return baseline, [results[job.key] for job in all_jobs[1:] if job.key in results]
