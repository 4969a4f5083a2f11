"""Parameter and multiply-add counts, from the spec (pure arithmetic) and from a built module.

Parameters: conv kernels, BN scale and bias (running statistics are not parameters), head weight
and bias. Multiply-adds: convs and the head; BN, ReLU, additions and pooling are not counted, as
in the paper's "FLOPs" column.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genet_jax.spec import NetworkSpec, UnitConfig


def conv_out_size(size: int, kernel_size: int, stride: int) -> int:
    pad = (kernel_size - 1) // 2
    return (size + 2 * pad - kernel_size) // stride + 1


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
    rows.append(LayerCount("stem", (size, size, spec.stem_width), p, m))
    for i, block in enumerate(spec.blocks):
        params = macs = 0
        for unit in spec.units(i):
            p, m, size = _unit(unit, size)
            params, macs = params + p, macs + m
        rows.append(LayerCount(f"stage{i}", (size, size, block.width), params, macs))
    p, m, size = _conv(spec.blocks[-1].width, spec.final_width, 1, 1, 1, size)
    rows.append(LayerCount("final", (size, size, spec.final_width), p, m))
    head = spec.final_width * spec.num_classes
    rows.append(LayerCount("head", (1, 1, spec.num_classes), head + spec.num_classes, head))
    return rows


def spec_params(spec: NetworkSpec) -> int:
    return sum(r.params for r in count_spec(spec))


def spec_macs(spec: NetworkSpec, resolution: Optional[int] = None) -> int:
    return sum(r.macs for r in count_spec(spec, resolution))


# ---- from a built module -----------------------------------------------------------------

def variables_params(params) -> int:
    """Number of scalars in a parameter tree."""
    return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(params)))


def module_counts(model: nn.Module, resolution: Optional[int] = None) -> tuple[int, int]:
    """(parameters, multiply-adds) of a built model, by abstract evaluation (no FLOPs executed).

    Multiply-adds are read off every nn.Conv / nn.Dense call: kernel size x output positions.
    """
    macs = []

    def record(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        module = context.module
        if context.method_name == "__call__" and isinstance(module, (nn.Conv, nn.Dense)):
            kernel = module.variables["params"]["kernel"]
            positions = int(np.prod(out.shape[1:-1])) if out.ndim > 2 else 1
            macs.append(int(np.prod(kernel.shape)) * positions)
        return out

    x = jax.ShapeDtypeStruct(model.input_shape(1, resolution), jnp.float32)

    def init(x):
        with nn.intercept_methods(record):
            return model.init(jax.random.PRNGKey(0), x)

    variables = jax.eval_shape(init, x)
    return variables_params(variables["params"]), sum(macs)
