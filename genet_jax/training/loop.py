"""The training loop behind `python train.py`: resumable, sharded over every device and host."""
from __future__ import annotations

import json
import logging
import math
import os
import signal
import time
from typing import Any, Optional

import jax
import ml_collections
from tqdm import tqdm

from genet_jax.interop.model_checkpoint import load_model_checkpoint
from genet_jax.data import pipeline
from genet_jax.data.autoaugment import make_policy
from genet_jax.data.sources import Source
from genet_jax.models.network import MasterNet, init_variables
from genet_jax.training import optim, steps
from genet_jax.training.train_checkpoints import TrainCheckpointer, abstract_like
from genet_jax.training.config import ConfigError, model_from_config, model_spec, validate_config
from genet_jax.training.evaluation import Evaluator
from genet_jax.training.inputs import open_sources
from genet_jax.training.metrics import MetricWriter
from genet_jax.training.result import TrainResult

log = logging.getLogger("genet_jax.train")


class TrainingDiverged(RuntimeError):
    """A NaN or inf loss; the run stops and the last good checkpoint is kept."""


def _same_architecture(a, b) -> bool:
    return a.replace(num_classes=1, resolution=max(a.total_stride, 32)) == \
        b.replace(num_classes=1, resolution=max(a.total_stride, 32))


def load_initial_variables(config, model: MasterNet, key: jax.Array) -> dict:
    """Fresh variables, or those of config.init_from.checkpoint (a new head on a class change)."""
    variables = jax.device_get(init_variables(model, key))
    if not config.init_from.checkpoint:
        return variables
    ckpt = load_model_checkpoint(config.init_from.checkpoint)
    if not _same_architecture(ckpt.spec, model.spec):
        raise ConfigError("init_from.checkpoint", f"{ckpt.path} holds a different architecture than config.model "
                                                  f"({ckpt.spec.to_json(indent=None)})")
    params = dict(ckpt.variables["params"])
    if ckpt.spec.num_classes != model.spec.num_classes:
        log.info("fine-tuning from %s with a new %d-class head (checkpoint has %d)", ckpt.path,
                 model.spec.num_classes, ckpt.spec.num_classes)
        params["head"] = variables["params"]["head"]
    else:
        log.info("initialising from %s", ckpt.path)
    return {"params": params, "batch_stats": ckpt.variables["batch_stats"]}


class _Stop:
    """SIGTERM sets a flag; the loop saves and exits at the next step boundary."""

    def __init__(self):
        self.requested = False
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        log.warning("SIGTERM received: saving a checkpoint, then exiting")
        self.requested = True

    def restore(self):
        signal.signal(signal.SIGTERM, self._previous)


def train(config: ml_collections.ConfigDict, sources: Optional[tuple[Source, Source]] = None,
          initial_variables: Optional[dict] = None) -> TrainResult:
    """Train (or resume) the run of `config`. `sources`: already opened (train, eval) sources, as
    `open_sources(config)` returns them. `initial_variables`: start from these instead of a fresh
    initialisation (LLR-NAS fine-tunes with inherited weights); a checkpoint in the workdir wins."""
    validate_config(config)
    workdir = os.path.abspath(config.workdir)
    os.makedirs(workdir, exist_ok=True)
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))
    log.info("config:\n%s", config)

    train_source, eval_source = sources if sources is not None else open_sources(config)
    spec = model_spec(config, train_source.num_classes)
    size = spec.resolution
    mesh = steps.create_mesh()
    replicated, batch_sharding = steps.shardings(mesh)
    if config.batch_size % jax.device_count():
        raise ConfigError("batch_size", f"{config.batch_size} is not divisible by the {jax.device_count()} devices")
    if config.data.eval_batch_size % jax.device_count():
        raise ConfigError("data.eval_batch_size", f"{config.data.eval_batch_size} is not divisible by the "
                                                  f"{jax.device_count()} devices")
    per_host_batch = config.batch_size // jax.process_count()
    steps_per_epoch = len(train_source) / config.batch_size
    total_steps = config.num_train_steps if config.num_train_steps > 0 else \
        max(1, int(math.ceil(config.num_epochs * steps_per_epoch)))
    eval_every = max(1, int(round(config.eval_every_epochs * steps_per_epoch)))

    model = model_from_config(config, spec)
    base_key = jax.random.PRNGKey(config.seed)
    schedule = optim.learning_rate_schedule(config.optim, config.batch_size, total_steps, steps_per_epoch)
    tx = optim.make_optimizer(config.optim, schedule)
    init_key = jax.random.fold_in(base_key, 0)

    loss_scale = steps.initial_loss_scale(config)
    checkpointer = TrainCheckpointer(workdir, config.checkpoint.keep, config.checkpoint.async_save)
    data_state = None
    if checkpointer.latest_step() is not None:  # resume: shapes only, no initialisation to compile or run
        abstract = jax.eval_shape(lambda key: steps.init_state(init_variables(model, key), tx, loss_scale), init_key)
        state, data_state = checkpointer.restore(abstract_like(abstract, replicated))
        log.info("resuming from %s/%d", checkpointer.root, int(state.step))
    else:
        if initial_variables is None:
            initial_variables = load_initial_variables(config, model, init_key)
        state = jax.device_put(steps.init_state(initial_variables, tx, loss_scale), replicated)
    model_json = {"spec": spec.to_dict(), "extras": {},
                  "metadata": {"class_names": train_source.class_names, "data_source": config.data.source}}

    teacher_model, teacher_variables = None, None
    if config.teacher.checkpoint:
        teacher = load_model_checkpoint(config.teacher.checkpoint)
        if teacher.spec.num_classes != spec.num_classes:
            raise ConfigError("teacher.checkpoint", f"the teacher has {teacher.spec.num_classes} classes, the data "
                                                    f"{spec.num_classes}")
        teacher_model = model_from_config(config, teacher.spec)
        teacher_variables = jax.device_put(teacher.variables, replicated)

    train_step = steps.jit_train_step(steps.make_train_step(model, tx, config, schedule, teacher_model), mesh)
    evaluate = Evaluator(model, config, mesh)
    skips = pipeline.SkipCounter(f"train {train_source.name}")
    iterator = iter(pipeline.train_dataset(train_source, config.augment, size, per_host_batch, config.seed,
                                           config.data.num_threads, skips, make_policy(config.augment)))
    if data_state is not None:
        iterator.set_state(data_state)
    batches = pipeline.DevicePrefetcher(iterator, batch_sharding)
    train_key = jax.random.fold_in(base_key, 1)

    writer = MetricWriter(workdir)
    stop = _Stop()
    start_step = int(jax.device_get(state.step))
    progress = tqdm(total=total_steps, initial=start_step, disable=not config.progress_bar or jax.process_index(),
                    unit="step", dynamic_ncols=True)
    eval_metrics: dict[str, Any] = {}
    window_start, window_steps, started = time.perf_counter(), 0, time.perf_counter()
    images_per_second = 0.0
    steady_images, steady_seconds, first_window = 0, 0.0, True  # the first window includes compilation
    window_pause = 0.0  # evaluation and checkpoint time inside a window: not training throughput

    def check_finite(step: int) -> None:
        if int(jax.device_get(state.nonfinite)):
            raise TrainingDiverged(
                f"the loss became NaN or inf before step {step} (lr {float(schedule(step)):.3g}); stopped without "
                f"saving. The last good checkpoint is in {checkpointer.root} (step {checkpointer.latest_step()}). "
                "Lower config.optim.lr_per_256, enable config.optim.grad_clip_norm, or use float32.")

    try:
        step = start_step
        while step < total_steps:
            state, metrics = train_step(state, next(batches), train_key, teacher_variables)
            step += 1
            window_steps += 1
            progress.update(1)
            if step % config.log_every_steps == 0 or step == total_steps:
                metrics = jax.device_get(metrics)
                check_finite(step)
                elapsed = time.perf_counter() - window_start - window_pause
                images_per_second = window_steps * config.batch_size / max(elapsed, 1e-9)
                if not first_window:
                    steady_images += window_steps * config.batch_size
                    steady_seconds += elapsed
                first_window = False
                scalars = {f"train/{k}": float(v) for k, v in metrics.items()}
                scalars["train/images_per_second"] = images_per_second
                writer.write(step, scalars)
                progress.set_postfix(loss=f"{float(metrics['loss']):.3f}", img_s=f"{images_per_second:.0f}")
                window_start, window_steps, window_pause = time.perf_counter(), 0, 0.0
            is_eval = step % eval_every == 0 or step == total_steps
            is_save = is_eval or step % config.checkpoint.every_steps == 0 or stop.requested
            if is_save:
                jax.block_until_ready(state.step)  # the steps dispatched so far count as training time
            pause_start = time.perf_counter()
            if is_eval:
                check_finite(step)
                eval_metrics = evaluate(state.variables, eval_source, size)
                writer.write(step, {f"eval/{k}": v for k, v in eval_metrics.items()})
                log.info("step %d: eval top-1 %.4f top-5 %.4f loss %.4f", step, eval_metrics["top1"],
                         eval_metrics["top5"], eval_metrics["loss"])
            if is_save:
                check_finite(step)
                checkpointer.save(state, model_json, batches.state,
                                  {"top1": eval_metrics["top1"]} if is_eval else None, wait=stop.requested)
            window_pause += time.perf_counter() - pause_start
            if stop.requested:
                break
    finally:
        progress.close()
        checkpointer.close()
        writer.close()
        stop.restore()

    if not eval_metrics and not stop.requested:  # re-run of a finished run: report, train nothing
        eval_metrics = evaluate(state.variables, eval_source, size)
    steady = steady_images / steady_seconds if steady_seconds else images_per_second
    final = TrainResult(
        step=int(jax.device_get(state.step)), total_steps=total_steps, eval=eval_metrics,
        train_images_per_second=steady, wall_seconds=time.perf_counter() - started,
        skipped_train_images=skips.count + train_source.skipped, checkpoint_dir=checkpointer.root,
        interrupted=stop.requested, model=spec.to_dict(), conv_impl=model.conv_impl,
        devices={"count": jax.device_count(), "platform": jax.devices()[0].platform,
                 "device_kind": jax.devices()[0].device_kind, "jax_version": jax.__version__})
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "metrics.json"), "w") as f:
            json.dump(final.to_dict(), f, indent=2)
    return final
