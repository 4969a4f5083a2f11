"""AutoAugment (Cubuk et al. 2019, the ImageNet policy) and RandAugment (Cubuk et al. 2020) on
PIL images.

Levels 0..10 map to op arguments as in timm's "original" AutoAugment policy, which follows the
TF implementation of the ImageNet policy (tensorflow/tpu efficientnet/autoaugment.py) except
for Posterize, where it keeps the paper's 4..8 bits:
  Rotate       +-level/10 * 30 degrees (random sign)
  ShearX/Y     +-level/10 * 0.3 (random sign)
  TranslateX/Y +-level/10 * 0.45 of the image side (random sign; timm's relative translate)
  Color, Contrast, Brightness, Sharpness: enhance factor level/10 * 1.8 + 0.1 (0.1..1.9)
  Posterize    keep int(level/10 * 4) + 4 bits (4..8)
  Solarize     invert pixels >= int(level/10 * 256) (threshold 0..256: level 10 changes nothing)
AutoContrast, Equalize, Invert and Identity ignore the level. Geometric ops fill with grey (128)
and resample bilinearly (timm draws bilinear or bicubic unless told one; the TF code: nearest).
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

MAX_LEVEL = 10.0
FILL = (128, 128, 128)
MAX_ROTATE_DEGREES = 30.0
MAX_SHEAR = 0.3
MAX_TRANSLATE_FRACTION = 0.45  # of the image side; the paper's 150 px of 331
ENHANCE_MIN, ENHANCE_SPAN = 0.1, 1.8
POSTERIZE_MIN_BITS, POSTERIZE_BITS_SPAN = 4, 4
SOLARIZE_THRESHOLD_SPAN = 256


def _signed(value: float, rng: np.random.Generator) -> float:
    return -value if rng.random() < 0.5 else value


def _shear(axis: int):
    def op(img: Image.Image, level: float, rng) -> Image.Image:
        s = _signed(level / MAX_LEVEL * MAX_SHEAR, rng)
        matrix = (1, s, 0, 0, 1, 0) if axis == 0 else (1, 0, 0, s, 1, 0)
        return img.transform(img.size, Image.AFFINE, matrix, resample=Image.BILINEAR, fillcolor=FILL)
    return op


def _translate(axis: int):
    def op(img: Image.Image, level: float, rng) -> Image.Image:
        pixels = _signed(level / MAX_LEVEL * MAX_TRANSLATE_FRACTION * img.size[axis], rng)
        matrix = (1, 0, pixels, 0, 1, 0) if axis == 0 else (1, 0, 0, 0, 1, pixels)
        return img.transform(img.size, Image.AFFINE, matrix, resample=Image.BILINEAR, fillcolor=FILL)
    return op


def _rotate(img, level, rng):
    degrees = _signed(level / MAX_LEVEL * MAX_ROTATE_DEGREES, rng)
    return img.rotate(degrees, resample=Image.BILINEAR, fillcolor=FILL)


def _enhance(enhancer):
    def op(img, level, rng):
        return enhancer(img).enhance(level / MAX_LEVEL * ENHANCE_SPAN + ENHANCE_MIN)
    return op


def _posterize(img, level, rng):
    return ImageOps.posterize(img, int(level / MAX_LEVEL * POSTERIZE_BITS_SPAN) + POSTERIZE_MIN_BITS)


def _solarize(img, level, rng):
    return ImageOps.solarize(img, int(level / MAX_LEVEL * SOLARIZE_THRESHOLD_SPAN))


OPS: dict[str, Callable[[Image.Image, float, np.random.Generator], Image.Image]] = {
    "Identity": lambda img, level, rng: img,
    "AutoContrast": lambda img, level, rng: ImageOps.autocontrast(img),
    "Equalize": lambda img, level, rng: ImageOps.equalize(img),
    "Invert": lambda img, level, rng: ImageOps.invert(img),
    "Rotate": _rotate,
    "Posterize": _posterize,
    "Solarize": _solarize,
    "Color": _enhance(ImageEnhance.Color),
    "Contrast": _enhance(ImageEnhance.Contrast),
    "Brightness": _enhance(ImageEnhance.Brightness),
    "Sharpness": _enhance(ImageEnhance.Sharpness),
    "ShearX": _shear(0),
    "ShearY": _shear(1),
    "TranslateX": _translate(0),
    "TranslateY": _translate(1),
}

# (op, probability, level) pairs: the ImageNet policy of the AutoAugment paper.
IMAGENET_POLICY = [
    (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)), (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 0)),
    (("Equalize", 0.8, 0), ("Equalize", 0.6, 0)), (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
    (("Equalize", 0.4, 0), ("Solarize", 0.2, 4)), (("Equalize", 0.4, 0), ("Rotate", 0.8, 8)),
    (("Solarize", 0.6, 3), ("Equalize", 0.6, 0)), (("Posterize", 0.8, 5), ("Equalize", 1.0, 0)),
    (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)), (("Equalize", 0.6, 0), ("Posterize", 0.4, 6)),
    (("Rotate", 0.8, 8), ("Color", 0.4, 0)), (("Rotate", 0.4, 9), ("Equalize", 0.6, 0)),
    (("Equalize", 0.0, 0), ("Equalize", 0.8, 0)), (("Invert", 0.6, 0), ("Equalize", 1.0, 0)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)), (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
    (("Color", 0.8, 8), ("Solarize", 0.8, 7)), (("Sharpness", 0.4, 7), ("Invert", 0.6, 0)),
    (("ShearX", 0.6, 5), ("Equalize", 1.0, 0)), (("Color", 0.4, 0), ("Equalize", 0.6, 0)),
    (("Equalize", 0.4, 0), ("Solarize", 0.2, 4)), (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 0)),
    (("Invert", 0.6, 0), ("Equalize", 1.0, 0)), (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Equalize", 0.8, 0), ("Equalize", 0.6, 0)),
]

RANDAUGMENT_OPS = ["Identity", "AutoContrast", "Equalize", "Rotate", "Solarize", "Color", "Posterize",
                   "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY"]


class AutoAugment:
    """One uniformly chosen sub-policy per image; each of its two ops fires with its probability."""

    def __init__(self, policy=IMAGENET_POLICY):
        self.policy = policy

    def __call__(self, array: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        img = Image.fromarray(array)
        for name, prob, level in self.policy[int(rng.integers(len(self.policy)))]:
            if rng.random() < prob:
                img = OPS[name](img, level, rng)
        return np.asarray(img)


class RandAugment:
    """`num_ops` ops drawn uniformly with replacement, each at level `magnitude` (0..10)."""

    def __init__(self, num_ops: int = 2, magnitude: float = 9.0):
        self.num_ops, self.magnitude = num_ops, magnitude

    def __call__(self, array: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        img = Image.fromarray(array)
        for index in rng.integers(len(RANDAUGMENT_OPS), size=self.num_ops):
            img = OPS[RANDAUGMENT_OPS[int(index)]](img, self.magnitude, rng)
        return np.asarray(img)


def make_policy(augment) -> Optional[Callable[[np.ndarray, np.random.Generator], np.ndarray]]:
    if augment.policy == "autoaugment":
        return AutoAugment()
    if augment.policy == "randaugment":
        return RandAugment(augment.randaugment_num_ops, augment.randaugment_magnitude)
    return None
