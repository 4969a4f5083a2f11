"""Image decoding and the authors' evaluation preprocessing (their val.py):

resize the shorter side to ceil(S / 0.875) with PIL bilinear, centre-crop S x S, scale to [0, 1],
normalise with the ImageNet mean and std. Output: float32 HWC.
"""
from __future__ import annotations

import math
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from genet_jax.errors import InputError

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)  # of pixels scaled to [0, 1]
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
IMAGENET_MEAN = np.array(IMAGENET_MEAN_RGB, np.float32)
IMAGENET_STD = np.array(IMAGENET_STD_RGB, np.float32)
PIXEL_SCALE = 255.0  # 8-bit pixels -> [0, 1]
EVAL_CROP_FRACTION = 0.875


class ImageError(InputError, ValueError):
    """An image that cannot be decoded; the message names the file."""


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode any PIL-readable file to 8-bit RGB (grayscale, palette, CMYK and alpha are converted;
    alpha is composited over black)."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
                rgba = image.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
                return Image.alpha_composite(background, rgba).convert("RGB")
            return image.convert("RGB")
    except FileNotFoundError:
        raise ImageError(f"{os.fspath(path)}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{os.fspath(path)}: cannot decode image ({e})") from None


def resize_shorter_side(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    if width <= height:
        new_w, new_h = size, int(size * height / width)
    else:
        new_w, new_h = int(size * width / height), size
    return image.resize((new_w, new_h), Image.BILINEAR)


def center_crop(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def normalization_constants() -> tuple[np.ndarray, np.ndarray]:
    """Per-channel float32 (offset, scale) in 8-bit pixel units: (pixels - offset) * scale is
    `normalize`'s (pixels / 255 - mean) / std in one subtract and one multiply (what the device
    pipeline computes; the two orders of rounding differ by an ulp or two)."""
    return IMAGENET_MEAN * PIXEL_SCALE, 1.0 / (IMAGENET_STD * PIXEL_SCALE)


def normalize(pixels: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """8-bit pixels -> float32 (pixels / 255 - mean) / std, in the authors' (torchvision's) order."""
    return ((np.asarray(pixels, np.float32) / PIXEL_SCALE) - np.float32(mean)) / np.float32(std)


def eval_resize_crop(image: Image.Image, size: int, crop_fraction: float = EVAL_CROP_FRACTION) -> np.ndarray:
    """PIL RGB image -> uint8 (size, size, 3): shorter side to ceil(size / crop_fraction), centre crop."""
    resized = resize_shorter_side(image, int(math.ceil(size / crop_fraction)))
    return np.asarray(center_crop(resized, size))


def eval_preprocess(image: Image.Image, size: int) -> np.ndarray:
    """PIL RGB image -> normalised float32 (size, size, 3), the authors' evaluation transform."""
    return normalize(eval_resize_crop(image, size))
