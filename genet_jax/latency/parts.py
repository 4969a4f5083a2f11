"""The parts of a MasterNet that a latency table times one at a time (genet_jax.nas.latency_table):
its stem conv, a residual unit, its final conv and head. A part is its explicit fields alone:
`key()` names it in a cache of part probes from those fields, never from a module's repr (which
changes with the framework's release), and each engine builds it in its own framework from them
(`flax_module`, `torch_module`), eval mode.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional, Protocol

import flax.linen as nn

from genet_jax.arch.spec import UnitConfig
from genet_jax.models.layers import build_layers
from genet_jax.optional import require

TORCH_FEATURE = "latency-table parts exported to ONNX"


class Part(Protocol):
    def key(self) -> str:
        """The part's fields as text: equal for the same part, different for any other."""

    def flax_module(self, dtype: Any, conv_impl: str) -> nn.Module:
        """The part as the MasterNet builds it."""

    def torch_module(self, in_channels: int) -> Any:
        """The part as this project's torch module, BN folded (as the exported network is)."""


@dataclasses.dataclass(frozen=True)
class StemPart:
    width: int
    kernel_size: int
    stride: int

    def key(self) -> str:
        return f"stem w{self.width} k{self.kernel_size} s{self.stride}"

    def flax_module(self, dtype: Any, conv_impl: str) -> nn.Module:
        return _FlaxLayer(dtype, conv_impl, stem=(self.width, self.kernel_size, self.stride))

    def torch_module(self, in_channels: int) -> Any:
        torch_model = _torch_model()
        return torch_model.fold_bn(torch_model.TorchConvBN(in_channels, self.width, self.kernel_size,
                                                           self.stride).eval())


@dataclasses.dataclass(frozen=True)
class UnitPart:
    """A residual unit; its mid width stands for the block's ratio (the width the ratio resolves to)."""

    unit: UnitConfig

    def key(self) -> str:
        u = self.unit
        return (f"unit {u.block_type} {u.in_width}->{u.width} mid{u.mid_width} k{u.kernel_size} s{u.stride}"
                + (" projection" if u.has_projection else ""))

    def flax_module(self, dtype: Any, conv_impl: str) -> nn.Module:
        return _FlaxLayer(dtype, conv_impl, unit=self.unit)

    def torch_module(self, in_channels: int) -> Any:
        torch_model = _torch_model()
        return torch_model.fold_bn(torch_model.TorchResidualUnit(self.unit).eval())


@dataclasses.dataclass(frozen=True)
class TailPart:
    """The final 1x1 conv, global pooling and head; its input width is the input shape's."""

    final_width: int
    num_classes: int

    def key(self) -> str:
        return f"tail w{self.final_width} classes{self.num_classes}"

    def flax_module(self, dtype: Any, conv_impl: str) -> nn.Module:
        return _FlaxTail(self.final_width, self.num_classes, dtype, conv_impl)

    def torch_module(self, in_channels: int) -> Any:
        torch_model = _torch_model()
        return torch_model.fold_bn(torch_model.TorchTail(in_channels, self.final_width, self.num_classes).eval())


def _torch_model():
    require("torch", TORCH_FEATURE)
    from genet_jax.interop import torch_model  # imports torch: only an engine exporting parts needs it

    return torch_model


class _FlaxLayer(nn.Module):
    """The MasterNet's stem conv (`stem` = (features, kernel, stride)) or a residual unit (`unit`).
    The layer shares this module's scope: the variables are the layer's own (stem: conv/, bn/;
    unit: conv1/, ...)."""

    dtype: Any
    conv_impl: str
    stem: Optional[tuple[int, int, int]] = None
    unit: Optional[UnitConfig] = None

    def setup(self):
        layers = build_layers(self.dtype, self.conv_impl)
        self.layer = layers.conv_bn(*self.stem) if self.stem is not None else layers.residual_unit(self.unit)
        nn.share_scope(self, self.layer)

    def __call__(self, x):
        return self.layer(x)


class _FlaxTail(nn.Module):
    """The MasterNet's final 1x1 conv, pooling and head."""

    final_width: int
    num_classes: int
    dtype: Any
    conv_impl: str

    @nn.compact
    def __call__(self, x):
        layers = build_layers(self.dtype, self.conv_impl)
        x = layers.pool(layers.conv_bn(self.final_width, 1)(x))
        return nn.Dense(self.num_classes, dtype=self.dtype)(x.astype(self.dtype))
