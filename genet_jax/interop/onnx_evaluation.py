"""Top-1, top-5 and loss of an exported ONNX model (float32, float16 or INT8) on ONNX Runtime, over
the same evaluation batches and with the same metric definitions as the JAX evaluator
(genet_jax.training.evaluation, steps.make_eval_step): what `python -m genet_jax.evaluate --onnx`
reports, so an export or a quantisation can be compared with the checkpoint it came from."""
from __future__ import annotations

import numpy as np

from genet_jax.data import pipeline
from genet_jax.data.images import normalize
from genet_jax.data.sources import Source
from genet_jax.interop.onnx_runtime import ExportedModel

TOP_K = 5
WIDTH_AXIS = 2  # NHWC


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax, shifted by the row maximum so that exp never overflows."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def batch_logits(model: ExportedModel, pixels: np.ndarray, flip_tta: bool) -> np.ndarray:
    """float64 logits of a uint8 NHWC batch; with `flip_tta` the mean over each image and its mirror."""
    logits = model.logits(normalize(pixels)).astype(np.float64)
    if flip_tta:
        logits = 0.5 * (logits + model.logits(normalize(np.flip(pixels, axis=WIDTH_AXIS))))
    return logits


def batch_sums(logits: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> dict:
    """Masked sums of correct top-1, correct top-k and cross-entropy over one batch."""
    k = min(TOP_K, logits.shape[-1])
    top_k = np.argpartition(-logits, k - 1, axis=-1)[:, :k]
    loss = -np.take_along_axis(log_softmax(logits), labels[:, None], axis=-1)[:, 0]
    return {"count": mask.sum(), "loss": (loss * mask).sum(),
            "top1": ((logits.argmax(axis=-1) == labels) * mask).sum(),
            "top5": (np.any(top_k == labels[:, None], axis=-1) * mask).sum()}


def evaluate_onnx(model: ExportedModel, source: Source, size: int, crop_fraction: float, batch_size: int,
                  num_threads: int, flip_tta: bool = False) -> dict:
    """{'top1', 'top5', 'loss', 'count', 'skipped_images'} of `model` on `source`, as Evaluator gives."""
    skips = pipeline.SkipCounter(f"eval {source.name}")
    totals = {"count": 0.0, "loss": 0.0, "top1": 0.0, "top5": 0.0}
    for batch in pipeline.eval_batches(source, size, crop_fraction, batch_size, num_threads, skips):
        mask = batch["mask"].astype(np.float64)
        if not mask.any():  # the all-padding batches that keep hosts in step
            continue
        sums = batch_sums(batch_logits(model, batch["image"], flip_tta), batch["label"], mask)
        totals = {key: totals[key] + float(sums[key]) for key in totals}
    count = max(totals["count"], 1.0)
    return {"top1": totals["top1"] / count, "top5": totals["top5"] / count, "loss": totals["loss"] / count,
            "count": int(totals["count"]), "skipped_images": skips.count + source.skipped}
