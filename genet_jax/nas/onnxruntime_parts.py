"""The latency table's parts timed on ONNX Runtime (`latency.engine = "onnxruntime"`): each part
(stem conv, residual unit, tail) as this project's torch module with BN folded, exported to ONNX
as the deployed network is (genet_jax.interop.onnx_export) and timed by the same protocol
(genet_jax.latency.onnxruntime_probe), so the table sums parts of the graph ONNX Runtime runs."""
from __future__ import annotations

import os
import tempfile
from typing import Sequence

from genet_jax.interop.onnx_export import export_torch_module
from genet_jax.latency.onnxruntime_probe import time_onnx_files
from genet_jax.latency.timing import ProbeSettings
from genet_jax.optional import require

FEATURE = 'LLR-NAS with latency.engine = "onnxruntime"'


def torch_part(part, in_channels: int):
    """The torch module of a latency-table part (nas.latency_table's `_Layer` or `_Tail`), BN folded."""
    require("torch", FEATURE)
    from genet_jax.interop.torch_model import TorchConvBN, TorchResidualUnit, TorchTail, fold_bn  # imports torch

    if hasattr(part, "final_width"):
        module = TorchTail(in_channels, part.final_width, part.num_classes)
    elif part.stem is not None:
        module = TorchConvBN(in_channels, *part.stem)
    else:
        module = TorchResidualUnit(part.unit)
    return fold_bn(module.eval())


def time_part_onnxruntime(part, input_shape: Sequence[int], settings: ProbeSettings) -> float:
    """Trimmed-mean milliseconds per image of a part on ONNX Runtime; `input_shape` is NHWC (the
    table's), fed to the exported part as NCHW."""
    batch, height, width, channels = input_shape
    nchw = (batch, channels, height, width)
    with tempfile.TemporaryDirectory() as scratch:
        path = export_torch_module(torch_part(part, channels), nchw, os.path.join(scratch, "part.onnx"),
                                   dtype=settings.dtype)
        (seconds,), _ = time_onnx_files([path], [nchw], settings)
    return seconds * 1e3 / batch
