"""Host-side per-image transforms (NumPy / PIL), deterministic given a numpy Generator.

Batch-level augmentations (mixup, cutmix, random erasing, label smoothing) run on the device in
genet_jax.training.augment_device; AutoAugment / RandAugment live in genet_jax.data.autoaugment.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image

from genet_jax.data.images import DEFAULT_MAX_IMAGE_PIXELS, ImageError, eval_resize_crop, load_rgb


def to_pil(image: Any, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Image.Image:
    """A path, encoded bytes' path or an HxW(x3) uint8 array -> PIL RGB. Raises ImageError (a file of
    more than `max_pixels` pixels is not decoded)."""
    if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
        return load_rgb(image, max_pixels)
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, -1)
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise ImageError(f"image array of shape {array.shape} is not HxW, HxWx1, HxWx3 or HxWx4")
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, -1)
    return Image.fromarray(array.astype(np.uint8)).convert("RGB")


def random_resized_crop(image: Image.Image, size: int, rng: np.random.Generator,
                        scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Image.Image:
    """Inception-style crop: area fraction in `scale`, log-uniform aspect in `ratio`, 10 tries,
    then a centre crop of the nearest allowed aspect; resized bilinearly to size x size."""
    width, height = image.size
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            left = int(rng.integers(0, width - w + 1))
            top = int(rng.integers(0, height - h + 1))
            return image.resize((size, size), Image.BILINEAR, box=(left, top, left + w, top + h))
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        w, h = int(round(height * ratio[1])), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return image.resize((size, size), Image.BILINEAR, box=(left, top, left + w, top + h))


def pad_random_crop(array: np.ndarray, size: int, padding: int, rng: np.random.Generator) -> np.ndarray:
    """Reflect-pad by `padding` then take a random size x size window (the CIFAR recipe)."""
    if padding:
        array = np.pad(array, ((padding, padding), (padding, padding), (0, 0)), mode="reflect")
    top = int(rng.integers(0, array.shape[0] - size + 1))
    left = int(rng.integers(0, array.shape[1] - size + 1))
    return array[top:top + size, left:left + size]


def random_hflip(array: np.ndarray, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    return array[:, ::-1] if rng.random() < p else array


def resize_to(image: Image.Image, size: int) -> Image.Image:
    return image if image.size == (size, size) else image.resize((size, size), Image.BILINEAR)


def eval_image(image: Any, size: int, crop_fraction: float, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """The authors' evaluation geometry, uint8 output (normalisation happens on the device)."""
    pil = to_pil(image, max_pixels)
    if crop_fraction >= 1.0 and pil.size == (size, size):
        return np.asarray(pil)
    return eval_resize_crop(pil, size, crop_fraction)
