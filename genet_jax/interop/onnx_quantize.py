"""INT8 ONNX models: static quantization in QDQ form with ONNX Runtime's quantization tools.

Weights int8 per output channel (symmetric), activations uint8 per tensor, ranges from MinMax
calibration over a few hundred images of a data source, read through the evaluation preprocessing
(resize, centre crop, normalise), as deployed. QDQ (QuantizeLinear / DequantizeLinear pairs around
float ops) is the form ONNX Runtime's CPU and CUDA providers and TensorRT all read and fuse into
integer kernels; ReLUs fold into the quantisation ranges. `reduce_range` (7-bit weights) is ONNX
Runtime's remedy for saturation of uint8 x int8 products on x86 CPUs without VNNI.
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Iterator, Optional

import numpy as np

from genet_jax.data import pipeline
from genet_jax.data.images import normalize
from genet_jax.data.sources import DataError, Source, open_source
from genet_jax.data.subsets import IndexedRecords
from genet_jax.interop.onnx_export import INPUT_NAME
from genet_jax.optional import require

QUANTIZATIONS = ("int8",)
DEFAULT_CALIBRATION_IMAGES = 256  # ONNX Runtime's guidance: a few hundred representative inputs
CALIBRATION_BATCH = 32
CALIBRATION_SEED = 0  # which images of the split calibrate: a seeded draw, the same on every run
FEATURE = "INT8 quantization"


def calibration_subset(source: Source, count: int, seed: int = CALIBRATION_SEED) -> Source:
    """`count` examples of `source` drawn by a seeded permutation (every class represented in
    proportion, whatever the source's order)."""
    if count < 1:
        raise DataError(f"--calibration-images must be >= 1, got {count}")
    indices = np.sort(np.random.default_rng(seed).permutation(len(source))[:count])
    return Source(IndexedRecords(source.records, indices), source.class_names, f"{source.name} (calibration)")


def calibration_batches(source: Source, size: int, crop_fraction: float, layout: str,
                        batch: int = CALIBRATION_BATCH, num_threads: int = 2) -> Iterator[np.ndarray]:
    """Normalised float32 batches in the model's input layout, by the evaluation preprocessing;
    undecodable images are skipped (counted in the log by the pipeline)."""
    skips = pipeline.SkipCounter(f"calibration {source.name}")
    for example in pipeline.eval_batches(source, size, crop_fraction, batch, num_threads, skips):
        images = normalize(example["image"][example["mask"] > 0])
        if len(images):
            yield np.ascontiguousarray(images.transpose(0, 3, 1, 2) if layout == "NCHW" else images)


def open_calibration(spec: str, split: str, count: int, data_dir: Optional[str] = None) -> Source:
    """The calibration images: `count` of `split` of a data source as the trainer names it
    ('digits', 'folder:DIR', 'tfds:NAME')."""
    return calibration_subset(open_source(spec, split, data_dir), count)


def quantize_int8(float_path: str, out: str, batches: Iterator[np.ndarray], *, reduce_range: bool = False,
                  description: Optional[dict] = None) -> str:
    """Write the static QDQ INT8 model of the float32 ONNX model `float_path` to `out`, calibrated on
    `batches`; its metadata is the float model's plus 'quantization' (`description` added). Returns `out`."""
    onnx = require("onnx", FEATURE)
    require("onnxruntime", FEATURE)
    batches = iter(batches)
    from onnxruntime import quantization as q  # a submodule: importable once onnxruntime is

    class Reader(q.CalibrationDataReader):
        def get_next(self):
            images = next(batches, None)
            return None if images is None else {INPUT_NAME: images}

    metadata = {p.key: p.value for p in onnx.load(float_path).metadata_props}
    if metadata.get("weights_dtype", "float32") != "float32":
        raise ValueError(f"{float_path}: INT8 quantization starts from float32 weights, "
                         f"not {metadata['weights_dtype']}")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        prepared = os.path.join(scratch, "prepared.onnx")
        q.quant_pre_process(float_path, prepared)  # shape inference and graph cleanup, as ORT advises
        q.quantize_static(prepared, out, Reader(), quant_format=q.QuantFormat.QDQ, per_channel=True,
                          reduce_range=reduce_range, activation_type=q.QuantType.QUInt8,
                          weight_type=q.QuantType.QInt8, calibrate_method=q.CalibrationMethod.MinMax,
                          extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
    model = onnx.load(out)
    metadata.pop("onnx.quant.pre_process", None)
    metadata["weights_dtype"] = "int8"
    metadata["quantization"] = json.dumps({
        "format": "QDQ", "weights": "int8, per output channel, symmetric" + (", 7-bit" if reduce_range else ""),
        "activations": "uint8, per tensor", "calibration_method": "MinMax", "tool": "onnxruntime.quantization",
        **(description or {})})
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, out)
    return out
