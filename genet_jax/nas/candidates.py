"""The 'Selection' step's math (the stage around it: genet_jax.nas.selection): score many random
structures with the local linear model and the latency table, keep those under the budget, measure
the most accurate with the real full-network probe and pick the best one that truly fits."""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

import numpy as np

from genet_jax.arch.spec import NetworkSpec
from genet_jax.errors import InputError
from genet_jax.nas.latency_table import LatencyTable
from genet_jax.nas.local_linear import LocalLinearModel
from genet_jax.nas.space import BlockType, SearchSpace, make_block


class NoStructureFits(InputError, RuntimeError):
    """No structure was found under the latency budget."""


@dataclasses.dataclass
class Candidates:
    """n structures as arrays: types[n, M] indexes type_keys[block]; depths, widths [n, M].
    Row 0 is the MasterNet itself, so selection can always fall back to it."""

    type_keys: list[list[str]]
    types: np.ndarray
    depths: np.ndarray
    widths: np.ndarray

    def __len__(self) -> int:
        return len(self.types)

    def spec(self, master: NetworkSpec, row: int) -> NetworkSpec:
        blocks = [make_block(BlockType.from_key(self.type_keys[i][self.types[row, i]]), self.depths[row, i],
                             self.widths[row, i], block.stride) for i, block in enumerate(master.blocks)]
        return master.replace(blocks=tuple(blocks))


def sample_candidates(master: NetworkSpec, type_keys: Sequence[Sequence[str]], space: SearchSpace, count: int,
                      seed: int) -> Candidates:
    """`count` random structures (uniform type, depth and width per super-block) after the MasterNet."""
    rng = np.random.default_rng(seed)
    m = len(master.blocks)
    types, depths, widths = (np.zeros((count + 1, m), np.int64) for _ in range(3))
    for i, block in enumerate(master.blocks):
        keys = list(type_keys[i])
        types[0, i] = keys.index(BlockType.of(block).key)
        depths[0, i], widths[0, i] = block.depth, block.width
        types[1:, i] = rng.integers(len(keys), size=count)
        depths[1:, i] = rng.choice(space.depths(block.depth), size=count)
        widths[1:, i] = rng.choice(space.widths(block.width), size=count)
    return Candidates([list(k) for k in type_keys], types, depths, widths)


def predict_accuracy(model: LocalLinearModel, candidates: Candidates) -> np.ndarray:
    total = np.full(len(candidates), model.master_accuracy)
    for i, keys in enumerate(candidates.type_keys):
        master_block = model.master.blocks[i]
        for t, key in enumerate(keys):
            rows = candidates.types[:, i] == t
            if rows.any():
                total[rows] += model.fits[(i, key)].predict_delta(master_block, candidates.depths[rows, i],
                                                                  candidates.widths[rows, i])
    return total


def predict_latency(table: LatencyTable, candidates: Candidates, stem_width: int) -> np.ndarray:
    return table.predict(candidates.type_keys, candidates.types, candidates.depths, candidates.widths, stem_width)


@dataclasses.dataclass
class Selection:
    row: int
    spec: NetworkSpec
    predicted_accuracy: float
    predicted_latency: float
    measured_latency: float
    budget: float
    measured: list[dict]  # every full-network probe: row, predicted accuracy/latency, measured latency


def select(master: NetworkSpec, candidates: Candidates, accuracy: np.ndarray, latency: np.ndarray, budget: float,
           measure: Callable[[NetworkSpec], float], top_k: int = 5, max_rounds: int = 20, slack: float = 0.0,
           progress: Optional[Callable[[int], None]] = None) -> Selection:
    """Rank the candidates the table puts under `budget` x (1 + `slack`) by predicted accuracy,
    measure the top `top_k` with `measure` (ms/image of the full network), return the most accurate
    one whose measurement fits the budget; if none does, measure the next `top_k`, up to
    `max_rounds` rounds. The slack lets the probe, not the table's error, decide near the budget."""
    feasible = np.flatnonzero(latency <= budget * (1.0 + slack))
    order = feasible[np.lexsort((feasible, -accuracy[feasible]))]  # ties: lower row first (deterministic)
    measured = []
    for start in range(0, min(len(order), top_k * max_rounds), top_k):
        fits = []
        for row in order[start:start + top_k]:
            ms = float(measure(candidates.spec(master, int(row))))
            measured.append({"row": int(row), "predicted_accuracy": float(accuracy[row]),
                             "predicted_latency": float(latency[row]), "measured_latency": ms})
            if progress:
                progress(1)
            if ms <= budget:
                fits.append(int(row))
        if fits:
            best = fits[0]  # already in descending predicted accuracy
            return Selection(best, candidates.spec(master, best), float(accuracy[best]), float(latency[best]),
                             next(m["measured_latency"] for m in measured if m["row"] == best), budget, measured)
    raise NoStructureFits(f"no structure fits the budget of {budget:.4g} ms/image: {len(feasible)} of "
                       f"{len(candidates)} candidates were predicted under it, {len(measured)} measured, none fitted. "
                       "Raise the budget or check the latency table's calibration.")
