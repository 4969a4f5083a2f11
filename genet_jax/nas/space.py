"""The search space around a MasterNet: block types (type, kernel, ratio), the paper's perturbation
ranges, and seeded perturbation jobs."""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Sequence

import numpy as np

from genet_jax.arch.spec import NetworkSpec, SpecError, SuperBlockSpec
from genet_jax.nas.store import sha256_key


def _ratio_text(ratio: float) -> str:
    """Shortest exact text of a ratio (0.25, 3, 0.3333333333333333): keys must round-trip."""
    return str(int(ratio)) if float(ratio).is_integer() else repr(float(ratio))


@dataclasses.dataclass(frozen=True, order=True)
class BlockType:
    """The paper treats each (block type, kernel size, ratio) as its own type."""

    block_type: str
    kernel_size: int
    ratio: float

    @property
    def key(self) -> str:
        return f"{self.block_type}-k{self.kernel_size}-r{_ratio_text(self.ratio)}"

    @classmethod
    def of(cls, block: SuperBlockSpec) -> "BlockType":
        return cls(block.block_type, block.kernel_size, float(block.ratio))

    @classmethod
    def from_key(cls, key: str) -> "BlockType":
        block_type, kernel, ratio = key.split("-", 2)
        return cls(block_type, int(kernel[1:]), float(ratio[1:]))


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """Paper section 5: kernel {3, 5}, width [0.5c, 2c], depth [d-2, d+2] (>= 1), BL r {0.25, 0.5},
    DW r {3, 6, 9}, XX r 1. Widths are multiples of `width_multiple`."""

    kernels: tuple[int, ...] = (3, 5)
    bl_ratios: tuple[float, ...] = (0.25, 0.5)
    dw_ratios: tuple[float, ...] = (3.0, 6.0, 9.0)
    xx_ratios: tuple[float, ...] = (1.0,)
    width_range: tuple[float, float] = (0.5, 2.0)
    depth_delta: int = 2
    width_multiple: int = 8

    def __post_init__(self):
        low, high = self.width_range
        if not 0 < low <= 1 <= high:
            raise SpecError("space.width_range",
                            f"must be (low, high) with 0 < low <= 1 <= high, got {self.width_range}")
        if self.depth_delta < 0 or self.width_multiple < 1:
            raise SpecError("space", "depth_delta must be >= 0 and width_multiple >= 1")
        if not self.kernels or any(k % 2 == 0 or k < 1 for k in self.kernels):
            raise SpecError("space.kernels", f"must be odd sizes, got {self.kernels}")

    @classmethod
    def from_config(cls, config) -> "SearchSpace":
        return cls(tuple(int(k) for k in config.kernels), tuple(float(r) for r in config.bl_ratios),
                   tuple(float(r) for r in config.dw_ratios), (1.0,),
                   (float(config.width_range[0]), float(config.width_range[1])), int(config.depth_delta),
                   int(config.width_multiple))

    def block_types(self) -> list[BlockType]:
        ratios = {"XX": self.xx_ratios, "BL": self.bl_ratios, "DW": self.dw_ratios}
        return [BlockType(t, k, float(r)) for t in ("XX", "BL", "DW") for r in ratios[t] for k in self.kernels]

    def widths(self, width: int) -> np.ndarray:
        """Every allowed width for a super-block of width `width` (multiples of width_multiple)."""
        m = self.width_multiple
        low = max(m, int(math.ceil(width * self.width_range[0] / m)) * m)
        high = max(low, int(math.floor(width * self.width_range[1] / m)) * m)
        return np.arange(low, high + 1, m)

    def depths(self, depth: int) -> np.ndarray:
        return np.arange(max(1, depth - self.depth_delta), depth + self.depth_delta + 1)


def make_block(block_type: BlockType, depth: int, width: int, stride: int) -> SuperBlockSpec:
    return SuperBlockSpec(block_type.block_type, int(depth), int(width), stride, block_type.kernel_size,
                          block_type.ratio)


def spec_key(spec: NetworkSpec) -> str:
    """A short stable hash of a structure (the results store's key)."""
    return sha256_key(json.dumps(spec.to_dict(), sort_keys=True, separators=(",", ":")))


@dataclasses.dataclass(frozen=True)
class Perturbation:
    """Job `job`: the MasterNet with super-block `block` replaced (paper's 'Distillation' step)."""

    job: int
    block: int
    spec: NetworkSpec

    @property
    def key(self) -> str:
        return spec_key(self.spec)


def perturb_block(master: NetworkSpec, index: int, rng: np.random.Generator, space: SearchSpace) -> SuperBlockSpec:
    """One random replacement of super-block `index` within the paper's ranges; never the original."""
    original = master.blocks[index]
    types, widths, depths = space.block_types(), space.widths(original.width), space.depths(original.depth)
    for _ in range(1000):
        block = make_block(types[rng.integers(len(types))], rng.choice(depths), rng.choice(widths), original.stride)
        if block != original:
            return block
    raise SpecError(f"blocks[{index}]", "the search space around this super-block holds only the block itself")


def perturbations(master: NetworkSpec, per_block: int, seed: int, space: SearchSpace,
                  blocks: Sequence[int] | None = None) -> list[Perturbation]:
    """`per_block` distinct perturbations of each super-block, job numbers in a fixed order. Each
    block draws from its own seeded stream, so changing `per_block` keeps the earlier draws."""
    jobs: list[Perturbation] = []
    for index in (range(len(master.blocks)) if blocks is None else blocks):
        rng = np.random.default_rng([seed, index])
        seen: set[SuperBlockSpec] = set()
        for _ in range(100 * per_block):
            if len(seen) == per_block:
                break
            block = perturb_block(master, index, rng, space)
            if block not in seen:
                seen.add(block)
                jobs.append(Perturbation(len(jobs), index, master.with_block(index, block)))
    return jobs


def shard_jobs(jobs: Sequence[Perturbation], shard: int, num_shards: int) -> list[Perturbation]:
    """A disjoint share: jobs whose number is `shard` modulo `num_shards`."""
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard must be i/n with 0 <= i < n, got {shard}/{num_shards}")
    return [job for job in jobs if job.job % num_shards == shard]
