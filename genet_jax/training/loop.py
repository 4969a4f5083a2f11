"""The training loop behind `python train.py`: resumable, sharded over every device and host.

`train` reads top to bottom: set-up, resume or initialise, the step loop, the result. Beside it:
the step plan, throughput and SIGTERM handling (bookkeeping.py), the initial train state and the
teacher (initial_state.py), the data (inputs.py)."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import time
from typing import Any, Callable, Optional

import jax
import ml_collections
import optax
from tqdm import tqdm

from genet_jax.arch.spec import NetworkSpec
from genet_jax.data import pipeline
from genet_jax.data.sources import Source
from genet_jax.errors import InputError
from genet_jax.checkpoint import EMA_WEIGHTS, RAW_WEIGHTS, model_description
from genet_jax.training import optim, steps
from genet_jax.training.bookkeeping import RunPlan, SigtermStop, Throughput
from genet_jax.training.config import model_from_config, model_spec, validate_config
from genet_jax.training.evaluation import Evaluator
from genet_jax.training.initial_state import create_train_state, load_teacher
from genet_jax.training.inputs import open_sources, train_batches
from genet_jax.training.metrics import MetricWriter
from genet_jax.training.result import TrainResult
from genet_jax.training.train_checkpoints import TrainCheckpointer
from genet_jax.workdir_lock import create_workdir, hold_workdir

log = logging.getLogger("genet_jax.train")

# The run's keys are jax.random.fold_in(PRNGKey(config.seed), stream) for these two streams.
INIT_KEY_STREAM = 0  # the variables' initialisation
TRAIN_KEY_STREAM = 1  # the train steps (each folds in its step number)


class TrainingDiverged(InputError, RuntimeError):
    """A NaN or inf loss; the run stops and the last good checkpoint is kept."""


def check_finite(state: steps.TrainState, step: int, schedule: optax.Schedule, checkpointer: TrainCheckpointer,
                 dtype: str) -> None:
    """Raise TrainingDiverged if the loss of any step up to `state` was NaN or inf (`dtype`: config.dtype)."""
    if int(jax.device_get(state.nonfinite)):
        lr = float(schedule(steps.applied_updates(state.opt_state)))
        last_good = checkpointer.latest_step()
        kept = (f"the last good checkpoint is {checkpointer.root}/{last_good}" if last_good is not None
                else "no checkpoint had been saved yet")
        remedies = "lower config.optim.lr_per_256 or enable config.optim.grad_clip_norm"
        if dtype != "float32":
            remedies = remedies.replace(" or ", ", ") + " or use config.dtype=float32"
        raise TrainingDiverged(f"the loss became NaN or inf before step {step} (lr {lr:.3g}); stopped without "
                               f"saving: {kept}. To go on, {remedies}.")


@dataclasses.dataclass(frozen=True)
class _Run:
    """Everything the step loop uses besides the train state (which every step replaces)."""

    plan: RunPlan
    schedule: optax.Schedule
    train_step: Callable  # (state, batch, train_key, teacher_variables) -> (state, metrics)
    train_key: jax.Array
    teacher_variables: Optional[dict]
    batches: pipeline.DevicePrefetcher
    evaluate: Callable[[dict], dict]  # {name: variables} -> {name: eval metrics}
    checkpointer: TrainCheckpointer
    description: dict  # the `model` item of every checkpoint
    writer: MetricWriter
    stop: SigtermStop
    progress: tqdm
    throughput: Throughput
    dtype: str  # config.dtype


def train(config: ml_collections.ConfigDict, sources: Optional[tuple[Source, Source]] = None,
          initial_variables: Optional[dict] = None) -> TrainResult:
    """Train (or resume) the run of `config`. `sources`: already opened (train, eval) sources, as
    `open_sources(config)` returns them. `initial_variables`: start from these instead of a fresh
    initialisation (LLR-NAS fine-tunes with inherited weights); a checkpoint in the workdir wins."""
    validate_config(config)
    workdir = create_workdir(config.workdir)
    with hold_workdir(workdir):
        return _train_in(workdir, config, sources, initial_variables)


def _train_in(workdir: str, config: ml_collections.ConfigDict, sources: Optional[tuple[Source, Source]],
              initial_variables: Optional[dict]) -> TrainResult:
    """`train` in `workdir`, created and locked."""
    train_source, eval_source = sources if sources is not None else open_sources(config)
    spec = model_spec(config, train_source.num_classes)
    mesh = steps.create_mesh()
    replicated, batch_sharding = steps.shardings(mesh)
    plan = RunPlan.from_config(config, len(train_source))
    model = model_from_config(config, spec)
    base_key = jax.random.PRNGKey(config.seed)
    schedule = optim.learning_rate_schedule(config.optim, config.batch_size, plan.total_steps, plan.steps_per_epoch)
    tx = optim.make_optimizer(config.optim, schedule)
    init_key = jax.random.fold_in(base_key, INIT_KEY_STREAM)

    with contextlib.ExitStack() as closing:  # each part closed once it exists, on any exit
        checkpointer = TrainCheckpointer(workdir, config.checkpoint.keep, config.checkpoint.async_save)
        closing.push(functools.partial(_close_checkpointer, checkpointer))
        state, data_state = create_train_state(config, model, tx, checkpointer, replicated, init_key, initial_variables)
        _save_config(workdir, config)  # once the run is valid and restored: a refused run keeps the workdir's config
        description = model_description(spec, metadata={"class_names": train_source.class_names,
                                                        "data_source": config.data.source,
                                                        "eval_crop_fraction": config.data.eval_crop_fraction})
        teacher_model, teacher_variables = load_teacher(config, spec, replicated)
        train_step = steps.jit_train_step(steps.make_train_step(model, tx, config, schedule, teacher_model, mesh), mesh)
        evaluator = Evaluator(model, config, mesh)
        start_step = int(jax.device_get(state.step))
        if data_state is None and start_step:  # saved by another number of hosts: the position is the step's
            data_state = pipeline.train_data_state(start_step, plan.per_host_batch)
        skips = pipeline.SkipCounter(f"train {train_source.name}")
        batches = train_batches(config, train_source, spec.resolution, plan.per_host_batch, skips, data_state,
                                batch_sharding)
        closing.callback(batches.close)  # stops the grain worker processes (data.worker_count > 0)
        train_key = jax.random.fold_in(base_key, TRAIN_KEY_STREAM)

        writer, stop = MetricWriter(workdir), SigtermStop()
        closing.callback(stop.restore)
        closing.callback(writer.close)
        progress = tqdm(total=plan.total_steps, initial=start_step, disable=not config.progress_bar or jax.process_index(),
                        unit="step", dynamic_ncols=True)
        closing.callback(progress.close)
        run = _Run(plan=plan, schedule=schedule, train_step=train_step, train_key=train_key,
                   teacher_variables=teacher_variables, batches=batches,
                   evaluate=functools.partial(evaluator.evaluate_all, source=eval_source, size=spec.resolution),
                   checkpointer=checkpointer, description=description, writer=writer, stop=stop, progress=progress,
                   throughput=Throughput(config.batch_size), dtype=config.dtype)
        started = time.perf_counter()
        state, eval_metrics = _train_steps(run, state, start_step)

    if not eval_metrics and not stop.requested:  # re-run of a finished run: report, train nothing
        eval_metrics = run.evaluate(named_variables(state))
    final = _result(run, state, eval_metrics, started, skips.count + train_source.skipped, spec, model.conv_impl)
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "metrics.json"), "w") as f:
            json.dump(final.to_dict(), f, indent=2)
    return final


def _close_checkpointer(checkpointer: TrainCheckpointer, error_type, error, traceback) -> bool:
    """ExitStack exit callback: waits for the last save (a CheckpointWriteError if it fails); when the
    run is ending on an error already, that error is the one reported and a failed save is logged."""
    if error is None:
        checkpointer.close()
        return False
    try:
        checkpointer.close()
    except Exception as e:  # the error on its way out is the one the user needs first
        log.warning("the last checkpoint could not be written either: %s", e)
    return False


def _save_config(workdir: str, config: ml_collections.ConfigDict) -> None:
    """The run's config, saved in its workdir (host 0) and logged."""
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))
    log.info("config:\n%s", config)


def named_variables(state: steps.TrainState) -> dict[str, dict]:
    """The weights each evaluation measures: the raw ones, and their EMA when the run keeps one."""
    named = {RAW_WEIGHTS: state.variables}
    if state.ema is not None:
        named[EMA_WEIGHTS] = state.ema
    return named


def _train_steps(run: _Run, state: steps.TrainState, step: int) -> tuple[steps.TrainState, dict]:
    """Train from `step` to the plan's last step or a SIGTERM, logging, evaluating and saving as
    planned. Returns the last state and the last evaluation ({weights: metrics}; {} when none ran)."""
    eval_metrics: dict[str, Any] = {}
    while step < run.plan.total_steps:
        state, metrics = run.train_step(state, next(run.batches), run.train_key, run.teacher_variables)
        step += 1
        run.throughput.count_step()
        run.progress.update(1)
        if run.plan.is_log_step(step):
            _log_train_metrics(run, state, step, metrics)
        is_eval = run.plan.is_eval_step(step)
        stopping = run.stop.should_stop(sync_point=run.plan.is_log_step(step))
        is_save = run.plan.is_save_step(step, stopping)
        if is_save:
            jax.block_until_ready(state.step)  # the steps dispatched so far count as training time
        with run.throughput.paused():
            if is_eval:
                eval_metrics = _evaluate(run, state, step)
            if is_save:
                _save(run, state, step, eval_metrics if is_eval else None)
        if stopping:
            break
    return state, eval_metrics


def _log_train_metrics(run: _Run, state: steps.TrainState, step: int, metrics: dict) -> None:
    """The step's training metrics and the window's images/s to TensorBoard and the progress bar."""
    metrics = jax.device_get(metrics)
    check_finite(state, step, run.schedule, run.checkpointer, run.dtype)
    images_per_second = run.throughput.end_window()
    scalars = {f"train/{k}": float(v) for k, v in metrics.items()}
    scalars["train/images_per_second"] = images_per_second
    run.writer.write(step, scalars)
    run.progress.set_postfix(loss=f"{float(metrics['loss']):.3f}", img_s=f"{images_per_second:.0f}")
    run.throughput.start_window()


def _evaluate(run: _Run, state: steps.TrainState, step: int) -> dict:
    """{weights: metrics} of the raw weights (TensorBoard `eval/`) and their EMA (`eval_ema/`)."""
    check_finite(state, step, run.schedule, run.checkpointer, run.dtype)
    results = run.evaluate(named_variables(state))
    for weights, metrics in results.items():
        prefix = "eval" if weights == RAW_WEIGHTS else "eval_ema"
        run.writer.write(step, {f"{prefix}/{k}": v for k, v in metrics.items()})
        log.info("step %d: %s top-1 %.4f top-5 %.4f loss %.4f", step, prefix, metrics["top1"], metrics["top5"],
                 metrics["loss"])
    return results


def _save(run: _Run, state: steps.TrainState, step: int, eval_metrics: Optional[dict]) -> None:
    """Checkpoint `state` with the data position (and eval top-1, when evaluated: of the EMA weights
    when kept, the ones export and prediction use); on a SIGTERM, wait until it is written."""
    check_finite(state, step, run.schedule, run.checkpointer, run.dtype)
    best_of = eval_metrics.get(EMA_WEIGHTS, eval_metrics.get(RAW_WEIGHTS)) if eval_metrics else None
    run.checkpointer.save(state, run.description, run.batches.state,
                          {"top1": best_of["top1"]} if best_of is not None else None, wait=run.stop.requested)


def _result(run: _Run, state: steps.TrainState, eval_metrics: dict, started: float, skipped_train_images: int,
            spec: NetworkSpec, conv_impl: str) -> TrainResult:
    devices = {"count": jax.device_count(), "platform": jax.devices()[0].platform,
               "device_kind": jax.devices()[0].device_kind, "jax_version": jax.__version__}
    return TrainResult(
        step=int(jax.device_get(state.step)), total_steps=run.plan.total_steps,
        eval=eval_metrics.get(RAW_WEIGHTS, {}), eval_ema=eval_metrics.get(EMA_WEIGHTS, {}),
        train_images_per_second=run.throughput.steady_images_per_second,
        wall_seconds=time.perf_counter() - started, skipped_train_images=skipped_train_images,
        checkpoint_dir=run.checkpointer.root, interrupted=run.stop.requested, model=spec.to_dict(),
        conv_impl=conv_impl, devices=devices)
