"""The local linear model (paper's 'Regression' step; the stage around it: genet_jax.nas.regression).

For super-block i and block type T the accuracy change of a perturbation is modelled as
    A - A* ~ g1[i,T] (d - d_i) + g2[i,T] (c - c_i) + b[i,T],     b[i, T_i] = 0
(b is the intercept for a type change). Few perturbations land on each type, so the per-type
slopes are written as block-level slopes plus per-type deviations, and only the deviations are
ridge-penalised: with plenty of samples of a type its fit is the plain least-squares one, with a
single sample the type gets an intercept and the block's shared slopes. Width enters the fit as a
relative change (c - c_i) / c_i so the penalty does not depend on the width's scale; g2 is
reported per channel.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping, Sequence

import numpy as np
from scipy.stats import spearmanr

from genet_jax.arch.spec import NetworkSpec, SuperBlockSpec
from genet_jax.nas.space import BlockType

MIN_SPEARMAN_PAIRS = 3  # a rank correlation of fewer pairs says nothing
TINY_RIDGE = 1e-8  # keeps unidentifiable shared slopes / intercepts at 0 instead of arbitrary


@dataclasses.dataclass(frozen=True)
class TypeFit:
    block: int
    type_key: str
    g_depth: float  # accuracy per unit of depth
    g_width: float  # accuracy per channel
    intercept: float  # type-change offset; 0 for the MasterNet's own type
    samples: int

    def predict_delta(self, master_block: SuperBlockSpec, depth, width):
        return (self.g_depth * (np.asarray(depth) - master_block.depth)
                + self.g_width * (np.asarray(width) - master_block.width) + self.intercept)


@dataclasses.dataclass
class LocalLinearModel:
    master: NetworkSpec
    master_accuracy: float
    fits: dict[tuple[int, str], TypeFit]

    def allowed_types(self, block: int) -> list[str]:
        """Types with a fit for this super-block: the MasterNet's own and every type sampled."""
        return sorted(key for b, key in self.fits if b == block)

    def predict(self, spec: NetworkSpec) -> float:
        total = self.master_accuracy
        for i, block in enumerate(spec.blocks):
            fit = self.fits.get((i, BlockType.of(block).key))
            if fit is None:
                raise KeyError(f"no pseudo-gradient for super-block {i} of type {BlockType.of(block).key}")
            total += float(fit.predict_delta(self.master.blocks[i], block.depth, block.width))
        return total

    def rows(self) -> list[dict]:
        return [dataclasses.asdict(fit) for _, fit in sorted(self.fits.items())]

    def to_dict(self) -> dict:
        return {"master": self.master.to_dict(), "master_accuracy": self.master_accuracy, "fits": self.rows()}

    @classmethod
    def from_dict(cls, data: Mapping) -> "LocalLinearModel":
        fits = {(row["block"], row["type_key"]): TypeFit(**row) for row in data["fits"]}
        return cls(NetworkSpec.from_dict(data["master"]), float(data["master_accuracy"]), fits)


@dataclasses.dataclass(frozen=True)
class Sample:
    """One fine-tuned perturbation of super-block `block`."""

    block: int
    replacement: SuperBlockSpec
    accuracy: float


def fit_block(index: int, master_block: SuperBlockSpec, samples: Sequence[Sample], master_accuracy: float,
              ridge: float) -> dict[str, TypeFit]:
    master_type = BlockType.of(master_block).key
    types = sorted({BlockType.of(s.replacement).key for s in samples} | {master_type})
    others = [t for t in types if t != master_type]
    # unknowns: shared (d, c) slopes | per-type slope deviations (d, c) | intercepts of the other types
    n_unknowns = 2 + 2 * len(types) + len(others)
    rows, targets = [], []
    for s in samples:
        t = BlockType.of(s.replacement).key
        x_d = s.replacement.depth - master_block.depth
        x_c = (s.replacement.width - master_block.width) / master_block.width
        row = np.zeros(n_unknowns)
        row[0], row[1] = x_d, x_c
        j = types.index(t)
        row[2 + 2 * j], row[3 + 2 * j] = x_d, x_c
        if t != master_type:
            row[2 + 2 * len(types) + others.index(t)] = 1.0
        rows.append(row)
        targets.append(s.accuracy - master_accuracy)
    penalty = np.full(n_unknowns, np.sqrt(TINY_RIDGE))
    penalty[2:2 + 2 * len(types)] = np.sqrt(max(ridge, TINY_RIDGE))
    design = np.vstack([np.asarray(rows).reshape(-1, n_unknowns), np.diag(penalty)])
    target = np.concatenate([np.asarray(targets, float), np.zeros(n_unknowns)])
    theta = np.linalg.lstsq(design, target, rcond=None)[0]
    fits = {}
    for j, t in enumerate(types):
        g_d = theta[0] + theta[2 + 2 * j]
        g_c = (theta[1] + theta[3 + 2 * j]) / master_block.width
        b = 0.0 if t == master_type else theta[2 + 2 * len(types) + others.index(t)]
        count = sum(BlockType.of(s.replacement).key == t for s in samples)
        fits[t] = TypeFit(index, t, float(g_d), float(g_c), float(b), int(count))
    return fits


def fit_local_linear_model(master: NetworkSpec, master_accuracy: float, samples: Iterable[Sample],
                           ridge: float = 1.0) -> LocalLinearModel:
    samples = list(samples)
    fits = {}
    for i, block in enumerate(master.blocks):
        for key, fit in fit_block(i, block, [s for s in samples if s.block == i], master_accuracy, ridge).items():
            fits[(i, key)] = fit
    return LocalLinearModel(master, float(master_accuracy), fits)


def leave_one_out(master: NetworkSpec, master_accuracy: float, samples: Sequence[Sample],
                  ridge: float = 1.0) -> np.ndarray:
    """Each sample's accuracy predicted by a model fitted without it (NaN where its type was seen
    only in that sample: no held-out prediction exists for it)."""
    predictions = np.full(len(samples), np.nan)
    for k, sample in enumerate(samples):
        rest = [s for j, s in enumerate(samples) if j != k and s.block == sample.block]
        if BlockType.of(sample.replacement) != BlockType.of(master.blocks[sample.block]) and \
                not any(BlockType.of(s.replacement) == BlockType.of(sample.replacement) for s in rest):
            continue
        fits = fit_block(sample.block, master.blocks[sample.block], rest, master_accuracy, ridge)
        fit = fits[BlockType.of(sample.replacement).key]
        predictions[k] = master_accuracy + float(
            fit.predict_delta(master.blocks[sample.block], sample.replacement.depth, sample.replacement.width))
    return predictions


def fit_quality(actual: Sequence[float], predicted: Sequence[float]) -> dict:
    """RMSE, R^2 and Spearman rank correlation over the pairs with a prediction."""
    actual, predicted = np.asarray(actual, float), np.asarray(predicted, float)
    keep = np.isfinite(predicted)
    a, p = actual[keep], predicted[keep]
    out = {"pairs": int(keep.sum()), "rmse": None, "r2": None, "spearman": None}
    if len(a):
        out["rmse"] = float(np.sqrt(np.mean((a - p) ** 2)))
        total = float(np.sum((a - a.mean()) ** 2))
        out["r2"] = 1.0 - float(np.sum((a - p) ** 2)) / total if total > 0 else None
    if len(a) >= MIN_SPEARMAN_PAIRS and np.ptp(a) > 0 and np.ptp(p) > 0:
        out["spearman"] = float(spearmanr(a, p).statistic)
    return out
