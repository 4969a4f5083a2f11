"""AutoAugment (Cubuk et al. 2019, the ImageNet policy) and RandAugment (Cubuk et al. 2020) on
PIL images. Magnitudes are levels 0..10 mapped as in the papers' reference implementation:
shear 0.3, translate 150/331 of the side, rotate 30 degrees (random sign), enhance factor
0.1..1.9, posterize 4..8 bits, solarize threshold 256..0. Geometric ops fill with grey (128).
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

MAX_LEVEL = 10.0
FILL = (128, 128, 128)


def _signed(value: float, rng: np.random.Generator) -> float:
    return -value if rng.random() < 0.5 else value


def _shear(axis: int):
    def op(img: Image.Image, level: float, rng) -> Image.Image:
        s = _signed(level / MAX_LEVEL * 0.3, rng)
        matrix = (1, s, 0, 0, 1, 0) if axis == 0 else (1, 0, 0, s, 1, 0)
        return img.transform(img.size, Image.AFFINE, matrix, resample=Image.BILINEAR, fillcolor=FILL)
    return op


def _translate(axis: int):
    def op(img: Image.Image, level: float, rng) -> Image.Image:
        pixels = _signed(level / MAX_LEVEL * (150 / 331) * img.size[axis], rng)
        matrix = (1, 0, pixels, 0, 1, 0) if axis == 0 else (1, 0, 0, 0, 1, pixels)
        return img.transform(img.size, Image.AFFINE, matrix, resample=Image.BILINEAR, fillcolor=FILL)
    return op


def _rotate(img, level, rng):
    return img.rotate(_signed(level / MAX_LEVEL * 30.0, rng), resample=Image.BILINEAR, fillcolor=FILL)


def _enhance(enhancer):
    def op(img, level, rng):
        return enhancer(img).enhance(level / MAX_LEVEL * 1.8 + 0.1)
    return op


def _posterize(img, level, rng):
    return ImageOps.posterize(img, int(level / MAX_LEVEL * 4) + 4)


def _solarize(img, level, rng):
    return ImageOps.solarize(img, 256 - int(level / MAX_LEVEL * 256))


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
