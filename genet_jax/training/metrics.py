"""TensorBoard scalars (tensorboardX event files, readable by TensorBoard) from host 0 only."""
from __future__ import annotations

import os

import jax

FLUSH_SECONDS = 30  # how often the event file is written out


class MetricWriter:
    def __init__(self, workdir: str):
        self.writer = None
        if jax.process_index() == 0:
            from tensorboardX import SummaryWriter  # here, on host 0 only: it imports torch if installed (seconds)
            self.writer = SummaryWriter(os.path.join(workdir, "tensorboard"), flush_secs=FLUSH_SECONDS)

    def write(self, step: int, scalars: dict) -> None:
        if self.writer is None:
            return
        for name, value in scalars.items():
            self.writer.add_scalar(name, float(value), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
