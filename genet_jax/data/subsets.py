"""A seeded held-out part of a split (LLR-NAS's validation set is carved from the training data)."""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from genet_jax.data.sources import DataError, Source

HOLDOUT_SPLIT = "holdout"


class IndexedRecords:
    """records[indices[i]] without copying the underlying records."""

    def __init__(self, records: Sequence[tuple[Any, int]], indices: np.ndarray):
        self.records, self.indices = records, np.asarray(indices, np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.records[int(self.indices[index])]


def holdout_split(source: Source, holdout_size: int, seed: int) -> tuple[Source, Source]:
    """(rest, held out): `holdout_size` examples drawn by a seeded permutation, both parts in the
    source's original order. The same (source, size, seed) always holds out the same examples."""
    if not 0 < holdout_size < len(source):
        raise DataError(f"{source.name}: cannot hold out {holdout_size} of its {len(source)} examples")
    chosen = np.random.default_rng(seed).permutation(len(source))[:holdout_size]
    held = np.zeros(len(source), bool)
    held[chosen] = True
    rest = dataclasses.replace(source, records=IndexedRecords(source.records, np.flatnonzero(~held)),
                               name=f"{source.name}[-{HOLDOUT_SPLIT}]")
    holdout = dataclasses.replace(source, records=IndexedRecords(source.records, np.flatnonzero(held)),
                                  name=f"{source.name}[{HOLDOUT_SPLIT}]")
    return rest, holdout
