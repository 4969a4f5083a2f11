"""A standalone PyTorch GENet built from any NetworkSpec (plain torch, no timm).

Same semantics as the Flax model (genet_jax.models.layers) and the same module tree, so its state_dict
keys are the Flax paths: `stage0.unit0.conv1.conv.weight`, `...bn.running_mean`, `head.weight`.
Needs torch (the torch extra); only the ONNX export and LLR-NAS's ONNX Runtime part timing import this module,
and only once torch is known to be installed, so the rest runs without torch.
"""
from __future__ import annotations

from typing import Mapping, Optional

import numpy as np
import torch
from torch import nn

from genet_jax.arch.counting import symmetric_pad
from genet_jax.arch.paths import stage_name, unit_name
from genet_jax.arch.spec import NetworkSpec, UnitConfig
from genet_jax.interop.state_dict import to_state_dict
from genet_jax.models.layers import BN_EPSILON


class TorchConvBN(nn.Module):
    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int = 1, groups: int = 1,
                 relu: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride, symmetric_pad(kernel_size), groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPSILON, momentum=0.1)
        self.relu = relu

    def forward(self, x):
        x = self.bn(self.conv(x))
        return torch.relu(x) if self.relu else x

    @torch.no_grad()
    def fold_bn(self) -> None:
        """Fold the (eval-mode) BN into the conv, which gains a bias; the BN becomes identity."""
        if isinstance(self.bn, nn.Identity):
            return
        bn, conv = self.bn, self.conv
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                          groups=conv.groups, bias=True).to(conv.weight.dtype)
        fused.weight.copy_(conv.weight * scale[:, None, None, None])
        fused.bias.copy_(bn.bias - bn.running_mean * scale)
        self.conv, self.bn = fused, nn.Identity()


class TorchResidualUnit(nn.Module):
    def __init__(self, unit: UnitConfig):
        super().__init__()
        self.main_names, self.has_projection = [], unit.has_projection
        for conv in unit.conv_layers():
            self.add_module(conv.name, TorchConvBN(conv.in_width, conv.out_width, conv.kernel_size, conv.stride,
                                                   conv.groups, relu=conv.relu))
            if not conv.is_shortcut:
                self.main_names.append(conv.name)

    def forward(self, x):
        y = x
        for name in self.main_names:
            y = getattr(self, name)(y)
        return torch.relu(y + (self.shortcut(x) if self.has_projection else x))


class TorchTail(nn.Module):
    """The network's final 1x1 conv, global average pooling and head (what TorchGENet ends with)."""

    def __init__(self, in_width: int, final_width: int, num_classes: int):
        super().__init__()
        self.final = TorchConvBN(in_width, final_width, 1)
        self.head = nn.Linear(final_width, num_classes)

    def forward(self, x):
        return self.head(torch.flatten(self.final(x).mean(dim=(2, 3)), 1))


class TorchGENet(nn.Module):
    """stem -> stage{i} (unit{j}...) -> final 1x1 -> global average pool -> head. NCHW input."""

    def __init__(self, spec: NetworkSpec):
        super().__init__()
        self.spec = spec
        self.stem = TorchConvBN(spec.in_channels, spec.stem_width, spec.stem_kernel_size, spec.stem_stride)
        self.stages = []
        for i in range(len(spec.blocks)):
            stage = nn.Module()
            units = list(spec.units(i))
            for j, unit in enumerate(units):
                stage.add_module(unit_name(j), TorchResidualUnit(unit))
            self.add_module(stage_name(i), stage)
            self.stages.append([getattr(stage, unit_name(j)) for j in range(len(units))])
        self.final = TorchConvBN(spec.blocks[-1].width, spec.final_width, 1)
        self.head = nn.Linear(spec.final_width, spec.num_classes)

    def forward(self, x):
        x = self.stem(x)
        for units in self.stages:
            for unit in units:
                x = unit(x)
        x = self.final(x)
        return self.head(torch.flatten(x.mean(dim=(2, 3)), 1))

    @classmethod
    def from_variables(cls, spec: NetworkSpec, variables: Mapping, extras: Optional[dict] = None) -> "TorchGENet":
        """The module of `spec` holding Flax `variables` ({'params', 'batch_stats'}), in eval mode."""
        state = to_state_dict(spec, variables, "torch", extras)
        module = cls(spec)
        module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, strict=True)
        return module.eval()

    def fold_bn(self) -> "TorchGENet":
        """BN-folded inference: every conv absorbs its BN (call in eval mode)."""
        return fold_bn(self)


def fold_bn(module: nn.Module) -> nn.Module:
    """Fold the BN of every TorchConvBN in `module` (the network or any part of it, in eval mode)."""
    for layer in list(module.modules()):
        if isinstance(layer, TorchConvBN):
            layer.fold_bn()
    return module
