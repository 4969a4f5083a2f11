"""Flax Linen building blocks: conv-BN-ReLU, the XX / BL / DW residual units, the super-block.

Layout is NHWC. Every conv uses explicit symmetric padding (k-1)//2 so outputs match PyTorch
(lax 'SAME' puts the odd pixel bottom/right for stride 2). Parameters and BN statistics are float32;
`dtype` is the compute dtype.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from genet_jax.models.conv_ops import conv_function
from genet_jax.arch.spec import UnitConfig

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # Flax convention: PyTorch's momentum 0.1

Dtype = Any


def conv_kernel_init(groups: int) -> Callable:
    """He-normal over fan-out, per group: std = sqrt(2 / (k*k*out/groups))."""
    return nn.initializers.variance_scaling(2.0 * groups, "fan_out", "normal")


class ConvBN(nn.Module):
    """kxk conv (no bias) -> BN -> optional ReLU. With `fold_bn` the BN is already folded into the
    conv, which then carries a bias (see genet_jax.models.folding)."""

    features: int
    kernel_size: int = 1
    stride: int = 1
    groups: int = 1
    relu: bool = True
    zero_init_scale: bool = False
    fold_bn: bool = False
    dtype: Dtype = jnp.float32
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x, train: bool = False):
        pad = (self.kernel_size - 1) // 2
        x = nn.Conv(self.features, (self.kernel_size, self.kernel_size), strides=self.stride,
                    padding=((pad, pad), (pad, pad)), feature_group_count=self.groups,
                    use_bias=self.fold_bn, kernel_init=conv_kernel_init(self.groups),
                    dtype=self.dtype, param_dtype=jnp.float32,
                    conv_general_dilated=conv_function(self.conv_impl), name="conv")(x)
        if not self.fold_bn:
            x = nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                             scale_init=nn.initializers.zeros if self.zero_init_scale else nn.initializers.ones,
                             dtype=self.dtype, param_dtype=jnp.float32, name="bn")(x)
        return nn.relu(x) if self.relu else x


class ResidualUnit(nn.Module):
    """ReLU(main(x) + shortcut(x)); the shortcut is identity or a strided 1x1 conv + BN.

    Subclasses define `main_path`; the last conv of the main path has no ReLU and, with
    `zero_init_last_bn`, a zero-initialised BN scale so the unit starts as its shortcut.
    """

    unit: UnitConfig
    zero_init_last_bn: bool = False
    fold_bn: bool = False
    dtype: Dtype = jnp.float32
    conv_impl: str = "auto"

    def conv_bn(self, features: int, kernel_size: int, stride: int = 1, groups: int = 1,
                relu: bool = True, last: bool = False, name: str = "") -> ConvBN:
        return ConvBN(features, kernel_size, stride, groups, relu, zero_init_scale=last and self.zero_init_last_bn,
                      fold_bn=self.fold_bn, dtype=self.dtype, conv_impl=self.conv_impl, name=name)

    def main_path(self, x, train: bool):
        raise NotImplementedError

    @nn.compact
    def __call__(self, x, train: bool = False):
        y = self.main_path(x, train)
        if self.unit.has_projection:
            x = self.conv_bn(self.unit.width, 1, self.unit.stride, relu=False, name="shortcut")(x, train)
        return nn.relu(y + x)


class XXBlock(ResidualUnit):
    """Full kxk conv (stride here) -> full kxk conv."""

    def main_path(self, x, train):
        u = self.unit
        x = self.conv_bn(u.mid_width, u.kernel_size, u.stride, name="conv1")(x, train)
        return self.conv_bn(u.width, u.kernel_size, relu=False, last=True, name="conv2")(x, train)


class BLBlock(ResidualUnit):
    """1x1 reduce -> full kxk (stride here) -> 1x1 expand."""

    def main_path(self, x, train):
        u = self.unit
        x = self.conv_bn(u.mid_width, 1, name="conv1")(x, train)
        x = self.conv_bn(u.mid_width, u.kernel_size, u.stride, name="conv2")(x, train)
        return self.conv_bn(u.width, 1, relu=False, last=True, name="conv3")(x, train)


class DWBlock(ResidualUnit):
    """1x1 expand -> depthwise kxk (stride here) -> 1x1 project."""

    def main_path(self, x, train):
        u = self.unit
        x = self.conv_bn(u.mid_width, 1, name="conv1")(x, train)
        x = self.conv_bn(u.mid_width, u.kernel_size, u.stride, groups=u.mid_width, name="conv2")(x, train)
        return self.conv_bn(u.width, 1, relu=False, last=True, name="conv3")(x, train)


BLOCK_MODULES = {"XX": XXBlock, "BL": BLBlock, "DW": DWBlock}


class SuperBlock(nn.Module):
    """`depth` residual units of one type; units are named unit0, unit1, ..."""

    units: tuple[UnitConfig, ...]
    zero_init_last_bn: bool = False
    fold_bn: bool = False
    dtype: Dtype = jnp.float32
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x, train: bool = False):
        for i, unit in enumerate(self.units):
            x = BLOCK_MODULES[unit.block_type](unit, self.zero_init_last_bn, self.fold_bn, self.dtype,
                                               self.conv_impl, name=f"unit{i}")(x, train)
        return x
