"""Running an exported ONNX model on ONNX Runtime: a session on a named execution provider, and the
model's own description of its input (layout, resolution, classes), read from its metadata
(genet_jax.interop.onnx_export), so callers feed it as it was exported."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Optional

import numpy as np

from genet_jax.errors import InputError
from genet_jax.optional import require

CPU_PROVIDER = "CPUExecutionProvider"


class OnnxModelError(InputError, ValueError):
    """An ONNX file that is missing, unreadable or not an export of this project; names the file."""


def check_provider(provider: str, feature: str = "ONNX Runtime"):
    """The onnxruntime module, once `provider` is known to be one of its execution providers here."""
    ort = require("onnxruntime", feature)
    available = ort.get_available_providers()
    if provider not in available:
        raise OnnxModelError(f"ONNX Runtime provider {provider!r} is not available here; available: {available}")
    return ort


def onnxruntime_session(path: str, provider: str = CPU_PROVIDER, feature: str = "ONNX Runtime"):
    """(onnxruntime module, InferenceSession of `path` on `provider`)."""
    ort = check_provider(provider, feature)
    if not os.path.isfile(path):
        raise OnnxModelError(f"{path}: no such ONNX file")
    try:
        session = ort.InferenceSession(path, providers=[provider])
    except Exception as e:  # onnxruntime raises its own Fail / InvalidProtobuf / ... types
        raise OnnxModelError(f"{path}: ONNX Runtime cannot load it ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''})") from None
    return ort, session


@dataclasses.dataclass
class ExportedModel:
    """An ONNX Runtime session of a genet_jax export and what its metadata says about its input."""

    path: str
    session: Any
    layout: str  # "NCHW" or "NHWC"
    resolution: int
    num_classes: int
    class_names: Optional[list]
    metadata: dict

    @classmethod
    def open(cls, path: str, provider: str = CPU_PROVIDER) -> "ExportedModel":
        _, session = onnxruntime_session(path, provider)
        metadata = dict(session.get_modelmeta().custom_metadata_map)
        missing = [k for k in ("input_layout", "resolution", "num_classes") if k not in metadata]
        if missing:
            raise OnnxModelError(f"{path}: not a genet_jax ONNX export (metadata lacks {', '.join(missing)})")
        return cls(path, session, metadata["input_layout"], int(metadata["resolution"]),
                   int(metadata["num_classes"]), json.loads(metadata.get("class_names", "null")), metadata)

    def logits(self, images_nhwc: np.ndarray) -> np.ndarray:
        """float32 logits of normalised float32 NHWC images (transposed here for an NCHW model)."""
        images = np.asarray(images_nhwc, np.float32)
        if self.layout == "NCHW":
            images = images.transpose(0, 3, 1, 2)
        feed = {self.session.get_inputs()[0].name: np.ascontiguousarray(images)}
        return self.session.run(None, feed)[0]
