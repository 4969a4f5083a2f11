"""TensorBoard scalars (tensorboardX event files, readable by TensorBoard) from host 0 only."""
from __future__ import annotations

import os

import jax


class MetricWriter:
    def __init__(self, workdir: str):
        self.writer = None
        if jax.process_index() == 0:
            from tensorboardX import SummaryWriter
            self.writer = SummaryWriter(os.path.join(workdir, "tensorboard"), flush_secs=30)

    def write(self, step: int, scalars: dict) -> None:
        if self.writer is None:
            return
        for name, value in scalars.items():
            self.writer.add_scalar(name, float(value), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
