"""The training and evaluation data of a training config."""
from __future__ import annotations

from typing import Optional

import ml_collections

from genet_jax.data import pipeline, workers
from genet_jax.data.autoaugment import make_policy
from genet_jax.data.sources import Source, open_source
from genet_jax.data.subsets import HOLDOUT_SPLIT, holdout_split
from genet_jax.training.config import ConfigError


def open_sources(config: ml_collections.ConfigDict) -> tuple[Source, Source]:
    """(train, eval) sources of a training config. With data.holdout_size > 0 that many training
    examples are held out (seeded) and eval_split 'holdout' evaluates on them. Wherever their images are
    decoded (training, evaluation, data.cache_decoded), files above data.max_image_pixels are skipped unread."""
    data = config.data
    train_source = open_source(data.source, data.train_split, data.data_dir or None,
                               max_image_pixels=data.max_image_pixels)
    if data.eval_split == HOLDOUT_SPLIT and data.holdout_size <= 0:
        raise ConfigError("data.eval_split", "'holdout' needs data.holdout_size > 0")
    if data.holdout_size > 0:
        if data.holdout_size >= len(train_source):
            raise ConfigError("data.holdout_size", f"{data.holdout_size} is not smaller than the "
                                                   f"{len(train_source)} examples of {train_source.name}")
        train_source, holdout = holdout_split(train_source, data.holdout_size, data.holdout_seed)
    if data.eval_split == HOLDOUT_SPLIT:
        eval_source = holdout
    else:
        folder_classes = train_source.class_names if data.source.startswith("folder:") else None
        eval_source = open_source(data.source, data.eval_split, data.data_dir or None, class_names=folder_classes,
                                  max_image_pixels=data.max_image_pixels)
    if data.cache_decoded:
        train_source = pipeline.decode_in_memory(train_source, data.num_threads, config.progress_bar)
        eval_source = pipeline.decode_in_memory(eval_source, data.num_threads, config.progress_bar)
    return train_source, eval_source


def train_batches(config: ml_collections.ConfigDict, source: Source, size: int, per_host_batch: int,
                  skips: pipeline.SkipCounter, data_state: Optional[dict], sharding) -> pipeline.DevicePrefetcher:
    """This host's augmented training batches, placed with `sharding` ahead of use: decoded by
    data.num_threads threads of this process, or with data.worker_count > 0 by that many grain
    worker processes of data.num_threads threads each (the same batches). `data_state`: the
    iterator position to resume at (a checkpoint's, `TrainCheckpointer.restore`, or the step's,
    `pipeline.train_data_state`), set through grain's DatasetIterator.set_state; None: the beginning."""
    data = config.data
    iterator = workers.train_iterator(source, config.augment, size, per_host_batch, config.seed, data.num_threads,
                                      data.worker_count, skips, make_policy(config.augment))
    if data_state is not None:
        iterator.set_state(data_state)
    return pipeline.DevicePrefetcher(iterator, sharding)
