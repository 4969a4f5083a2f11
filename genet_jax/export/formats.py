"""What `python -m genet_jax.export` writes, as functions of typed arguments: a model to export
(`ModelSource` -> `load_model` -> `ModelToExport`) and one writer per format. PyTorch .pth files in
either direction are genet_jax.interop.pth_files (`export_pth`, `import_pth`), ONNX is
genet_jax.interop.onnx_export, INT8 genet_jax.interop.onnx_quantize, Hub folders
genet_jax.pretrained.saving; these functions add what a checkpoint says about its preprocessing
and run."""
from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Any, Mapping, Optional

from genet_jax.arch.spec import NetworkSpec
from genet_jax.data.images import EVAL_CROP_FRACTION
from genet_jax.data.sources import Source
from genet_jax.checkpoint import ModelCheckpoint, load_model_checkpoint
from genet_jax.interop.onnx_export import export_onnx
from genet_jax.interop.onnx_quantize import (DEFAULT_CALIBRATION_IMAGES, calibration_batches, open_calibration,
                                             quantize_int8)
from genet_jax.interop.pth_files import export_pth
from genet_jax.models.network import create_model, init_variables
from genet_jax.pretrained.catalog import EvalPreprocessing
from genet_jax.pretrained.saving import run_metadata, save_pretrained


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """Which weights an export writes: a checkpoint's (its EMA weights where it holds them, unless
    `raw_weights`) or, given `arch`, a freshly initialised network's (`seed`, `num_classes`)."""

    checkpoint: Optional[str] = None
    raw_weights: bool = False
    arch: Optional[str] = None
    seed: int = 0
    num_classes: Optional[int] = None

    def __post_init__(self):
        if (self.checkpoint is None) == (self.arch is None):
            raise ValueError(f"a ModelSource names exactly one of checkpoint or arch, not {self}")


@dataclasses.dataclass(frozen=True)
class ModelToExport:
    """A loaded ModelSource: the network and its variables, and the checkpoint they came from (None
    for an initialised network, then `seed` made them)."""

    spec: NetworkSpec
    variables: Mapping
    extras: Optional[dict]
    checkpoint: Optional[ModelCheckpoint]
    seed: int

    @property
    def metadata(self) -> dict:
        return self.checkpoint.metadata if self.checkpoint else {}

    def crop_fraction(self, override: Optional[float]) -> float:
        """`override`, else the checkpoint's evaluation crop fraction, else EVAL_CROP_FRACTION."""
        return override or self.metadata.get("eval_crop_fraction", EVAL_CROP_FRACTION)


def load_model(source: ModelSource) -> ModelToExport:
    if source.checkpoint is not None:
        ckpt = load_model_checkpoint(source.checkpoint, raw=source.raw_weights)
        return ModelToExport(ckpt.spec, ckpt.variables, ckpt.extras, ckpt, source.seed)
    model = create_model(source.arch, num_classes=source.num_classes)
    return ModelToExport(model.spec, init_variables(model, source.seed), None, None, source.seed)


def export_torch(model: ModelToExport, layout: str, out: str) -> list[str]:
    """`out` (.pth, state_dict in `layout`: genet_jax.interop.LAYOUTS) and its sidecar; their paths."""
    return export_pth(model.spec, model.variables, layout, out, model.extras)


def export_hub(model: ModelToExport, out: str, crop_fraction: Optional[float] = None) -> list[str]:
    """save_pretrained's folder `out`, with the run's data, recipe and metrics in its card; its files."""
    ckpt = model.checkpoint
    run: dict[str, Any] = (run_metadata(ckpt.path, ckpt.metadata, ckpt.weights) if ckpt
                           else {"weights": f"initialised (seed {model.seed})"})
    preprocessing = EvalPreprocessing(model.spec.resolution, model.crop_fraction(crop_fraction))
    return save_pretrained(out, model.spec, model.variables, preprocessing=preprocessing,
                           class_names=model.metadata.get("class_names"), metadata=run, extras=model.extras)


@dataclasses.dataclass(frozen=True)
class OnnxOptions:
    """What every ONNX export records: the input's layout (NCHW or NHWC) and the evaluation
    preprocessing's centre-crop fraction (None: the checkpoint's, else EVAL_CROP_FRACTION)."""

    input_layout: str = "NCHW"
    crop_fraction: Optional[float] = None


def _export_onnx(model: ModelToExport, out: str, options: OnnxOptions, dtype: str) -> str:
    return export_onnx(model.spec, model.variables, out, dtype=dtype, layout=options.input_layout,
                       class_names=model.metadata.get("class_names"),
                       crop_fraction=model.crop_fraction(options.crop_fraction))


def export_onnx_float(model: ModelToExport, out: str, options: OnnxOptions = OnnxOptions(),
                      dtype: str = "float32") -> str:
    """`out`, the float ONNX model with `dtype` weights (input and logits stay float32)."""
    return _export_onnx(model, out, options, dtype)


@dataclasses.dataclass(frozen=True)
class Int8Options:
    """Static QDQ INT8: `calibration_images` drawn (seeded) from `split` of the data source
    `calibration` as the trainer names it (digits, folder:DIR, tfds:NAME with `data_dir`);
    `reduce_range`: 7-bit weights."""

    calibration: str
    split: str = "train"
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES
    data_dir: Optional[str] = None
    reduce_range: bool = False


def open_int8_calibration(options: Int8Options) -> Source:
    return open_calibration(options.calibration, options.split, options.calibration_images, options.data_dir)


def export_onnx_int8(model: ModelToExport, out: str, int8: Int8Options, calibration: Source,
                     options: OnnxOptions = OnnxOptions()) -> str:
    """`out`, the INT8 form of the float32 ONNX model, calibrated on `calibration`
    (open_int8_calibration(int8)) through the evaluation preprocessing."""
    batches = calibration_batches(calibration, model.spec.resolution, model.crop_fraction(options.crop_fraction),
                                  options.input_layout)
    with tempfile.TemporaryDirectory() as scratch:
        float_path = _export_onnx(model, os.path.join(scratch, "float32.onnx"), options, "float32")
        return quantize_int8(float_path, out, batches, reduce_range=int8.reduce_range, description={
            "calibration": f"{int8.calibration} ({int8.split}, {len(calibration)} images)"})
