"""Batch augmentations on the device (jit-compiled with the train step): normalisation, random
erasing, mixup / cutmix and label smoothing. All take an explicit PRNG key."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from genet_jax.data.images import normalization_constants


def normalize_images(images: jax.Array, dtype=jnp.float32) -> jax.Array:
    """uint8 NHWC -> (x/255 - mean) / std in `dtype` (data.images.normalization_constants)."""
    offset, scale = (jnp.asarray(c, jnp.float32) for c in normalization_constants())
    return ((images.astype(jnp.float32) - offset) * scale).astype(dtype)


def random_erasing(key: jax.Array, images: jax.Array, prob: float, area=(0.02, 1 / 3),
                   log_aspect=(np.log(0.3), np.log(1 / 0.3))) -> jax.Array:
    """Per image with probability `prob`, replace one random rectangle (area fraction and aspect
    drawn as in Zhong et al.) by per-pixel N(0, 1) noise. Runs on normalised images."""
    n, h, w, c = images.shape
    k_apply, k_area, k_aspect, k_y, k_x, k_noise = jax.random.split(key, 6)
    apply = jax.random.uniform(k_apply, (n,)) < prob
    target = jax.random.uniform(k_area, (n,), minval=area[0], maxval=area[1]) * h * w
    aspect = jnp.exp(jax.random.uniform(k_aspect, (n,), minval=log_aspect[0], maxval=log_aspect[1]))
    eh = jnp.clip(jnp.round(jnp.sqrt(target * aspect)), 1, h).astype(jnp.int32)
    ew = jnp.clip(jnp.round(jnp.sqrt(target / aspect)), 1, w).astype(jnp.int32)
    top = (jax.random.uniform(k_y, (n,)) * (h - eh + 1)).astype(jnp.int32)
    left = (jax.random.uniform(k_x, (n,)) * (w - ew + 1)).astype(jnp.int32)
    rows, cols = jnp.arange(h)[None, :, None], jnp.arange(w)[None, None, :]
    inside = ((rows >= top[:, None, None]) & (rows < (top + eh)[:, None, None]) &
              (cols >= left[:, None, None]) & (cols < (left + ew)[:, None, None]) & apply[:, None, None])
    noise = jax.random.normal(k_noise, images.shape, images.dtype)
    return jnp.where(inside[..., None], noise, images)


def smooth_labels(labels: jax.Array, num_classes: int, smoothing: float) -> jax.Array:
    one_hot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    return one_hot * (1.0 - smoothing) + smoothing / num_classes


def mix_batch(key: jax.Array, images: jax.Array, targets: jax.Array, mixup_alpha: float,
              cutmix_alpha: float) -> tuple[jax.Array, jax.Array]:
    """Mixup (Zhang et al.) or CutMix with the rows reversed as partners; one lambda per call,
    CutMix chosen with probability 1/2 when both are on. Targets are mixed with the same weight.
    The train step calls it on each device's rows with a key of its own, as timm mixes each
    process's batch: partners never cross devices."""
    if mixup_alpha <= 0 and cutmix_alpha <= 0:
        return images, targets
    k_choice, k_mix, k_cut, k_y, k_x = jax.random.split(key, 5)
    partner_images, partner_targets = images[::-1], targets[::-1]
    n, h, w, _ = images.shape

    def mixup():
        lam = jax.random.beta(k_mix, mixup_alpha, mixup_alpha) if mixup_alpha > 0 else jnp.float32(1)
        mixed = lam.astype(images.dtype) * images + (1 - lam).astype(images.dtype) * partner_images
        return mixed, lam

    def cutmix():
        lam = jax.random.beta(k_cut, cutmix_alpha, cutmix_alpha) if cutmix_alpha > 0 else jnp.float32(1)
        ch, cw = jnp.sqrt(1 - lam) * h, jnp.sqrt(1 - lam) * w
        cy, cx = jax.random.uniform(k_y) * h, jax.random.uniform(k_x) * w
        y0, y1 = jnp.clip(cy - ch / 2, 0, h), jnp.clip(cy + ch / 2, 0, h)
        x0, x1 = jnp.clip(cx - cw / 2, 0, w), jnp.clip(cx + cw / 2, 0, w)
        rows, cols = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
        box = (rows >= jnp.floor(y0)) & (rows < jnp.floor(y1)) & (cols >= jnp.floor(x0)) & (cols < jnp.floor(x1))
        mixed = jnp.where(box[None, :, :, None], partner_images, images)
        lam = 1 - jnp.mean(box.astype(jnp.float32))  # the pasted area actually used
        return mixed, lam

    if mixup_alpha > 0 and cutmix_alpha > 0:
        use_cutmix = jax.random.uniform(k_choice) < 0.5
        (mixed_a, lam_a), (mixed_b, lam_b) = mixup(), cutmix()
        mixed = jnp.where(use_cutmix, mixed_b, mixed_a)
        lam = jnp.where(use_cutmix, lam_b, lam_a)
    else:
        mixed, lam = cutmix() if cutmix_alpha > 0 else mixup()
    return mixed, lam * targets + (1 - lam) * partner_targets
