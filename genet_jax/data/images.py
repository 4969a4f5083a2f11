"""Image decoding and the authors' evaluation preprocessing (their val.py):

resize the shorter side to ceil(S / 0.875) with PIL bilinear, centre-crop S x S, scale to [0, 1],
normalise with the ImageNet mean and std. Output: float32 HWC.
"""
from __future__ import annotations

import math
import os
import struct
import zlib
from typing import Optional

import numpy as np
from PIL import Image

from genet_jax.errors import InputError

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)  # of pixels scaled to [0, 1]
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
IMAGENET_MEAN = np.array(IMAGENET_MEAN_RGB, np.float32)
IMAGENET_STD = np.array(IMAGENET_STD_RGB, np.float32)
PIXEL_SCALE = 255.0  # 8-bit pixels -> [0, 1]
EVAL_CROP_FRACTION = 0.875
# Pillow's own default limit (PIL.Image.MAX_IMAGE_PIXELS: 1024**3 // 4 // 3, 256 MiB of 8-bit RGB); larger
# images are skipped unread. Training configs set theirs with data.max_image_pixels.
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
# What Pillow's decoders raise for a malformed file (a bug in this module raises others, which stay visible).
MALFORMED_FILE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, struct.error,
                         zlib.error, MemoryError)


class ImageError(InputError, ValueError):
    """An image that cannot be decoded; the message names the file."""


def pil_pixel_limit() -> Optional[int]:
    """Pillow's limit now (PIL.Image.MAX_IMAGE_PIXELS; None: off). Image.open warns above it and refuses
    twice it, a process-wide setting that this library leaves to the program embedding it, so a limit of
    ours above Pillow's could not be honoured."""
    return Image.MAX_IMAGE_PIXELS


def load_rgb(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Image.Image:
    """Decode any PIL-readable file to 8-bit RGB (grayscale, palette, CMYK and alpha are converted;
    alpha is composited over black). A file whose header says it has more than `max_pixels` pixels is
    not decoded. Every failure is an ImageError naming the file and the cause."""
    name = os.fspath(path)
    try:
        with Image.open(path) as image:  # reads the header only
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(f"{name}: {width}x{height} pixels, more than the limit of {max_pixels:,}")
            image.load()
            return _to_rgb(image)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:  # above Pillow's own limit
        raise ImageError(f"{name}: too large to decode ({e})") from None
    except MALFORMED_FILE_ERRORS as e:
        raise ImageError(f"{name}: cannot decode image ({type(e).__name__}: {e})") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


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
