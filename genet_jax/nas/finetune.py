"""Stage 2, perturb and fine-tune: each job is the MasterNet with one super-block replaced, started
from the MasterNet's weights (genet_jax.nas.inherit; the ones A* measured, genet_jax.nas.weights)
and fine-tuned through the trainer in finetunes/<key>/ (resumable); one line per finished job (a
records.FinetuneRecord) in results/finetunes-*.jsonl, with the top-1 of the weights the rule names."""
from __future__ import annotations

import os
import shutil
import time

import jax
from tqdm import tqdm

from genet_jax.arch.spec import NetworkSpec
from genet_jax.models.network import init_variables
from genet_jax.nas import store
from genet_jax.nas.context import SearchContext, SearchError
from genet_jax.nas.inherit import inherit_variables, summarize
from genet_jax.nas.master import load_master, master_variables
from genet_jax.nas.records import FinetuneRecord
from genet_jax.nas.space import Perturbation, perturbations, shard_jobs
from genet_jax.nas.train_configs import finetune_train_config, finetune_workdir
from genet_jax.nas.weights import check_finetune_weights, measured_evaluation
from genet_jax.training.config import model_from_config
from genet_jax.training.loop import train
from genet_jax.training.metrics import MetricWriter

BASELINE = -1  # the `block` of the baseline job
# The leading hex digits of a job's key folded into the init key: 28 bits, within fold_in's uint32.
INIT_KEY_HEX_DIGITS = 7


def results_dir(ctx: SearchContext) -> str:
    return ctx.path("results")


def finetune_results(ctx: SearchContext) -> dict[str, FinetuneRecord]:
    """{job key: its record} of every shard's finished fine-tunes."""
    return store.load_results(results_dir(ctx), FinetuneRecord.from_json)


def jobs(ctx: SearchContext, master_spec: NetworkSpec) -> list[Perturbation]:
    """Job 0 is the unperturbed MasterNet under the fine-tune schedule: the regression's baseline,
    so that what fine-tuning alone adds is not credited to the perturbations."""
    perturbed = perturbations(master_spec, ctx.config.perturbations_per_block, ctx.config.seed, ctx.space)
    return [Perturbation(0, BASELINE, master_spec)] + [Perturbation(j.job + 1, j.block, j.spec) for j in perturbed]


def init_key(seed: int, job: Perturbation) -> jax.Array:
    """The fresh-initialisation key of a job: the search seed with the job's key folded in, so a
    job's weights do not depend on its number, its shard or which jobs ran before it."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), int(job.key[:INIT_KEY_HEX_DIGITS], 16))


def run_finetunes(ctx: SearchContext, shard: int = 0, num_shards: int = 1) -> int:
    """Fine-tune this shard's jobs not yet in the results store; returns how many ran."""
    master = load_master(ctx)
    master_spec = master.spec
    done = finetune_results(ctx)
    mine = shard_jobs(jobs(ctx, master_spec), shard, num_shards)
    check_finetune_weights(ctx, [done[job.key] for job in mine if job.key in done], results_dir(ctx))
    todo = [job for job in mine if job.key not in done]
    if not todo:
        return 0
    inherited_from = master_variables(master)
    out = store.shard_file(results_dir(ctx), shard, num_shards)
    writer = MetricWriter(ctx.path("search_metrics"))
    try:
        for job in tqdm(todo, desc=f"fine-tunes (shard {shard}/{num_shards})", unit="net"):
            record = finetune_job(ctx, job, master_spec, inherited_from)
            if jax.process_index() == 0:
                store.append_result(out, record.to_json())
            writer.write(job.job, {"finetune/accuracy": record.accuracy,
                                   "finetune/delta_vs_master": record.accuracy - master.accuracy})
            if not ctx.config.finetune.keep_checkpoints:
                shutil.rmtree(os.path.join(job_dir(ctx, job), "checkpoints"), ignore_errors=True)
    finally:
        writer.close()
    return len(todo)


def job_dir(ctx: SearchContext, job: Perturbation) -> str:
    return finetune_workdir(ctx.config, job.key)


def finetune_job(ctx: SearchContext, job: Perturbation, master_spec: NetworkSpec,
                 inherited_from: dict) -> FinetuneRecord:
    """Fine-tune one job from weights inherited from `inherited_from` (the MasterNet's); its
    results-store record."""
    model = model_from_config(ctx.train_config, job.spec)
    fresh = jax.device_get(init_variables(model, init_key(ctx.config.seed, job)))
    variables, inherited = inherit_variables(inherited_from, fresh, master_spec, job.spec)
    train_config = finetune_train_config(ctx.config, job.key, job.spec)
    started = time.time()
    final = train(train_config, ctx.sources(), variables)
    if final.interrupted:
        raise SearchError("interrupted (SIGTERM); re-run the same command to resume")
    weights, evaluation = measured_evaluation(final)
    return FinetuneRecord(key=job.key, job=job.job, block=job.block,
                          replacement=None if job.block == BASELINE else job.spec.blocks[job.block], spec=job.spec,
                          weights=weights, accuracy=evaluation["top1"], top5=evaluation["top5"], steps=final.step,
                          wall_seconds=time.time() - started, inherited=summarize(inherited))
