"""grain input pipelines: per-host rows of every global batch, seeded shuffling and augmentation, thread-parallel
decoding, checkpointable iterator state, and prefetching onto the devices.

Why grain: pure-Python random access with deterministic, resumable iterators (the data position
goes into every checkpoint), no TensorFlow needed for image folders or the embedded default, and
TFDS datasets still plug in through tfds.data_source.
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import logging
import math
import threading
from typing import Any, Iterator, Optional

import grain
import jax
import numpy as np
from tqdm import tqdm

from genet_jax.data import transforms
from genet_jax.data.images import ImageError
from genet_jax.data.sources import DataError, PairedRecords, Source

log = logging.getLogger(__name__)


class SkipCounter:
    """Images that could not be decoded, each counted once however often it is visited (every epoch,
    as a neighbour's substitute, by any thread or worker process); the first few named in the log."""

    def __init__(self, what: str, report_first: int = 10):
        self.what, self.report_first = what, report_first
        self.examples: list[str] = []
        self._records: set[int] = set()
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        """The number of distinct images skipped."""
        return len(self._records)

    def add(self, record: int, error: Exception) -> None:
        """`record`: the image's index in its source (one file, whatever the shuffled position)."""
        with self._lock:
            if record in self._records:
                return
            self._records.add(record)
            if len(self.examples) < self.report_first:
                self.examples.append(str(error))
                log.warning("%s: skipping an image: %s", self.what, error)


def decode_in_memory(source: Source, num_threads: int, progress: bool = True) -> Source:
    """Every image decoded once to uint8 RGB and kept in memory (small data sets such as CIFAR-10:
    the JPEG decoding then no longer competes with the training step for the CPU). Undecodable
    files are dropped (so no later pipeline sees, or counts, them again), counted in `Source.skipped`
    and the first few named in the log."""
    skips = SkipCounter(f"decode {source.name}")

    def decode(index: int):
        image, label = source[index]
        try:
            return np.asarray(transforms.to_pil(image, source.max_image_pixels), dtype=np.uint8), label
        except ImageError as e:
            skips.add(index, e)
            return None

    with concurrent.futures.ThreadPoolExecutor(max(1, num_threads)) as pool:
        decoded = list(tqdm(pool.map(decode, range(len(source)), chunksize=256), total=len(source),
                            desc=f"decoding {source.name}", unit="img", disable=not progress, leave=False))
    kept = [d for d in decoded if d is not None]
    if not kept:
        raise DataError(f"{source.name}: none of its {len(source)} images could be decoded ({skips.examples[:1]})")
    shapes = {image.shape for image, _ in kept}
    images = np.stack([image for image, _ in kept]) if len(shapes) == 1 else [image for image, _ in kept]
    labels = np.asarray([label for _, label in kept], np.int32)
    return dataclasses.replace(source, records=PairedRecords(images, labels), skipped=source.skipped + skips.count)


class TrainTransform:
    """The index of a record of `source` -> its augmented example, or None if its image cannot be decoded."""

    def __init__(self, source: Source, augment, size: int, skips: SkipCounter, policy=None):
        self.source, self.augment, self.size, self.skips, self.policy = source, augment, size, skips, policy

    def __call__(self, index: int, rng: np.random.Generator) -> Optional[dict]:
        image, label = self.source[index]
        try:
            pil = transforms.to_pil(image, self.source.max_image_pixels)
        except ImageError as e:
            self.skips.add(index, e)
            return None
        aug = self.augment
        if aug.random_resized_crop:
            array = np.asarray(transforms.random_resized_crop(pil, self.size, rng, tuple(aug.rrc_scale)))
        else:
            array = np.asarray(transforms.resize_to(pil, self.size))
            if aug.crop_padding:
                array = transforms.pad_random_crop(array, self.size, aug.crop_padding, rng)
        if aug.hflip:
            array = transforms.random_hflip(array, rng)
        if self.policy is not None:
            array = self.policy(array, rng)
        return {"image": np.ascontiguousarray(array, dtype=np.uint8), "label": np.int32(label)}


class EvalTransform:
    """The index of a record of `source` -> its evaluation example, or None if its image cannot be decoded."""

    def __init__(self, source: Source, size: int, crop_fraction: float, skips: SkipCounter):
        self.source, self.size, self.crop_fraction, self.skips = source, size, crop_fraction, skips

    def __call__(self, index: int) -> Optional[dict]:
        image, label = self.source[index]
        try:
            array = transforms.eval_image(image, self.size, self.crop_fraction, self.source.max_image_pixels)
        except ImageError as e:
            self.skips.add(index, e)
            return None
        return {"image": np.ascontiguousarray(array, dtype=np.uint8), "label": np.int32(label)}


def _read_options(num_threads: int) -> grain.ReadOptions:
    return grain.ReadOptions(num_threads=max(1, num_threads), prefetch_buffer_size=max(8, 4 * num_threads))


# An undecodable training image is replaced by the next decodable one of the global stream; give up
# (a data error) after this many in a row.
MAX_SUBSTITUTES = 64


class GlobalBatchRows(grain.MapDataset):
    """This host's rows of every global batch: host `index` of `count` takes rows
    [index * b, (index + 1) * b) of each global batch of count * b consecutive examples of `parent`.
    The examples in a global batch (and their augmentation, seeded by their global position) are
    then a function of the seed and the global batch size only, not of the number of hosts. An
    undecodable example (None) is replaced by the next decodable one, for the same reason."""

    def __init__(self, parent: grain.MapDataset, per_host_batch: int, index: int, count: int):
        super().__init__(parent)
        self.per_host_batch, self.index, self.count = per_host_batch, index, count
        self._length = len(parent) // count

    def __len__(self) -> int:
        return self._length

    def global_index(self, local: int) -> int:
        step, row = divmod(local, self.per_host_batch)
        return (step * self.count + self.index) * self.per_host_batch + row

    def __getitem__(self, local):
        if isinstance(local, slice):
            return self.slice(local)
        position = self.global_index(local)
        for offset in range(MAX_SUBSTITUTES):
            example = self._parent[position + offset]
            if example is not None:
                return example
        raise DataError(f"{MAX_SUBSTITUTES} training images in a row could not be decoded "
                        f"(from position {position} of the shuffled stream); see the log for which")


def train_rows(source: Source, augment, size: int, per_host_batch: int, seed: int, skips,
               policy=None) -> GlobalBatchRows:
    """Infinite, shuffled (a new permutation every epoch), augmented examples: this host's rows of
    every global batch (`GlobalBatchRows`), so the order is the same for any number of hosts.
    `skips`: counts undecodable images (a `SkipCounter`, or in worker processes a recorder). The
    shuffled stream is of indices into `source` (what identifies an undecodable image to `skips`)."""
    ds = grain.MapDataset.range(len(source)).shuffle(seed=seed).repeat()
    ds = ds.random_map(TrainTransform(source, augment, size, skips, policy), seed=seed + 1)
    return GlobalBatchRows(ds, per_host_batch, jax.process_index(), jax.process_count())


def train_dataset(source: Source, augment, size: int, per_host_batch: int, seed: int, num_threads: int,
                  skips: SkipCounter, policy=None) -> grain.IterDataset:
    """`train_rows` in batches, decoded and augmented by `num_threads` threads of this process
    (genet_jax.data.workers: the same batches from worker processes)."""
    ds = train_rows(source, augment, size, per_host_batch, seed, skips, policy)
    return ds.to_iter_dataset(read_options=_read_options(num_threads)).batch(per_host_batch, drop_remainder=True)


def train_data_state(step: int, per_host_batch: int) -> dict:
    """The training iterator's position after `step` global batches, for any number of hosts (each
    has taken `per_host_batch` examples of each global batch): how a checkpoint written by another
    number of hosts resumes. (The state of `train_dataset`'s grain iterator and of the worker
    processes' iterator, genet_jax.data.workers, alike: the index of this host's next example.)"""
    return {"next_index": step * per_host_batch}


def eval_batches(source: Source, size: int, crop_fraction: float, per_host_batch: int, num_threads: int,
                 skips: SkipCounter) -> Iterator[dict]:
    """This host's shard in order, in equal-count batches across hosts; padding has mask 0."""
    shard = grain.MapDataset.range(len(source))[jax.process_index()::jax.process_count()]
    ds = shard.map(EvalTransform(source, size, crop_fraction, skips)).filter(lambda example: example is not None)
    iterator = iter(ds.to_iter_dataset(read_options=_read_options(num_threads)).batch(per_host_batch))
    num_batches = math.ceil(math.ceil(len(source) / jax.process_count()) / per_host_batch)
    for _ in range(num_batches):
        batch = next(iterator, None)
        n = 0 if batch is None else len(batch["label"])
        images = np.zeros((per_host_batch, size, size, 3), np.uint8)
        labels = np.zeros((per_host_batch,), np.int32)
        mask = np.zeros((per_host_batch,), np.float32)
        if n:
            images[:n], labels[:n], mask[:n] = batch["image"], batch["label"], 1.0
        yield {"image": images, "label": labels, "mask": mask}


class DevicePrefetcher:
    """Moves host batches onto the mesh ahead of use; tracks the iterator state that matches the
    batches handed out (not the ones prefetched), so checkpoints resume at the right example.
    `iterator`: the threads' or the worker processes' (genet_jax.data.workers), grain DatasetIterators both."""

    def __init__(self, iterator: grain.DatasetIterator, sharding, size: int = 2):
        self.iterator, self.sharding, self.size = iterator, sharding, size
        self.queue: collections.deque = collections.deque()
        self.state: dict = iterator.get_state()

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        while len(self.queue) < self.size:
            batch = next(self.iterator)
            self.queue.append((device_put_batch(batch, self.sharding), self.iterator.get_state()))
        batch, self.state = self.queue.popleft()
        return batch

    def close(self) -> None:
        """Stops the iterator's worker processes or threads."""
        self.iterator.close()


def device_put_batch(batch: dict, sharding) -> dict[str, Any]:
    """Each host's local rows -> one global array per key, sharded along the batch axis."""
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}
