"""Parameter and multiply-add counts from a spec (pure arithmetic; genet_jax.models.module_counts
counts a built module the same way).

Parameters: conv kernels, BN scale and bias (running statistics are not parameters), head weight
and bias. Multiply-adds: convs and the head; BN, ReLU, additions and pooling are not counted, as
in the paper's "FLOPs" column.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from genet_jax.arch.paths import FINAL, HEAD, STEM, stage_name
from genet_jax.arch.spec import NetworkSpec, UnitConfig


def symmetric_pad(kernel_size: int) -> int:
    """Padding on each side of every conv of the network: (k - 1) // 2, as PyTorch's convs (the
    Flax layers spell it out because lax 'SAME' puts the odd pixel bottom/right for stride 2)."""
    return (kernel_size - 1) // 2


def conv_out_size(size: int, kernel_size: int, stride: int, padding: Optional[tuple[int, int]] = None) -> int:
    """Output length along one axis of a conv with `padding` (before, after); by default the
    network's symmetric padding."""
    before, after = (symmetric_pad(kernel_size),) * 2 if padding is None else padding
    return (size + before + after - kernel_size) // stride + 1


@dataclasses.dataclass(frozen=True)
class LayerCount:
    """Counts of one row of the summary table (stem, a super-block, final conv or head)."""

    name: str
    out_shape: tuple[int, int, int]  # H, W, C
    params: int
    macs: int


def _conv(cin: int, cout: int, k: int, stride: int, groups: int, size: int) -> tuple[int, int, int]:
    out = conv_out_size(size, k, stride)
    weights = k * k * (cin // groups) * cout
    return weights + 2 * cout, weights * out * out, out


def _unit(u: UnitConfig, size: int) -> tuple[int, int, int]:
    out = conv_out_size(size, u.kernel_size, u.stride)
    counts = [_conv(c.in_width, c.out_width, c.kernel_size, c.stride, c.groups, out if c.after_stride else size)
              for c in u.conv_layers()]
    return sum(c[0] for c in counts), sum(c[1] for c in counts), out


def count_spec(spec: NetworkSpec, resolution: Optional[int] = None) -> list[LayerCount]:
    """Per-row counts: stem, every super-block, final conv, head."""
    size = resolution or spec.resolution
    rows = []
    p, m, size = _conv(spec.in_channels, spec.stem_width, spec.stem_kernel_size, spec.stem_stride, 1, size)
    rows.append(LayerCount(STEM, (size, size, spec.stem_width), p, m))
    for i, block in enumerate(spec.blocks):
        params = macs = 0
        for unit in spec.units(i):
            p, m, size = _unit(unit, size)
            params, macs = params + p, macs + m
        rows.append(LayerCount(stage_name(i), (size, size, block.width), params, macs))
    p, m, size = _conv(spec.blocks[-1].width, spec.final_width, 1, 1, 1, size)
    rows.append(LayerCount(FINAL, (size, size, spec.final_width), p, m))
    head = spec.final_width * spec.num_classes
    rows.append(LayerCount(HEAD, (1, 1, spec.num_classes), head + spec.num_classes, head))
    return rows


def spec_params(spec: NetworkSpec) -> int:
    return sum(r.params for r in count_spec(spec))


def spec_macs(spec: NetworkSpec, resolution: Optional[int] = None) -> int:
    return sum(r.macs for r in count_spec(spec, resolution))
