"""TensorBoard scalars (tensorboardX event files, readable by TensorBoard) from host 0 only.

Written on the caller's thread: tensorboardX's SummaryWriter writes from a thread of its own, which
dies with a traceback on a full disk, after which its queue blocks the run. Here a write error is one
warning and the run goes on without TensorBoard (the checkpoint the disk cannot hold either is the
error that stops it)."""
from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from typing import Callable

import jax

log = logging.getLogger("genet_jax.train")

FLUSH_SECONDS = 30  # how often the event file is written out


class MetricWriter:
    def __init__(self, workdir: str):
        self.directory = os.path.join(workdir, "tensorboard")
        self.events = None  # tensorboardX's EventsWriter, on host 0 until a write fails
        self.flushed_at = -math.inf  # the first scalars are written out at once
        if jax.process_index() == 0:
            self._guarded(self._open)

    def _open(self) -> None:
        from tensorboardX.event_file_writer import EventsWriter  # host 0 only: imports torch if installed (seconds)
        os.makedirs(self.directory, exist_ok=True)
        self.events = EventsWriter(os.path.join(self.directory, "events"))

    def write(self, step: int, scalars: dict) -> None:
        if self.events is None:
            return
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.proto.summary_pb2 import Summary
        values = [Summary.Value(tag=name, simple_value=float(value)) for name, value in scalars.items()]
        event = Event(wall_time=time.time(), step=int(step), summary=Summary(value=values))
        self._guarded(lambda: self.events.write_event(event))
        if self.events is not None and time.monotonic() - self.flushed_at > FLUSH_SECONDS:
            self._guarded(self.events.flush)
            self.flushed_at = time.monotonic()

    def _guarded(self, action: Callable[[], object]) -> None:
        try:
            action()
        except OSError as e:
            log.warning("TensorBoard metrics stop: cannot write %s: %s", self.directory, e.strerror or e)
            self._discard()

    def _discard(self) -> None:
        """Closes the event file without raising (its unwritten events are lost)."""
        events, self.events = self.events, None
        if events is not None:
            with contextlib.suppress(OSError):  # the file is closed even when its last flush fails
                events.close()

    def close(self) -> None:
        if self.events is not None:
            self._guarded(self.events.close)
            self.events = None
