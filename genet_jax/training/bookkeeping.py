"""Bookkeeping of the training loop: the run's step counts and when to log, evaluate and save; the
training throughput; a SIGTERM turned into a request to save and stop."""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import signal
import time
from typing import Iterator

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from genet_jax.training.config import EVALUATE_AT_THE_END, ConfigError

log = logging.getLogger("genet_jax.train")

# A logging window timed as zero seconds (a coarse clock) still gives a finite images/s.
MIN_WINDOW_SECONDS = 1e-9


def _require_divisible(field: str, batch_size: int) -> None:
    if batch_size % jax.device_count():
        raise ConfigError(field, f"{batch_size} is not divisible by the {jax.device_count()} devices")


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """The step counts of a run and, per step, whether it logs, evaluates and saves."""

    total_steps: int
    steps_per_epoch: float  # fractional: the last batch of an epoch runs on into the next
    eval_every: int  # steps between evaluations; the run's length where it evaluates at the end only
    log_every: int
    checkpoint_every: int
    per_host_batch: int

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, num_train_examples: int) -> RunPlan:
        """Raises ConfigError when a batch size does not split evenly over the devices."""
        _require_divisible("batch_size", config.batch_size)
        _require_divisible("data.eval_batch_size", config.data.eval_batch_size)
        micro_rows = config.optim.accumulate_steps * jax.device_count()
        if config.batch_size % micro_rows:
            raise ConfigError("optim.accumulate_steps", f"batch_size {config.batch_size} does not split into "
                                                        f"{config.optim.accumulate_steps} micro-batches over the "
                                                        f"{jax.device_count()} devices (need a multiple of {micro_rows})")
        steps_per_epoch = num_train_examples / config.batch_size
        total_steps = config.num_train_steps if config.num_train_steps > 0 else \
            max(1, int(math.ceil(config.num_epochs * steps_per_epoch)))
        eval_every = total_steps if config.eval_every_epochs == EVALUATE_AT_THE_END else \
            max(1, int(math.ceil(config.eval_every_epochs * steps_per_epoch)))
        return cls(total_steps=total_steps, steps_per_epoch=steps_per_epoch, eval_every=eval_every,
                   log_every=config.log_every_steps, checkpoint_every=config.checkpoint.every_steps,
                   per_host_batch=config.batch_size // jax.process_count())

    def is_log_step(self, step: int) -> bool:
        return step % self.log_every == 0 or step == self.total_steps

    def is_eval_step(self, step: int) -> bool:
        return step % self.eval_every == 0 or step == self.total_steps

    def is_save_step(self, step: int, stop_requested: bool) -> bool:
        """Every evaluation is saved, as is the step a SIGTERM stops at."""
        return self.is_eval_step(step) or step % self.checkpoint_every == 0 or stop_requested


class Throughput:
    """Training images per second over logging windows. The time `paused()` (evaluation and
    checkpoints) is not training time; the first window includes the compilation, so the
    steady-state rate leaves it out (unless it is the only one)."""

    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self.images_per_second = 0.0  # of the last window
        self._steady_images, self._steady_seconds, self._first_window = 0, 0.0, True
        self.start_window()

    def start_window(self) -> None:
        self._window_start, self._window_steps, self._window_pause = time.perf_counter(), 0, 0.0

    def count_step(self) -> None:
        self._window_steps += 1

    def end_window(self) -> float:
        """The images/s of the window now ending; call start_window() to open the next one."""
        elapsed = time.perf_counter() - self._window_start - self._window_pause
        self.images_per_second = self._window_steps * self.batch_size / max(elapsed, MIN_WINDOW_SECONDS)
        if not self._first_window:
            self._steady_images += self._window_steps * self.batch_size
            self._steady_seconds += elapsed
        self._first_window = False
        return self.images_per_second

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self._window_pause += time.perf_counter() - start

    @property
    def steady_images_per_second(self) -> float:
        return self._steady_images / self._steady_seconds if self._steady_seconds else self.images_per_second


class SigtermStop:
    """SIGTERM sets `requested`; the loop saves and exits at the next step boundary."""

    def __init__(self):
        self.requested = False
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        log.warning("SIGTERM received: saving a checkpoint, then exiting")
        self.requested = True

    def should_stop(self, sync_point: bool) -> bool:
        """Whether to save and stop after this step. One process: as soon as a SIGTERM came. Several:
        only at sync points (the loop's log steps, which wait for the devices anyway), and then if
        any process got one: all stop after the same step and save together (a scheduler's SIGTERM
        reaches them at different moments)."""
        if jax.process_count() == 1:
            return self.requested
        if not sync_point:
            return False
        # Every process records the agreed stop: what follows the loop (the final evaluation is
        # skipped, the save waits, the result says interrupted) is collective and must match.
        self.requested = bool(np.max(multihost_utils.process_allgather(np.int32(self.requested))))
        return self.requested

    def restore(self) -> None:
        """Put back the handler that was there before."""
        signal.signal(signal.SIGTERM, self._previous)
