"""ONNX export: a network (spec + Flax variables) as an ONNX model for ONNX Runtime or TensorRT.

Route: torch.onnx's exporter applied to this project's PyTorch module (`TorchGENet`), whose
parameters are the Flax ones bit for bit and whose logits the tests hold equal to JAX's. (jax2onnx,
the direct route from Flax, requires orbax-checkpoint < 0.12, outside the range this project
supports.) BN is folded into the convs first, the batch dimension is dynamic, the input is float32
NCHW as timm and torchvision exports are (NHWC on request), and the model metadata records what a
deployment needs: class count and names, resolution, layout, the preprocessing.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import warnings
from typing import Mapping, Optional, Sequence

from genet_jax.arch.spec import NetworkSpec
from genet_jax.data.images import EVAL_CROP_FRACTION, IMAGENET_MEAN, IMAGENET_STD
from genet_jax.optional import require

ONNX_LAYOUTS = ("NCHW", "NHWC")
ONNX_DTYPES = ("float32", "float16")
ONNX_OPSET = 18  # the exporter's default; ONNX Runtime and TensorRT 10 read it
INPUT_NAME, OUTPUT_NAME = "images", "logits"
FEATURE = "ONNX export"
EXAMPLE_BATCH = 2  # the traced input's batch; the exported batch dimension is dynamic


def _deployed(torch, module, layout: str, dtype: str):
    """`module` (BN folded) with the exported input's layout and dtype: float32 in, float32 out."""
    if dtype == "float16":
        module = module.half()
    weights_dtype = next(module.parameters()).dtype

    class Deployed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = module

        def forward(self, images):
            if layout == "NHWC":
                images = images.permute(0, 3, 1, 2)
            return self.net(images.to(weights_dtype)).float()

    return Deployed().eval()


@contextlib.contextmanager
def _quiet_loggers():
    """The exporter's INFO logging (torch.onnx: "torchvision is not installed"; onnxscript: a line per
    graph pass) off while it runs, whatever the application's logging level."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def export_torch_module(module, example_shape, out: str, layout: str = "NCHW", dtype: str = "float32") -> str:
    """Write the eval-mode torch `module` (BN already folded) as ONNX with a dynamic batch dimension;
    `example_shape` is one input's shape in `layout`. Any part of a network exports this way (LLR-NAS
    times its latency-table parts so on ONNX Runtime)."""
    torch = require("torch", FEATURE)
    require("onnxscript", FEATURE)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with _quiet_loggers(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # its chatter
        warnings.simplefilter("ignore", FutureWarning)  # its own use of deprecated torch internals
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(_deployed(torch, module, layout, dtype), (torch.zeros(tuple(example_shape)),), out,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_shapes=({0: torch.export.Dim("batch")},), opset_version=ONNX_OPSET,
                          dynamo=True, external_data=False, verbose=False)
    return out


def onnx_metadata(spec: NetworkSpec, layout: str, dtype: str, class_names: Optional[Sequence[str]],
                  crop_fraction: float = EVAL_CROP_FRACTION) -> dict:
    """The model's metadata_props: what a deployment needs to feed and read it."""
    return {"genet_jax.spec": spec.to_json(indent=None), "num_classes": str(spec.num_classes),
            "resolution": str(spec.resolution), "input_layout": layout, "weights_dtype": dtype,
            "preprocessing": json.dumps({"resize_shorter_side": math.ceil(spec.resolution / crop_fraction),
                                         "center_crop": spec.resolution, "scale": 1 / 255.0,
                                         "mean": IMAGENET_MEAN.tolist(), "std": IMAGENET_STD.tolist(),
                                         "channels": "RGB"}),
            "class_names": json.dumps(list(class_names) if class_names else None)}


def export_onnx(spec: NetworkSpec, variables: Mapping, out: str, *, layout: str = "NCHW", dtype: str = "float32",
                class_names: Optional[Sequence[str]] = None, crop_fraction: float = EVAL_CROP_FRACTION) -> str:
    """Write `out` (one self-contained .onnx file), checked with onnx.checker; returns its path.
    `crop_fraction` is the evaluation preprocessing's, recorded in the metadata."""
    if layout not in ONNX_LAYOUTS or dtype not in ONNX_DTYPES:
        raise ValueError(f"layout must be one of {ONNX_LAYOUTS} and dtype one of {ONNX_DTYPES}")
    onnx = require("onnx", FEATURE)
    require("torch", FEATURE)
    from genet_jax.interop.torch_model import TorchGENet  # imports torch: only once it is known to be there

    r, c = spec.resolution, spec.in_channels
    export_torch_module(TorchGENet.from_variables(spec, variables).fold_bn(),
                        (EXAMPLE_BATCH, c, r, r) if layout == "NCHW" else (EXAMPLE_BATCH, r, r, c), out, layout, dtype)
    model = onnx.load(out)
    for key, value in onnx_metadata(spec, layout, dtype, class_names, crop_fraction).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, out)
    return out
