"""The training batches decoded and augmented in grain worker processes (data.worker_count > 0):
the same batches, in the same order and with the same checkpointable position, as the threads of
`pipeline.train_dataset`, without the training process's GIL limiting the JPEG decoding and
augmentation to about one core.

How: `pipeline.train_rows` (this host's rows of every global batch) is batched while still a
`grain.MapDataset`, so grain's `mp_prefetch` gives worker w of n the whole batches w, w + n, ...
and interleaves them back in order; each worker decodes with `data.num_threads` threads. Like the
threaded iterator, it is a `grain.DatasetIterator` (checkpointed through its get_state / set_state by
grain's orbax handler) with the same position: the index of this host's next example,
`{"next_index": i}`, also the format of `pipeline.train_data_state`, so checkpoints resume across
both and across host counts; `set_state` restarts the workers at that example (like
grain.experimental.ElasticIterator, which assigns examples to hosts differently). Undecodable
images are recorded in the worker, by their index in the source, and handed over with the batch to
the training process's `SkipCounter`, which counts each once (whichever worker and epoch) and logs
them as with threads. Evaluation stays on threads (`pipeline.eval_batches`).
"""
from __future__ import annotations

import threading
from typing import Iterator, Optional

import grain
from absl import flags

from genet_jax.data import pipeline
from genet_jax.data.sources import DataError, Source

SKIPS_KEY = "undecodable"  # the batch's entry of (index, error) recorded in the worker; removed before use
# Finished batches each worker keeps queued for the training process (grain's default; a batch of
# ImageNet's 1024 images at 192x192 is 113 MB of shared memory).
BATCHES_QUEUED_PER_WORKER = 1


class SkipRecorder:
    """In a worker process: the undecodable images (index in the source, error) since the last batch
    was handed over. A copy sent to a worker starts empty (and with a lock of its own: locks do not pickle)."""

    def __init__(self):
        self._errors: list[tuple[int, Exception]] = []
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()

    def add(self, record: int, error: Exception) -> None:
        with self._lock:
            self._errors.append((record, error))

    def take(self) -> tuple[tuple[int, Exception], ...]:
        with self._lock:
            errors, self._errors = tuple(self._errors), []
        return errors


class AttachSkips:
    """Batch -> the batch with the errors recorded since the previous one (under SKIPS_KEY)."""

    def __init__(self, recorder: SkipRecorder):
        self.recorder = recorder

    def __call__(self, batch: dict) -> dict:
        return {**batch, SKIPS_KEY: self.recorder.take()}


class WorkerBatches(grain.DatasetIterator):
    """This host's training batches from `worker_count` grain worker processes, a grain
    DatasetIterator (the position: `{"next_index": index of the next example}`)."""

    def __init__(self, rows: grain.MapDataset, per_host_batch: int, num_threads: int, worker_count: int,
                 skips: pipeline.SkipCounter, recorder: SkipRecorder):
        super().__init__()
        self._iterator: Optional[Iterator[dict]] = None
        self.per_host_batch, self.skips = per_host_batch, skips
        self._rows, self._recorder = rows, recorder
        # Each thread of a worker builds a whole batch; none waits beyond those being built but the
        # BATCHES_QUEUED_PER_WORKER in the worker's queue (memory: batches, not images, are in flight).
        self._read_options = grain.ReadOptions(num_threads=max(1, num_threads),
                                               prefetch_buffer_size=max(1, num_threads))
        self._options = grain.MultiprocessingOptions(num_workers=worker_count,
                                                     per_worker_buffer_size=BATCHES_QUEUED_PER_WORKER)
        self._next_index = 0

    def _start(self) -> Iterator[dict]:
        if not flags.FLAGS.is_parsed():  # grain 0.2.18's mp_prefetch reads an absl flag (grain issue #1355):
            flags.FLAGS.mark_as_parsed()  # outside an absl app (tests, benchmarks) the flags' defaults
        batches = self._rows[self._next_index:].batch(self.per_host_batch, drop_remainder=True)
        batches = batches.map(AttachSkips(self._recorder))
        return iter(batches.to_iter_dataset(read_options=self._read_options).mp_prefetch(self._options))

    def __next__(self) -> dict:
        if self._iterator is None:
            self._iterator = self._start()
        batch = dict(next(self._iterator))
        for record, error in batch.pop(SKIPS_KEY):
            self.skips.add(record, error)
        self._next_index += self.per_host_batch
        return batch

    def get_state(self) -> dict:
        return {"next_index": self._next_index}

    def set_state(self, state: dict) -> None:
        index = state.get("next_index") if isinstance(state, dict) else None
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise DataError(f"training data state {state!r}: expected {{'next_index': a non-negative integer}} "
                            "(a checkpoint's data_position item)")
        self.close()
        self._next_index = index

    def close(self) -> None:
        """Stops the worker processes (started again by the next batch asked for)."""
        if self._iterator is not None:
            self._iterator.close()
            self._iterator = None


def train_iterator(source: Source, augment, size: int, per_host_batch: int, seed: int, num_threads: int,
                   worker_count: int, skips: pipeline.SkipCounter, policy=None) -> grain.DatasetIterator:
    """This host's training batches: from `worker_count` worker processes of `num_threads` threads
    each, or with worker_count 0 from `num_threads` threads of this process (`pipeline.train_dataset`).
    The same batches either way; both are grain DatasetIterators, with positions in one format."""
    if worker_count <= 0:
        return iter(pipeline.train_dataset(source, augment, size, per_host_batch, seed, num_threads, skips, policy))
    recorder = SkipRecorder()
    rows = pipeline.train_rows(source, augment, size, per_host_batch, seed, recorder, policy)
    return WorkerBatches(rows, per_host_batch, num_threads, worker_count, skips, recorder)
