"""Flax Linen building blocks: conv-BN(-ReLU), the residual unit, the super-block.

Layout is NHWC. Every conv uses explicit symmetric padding (k-1)//2 so outputs match PyTorch
(lax 'SAME' puts the odd pixel bottom/right for stride 2). Parameters and BN statistics are float32.

The layers never see the model-wide settings (compute dtype, convolution kernels, BN folding,
train/eval): as in flax's ImageNet example they are handed layer factories (`ModuleDef`s, partially
applied module classes), built in one place, `build_layers`.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple, Optional

import flax.linen as nn
import jax.numpy as jnp

from genet_jax.arch.counting import symmetric_pad
from genet_jax.arch.paths import unit_name
from genet_jax.arch.spec import UnitConfig
from genet_jax.models.conv_ops import conv_function, pool_function

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # Flax convention: PyTorch's momentum 0.1
# Batch variance as the mean squared deviation from the batch mean (two passes, as PyTorch computes it),
# not E[x^2] - E[x]^2: that one cancels catastrophically and amplified reduction-order noise ~10x a
# step between 1x8 and 2x4 processes (issue 26). benchmarks/bn_statistics.py measures what it costs.
BN_USE_FAST_VARIANCE = False

Dtype = Any
ModuleDef = Any  # a module class, or a functools.partial of one


def conv_kernel_init(groups: int) -> Callable:
    """He-normal over fan-out, per group: std = sqrt(2 / (k*k*out/groups))."""
    return nn.initializers.variance_scaling(2.0 * groups, "fan_out", "normal")


def _factory():
    """A required keyword-only field: a ModuleDef, passed by name (see build_layers)."""
    return dataclasses.field(kw_only=True)


class ConvBN(nn.Module):
    """kxk conv -> BN -> optional ReLU.

    `conv` builds the nn.Conv (compute dtype, kernels, bias); `norm` the nn.BatchNorm (train or
    eval), or is None when the BN is folded into the conv, which then carries a bias (see
    genet_jax.models.folding). Submodules: conv, bn.
    """

    features: int
    kernel_size: int = 1
    stride: int = 1
    groups: int = 1
    relu: bool = True
    zero_init_scale: bool = False
    conv: ModuleDef = _factory()
    norm: Optional[ModuleDef] = _factory()

    @nn.compact
    def __call__(self, x):
        k, pad = self.kernel_size, symmetric_pad(self.kernel_size)
        x = self.conv(self.features, (k, k), strides=self.stride, padding=((pad, pad), (pad, pad)),
                      feature_group_count=self.groups, kernel_init=conv_kernel_init(self.groups), name="conv")(x)
        if self.norm is not None:
            scale_init = nn.initializers.zeros if self.zero_init_scale else nn.initializers.ones
            x = self.norm(scale_init=scale_init, name="bn")(x)
        return nn.relu(x) if self.relu else x


class ResidualUnit(nn.Module):
    """ReLU(main(x) + shortcut(x)), wired from `unit.conv_layers()` (as the PyTorch module is).

    The main path runs its convs in order, each with a ReLU except the last (`is_last`), whose
    BN scale starts at zero with `zero_init_last_bn` so the unit starts as its shortcut. The
    shortcut is the identity or the unit's projection conv (1x1, strided, + BN).
    """

    unit: UnitConfig
    zero_init_last_bn: bool = False
    conv_bn: ModuleDef = _factory()  # ConvBN

    @nn.compact
    def __call__(self, x):
        y = shortcut = x
        for layer in self.unit.conv_layers():
            module = self.conv_bn(layer.out_width, layer.kernel_size, layer.stride, layer.groups, relu=layer.relu,
                                  zero_init_scale=self.zero_init_last_bn and layer.is_last, name=layer.name)
            if layer.is_shortcut:
                shortcut = module(x)
            else:
                y = module(y)
        return nn.relu(y + shortcut)


class SuperBlock(nn.Module):
    """`depth` residual units of one type; units are named unit0, unit1, ..."""

    units: tuple[UnitConfig, ...]
    residual_unit: ModuleDef = _factory()  # ResidualUnit

    @nn.compact
    def __call__(self, x):
        for j, unit in enumerate(self.units):
            x = self.residual_unit(unit, name=unit_name(j))(x)
        return x


class Layers(NamedTuple):
    """The layer factories of one model call."""

    conv_bn: ModuleDef  # ConvBN(features, kernel_size, stride, groups, relu, zero_init_scale, name=...)
    residual_unit: ModuleDef  # ResidualUnit(unit, name=...)
    pool: Callable  # global average pooling, NHWC -> (N, C) float32


def build_layers(dtype: Dtype, conv_impl: str, *, fold_bn: bool = False, zero_init_last_bn: bool = False,
                 train: bool = False, bn_axis_name: Optional[str] = None) -> Layers:
    """Turn the model-wide settings into layer factories: the one place that picks the conv kernels
    (genet_jax.models.conv_ops), the compute dtype (parameters and BN statistics stay float32), BN
    or its folded form (a conv with bias), and BN's train / eval mode. `bn_axis_name`: in training,
    BN's batch statistics are averaged over this mapped axis (every device's rows, under shard_map);
    None: each call's own rows."""
    conv = functools.partial(nn.Conv, use_bias=fold_bn, dtype=dtype, param_dtype=jnp.float32,
                             conv_general_dilated=conv_function(conv_impl))
    norm = None if fold_bn else functools.partial(
        nn.BatchNorm, use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, dtype=dtype,
        param_dtype=jnp.float32, axis_name=bn_axis_name, use_fast_variance=BN_USE_FAST_VARIANCE)
    conv_bn = functools.partial(ConvBN, conv=conv, norm=norm)
    residual_unit = functools.partial(ResidualUnit, zero_init_last_bn=zero_init_last_bn, conv_bn=conv_bn)
    return Layers(conv_bn, residual_unit, pool_function(conv_impl))
