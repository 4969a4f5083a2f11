"""AutoAugment / RandAugment ops: each level's op argument against the reference mapping, timm's
"original" AutoAugment policy (after the TF implementation of the ImageNet policy)."""
import random

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from genet_jax.data import autoaugment

LEVELS = (0, 3, 5, 7, 10)
GREY = (128, 128, 128)
SIGN_SEEDS = range(8)  # seeds whose first draw lands on both sides of 0.5, so both random signs occur


def _image(h=24, w=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _ramp():
    """Every uint8 value once in each channel."""
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    return np.stack([values, values.T, values[::-1]], axis=-1)


def _outputs(name, img, level):
    """The op's outputs over draws of its random sign, as bytes."""
    return {np.asarray(autoaugment.OPS[name](img, level, np.random.default_rng(s))).tobytes() for s in SIGN_SEEDS}


@pytest.mark.parametrize("level, threshold", [(0, 0), (3, 76), (5, 128), (7, 179), (10, 256)])
def test_solarize_inverts_pixels_at_or_above_level_times_25_6(level, threshold):
    ramp = _ramp()
    out = np.asarray(autoaugment.OPS["Solarize"](Image.fromarray(ramp), level, None))
    assert np.array_equal(out, np.where(ramp >= threshold, 255 - ramp, ramp))


@pytest.mark.parametrize("level, bits", [(0, 4), (2, 4), (3, 5), (5, 6), (7, 6), (8, 7), (10, 8)])
def test_posterize_keeps_4_to_8_bits(level, bits):
    ramp = _ramp()
    out = np.asarray(autoaugment.OPS["Posterize"](Image.fromarray(ramp), level, None))
    assert np.array_equal(out, ramp & (0xFF << (8 - bits) & 0xFF))


ENHANCERS = {"Color": ImageEnhance.Color, "Contrast": ImageEnhance.Contrast,
             "Brightness": ImageEnhance.Brightness, "Sharpness": ImageEnhance.Sharpness}


@pytest.mark.parametrize("name", sorted(ENHANCERS))
def test_enhance_factor_runs_from_0_1_to_1_9(name):
    img = Image.fromarray(_image())
    for level in LEVELS:
        expected = ENHANCERS[name](img).enhance(level / 10 * 1.8 + 0.1)
        assert np.array_equal(np.asarray(autoaugment.OPS[name](img, level, None)), np.asarray(expected)), level


def _affine(img, matrix):
    return img.transform(img.size, Image.AFFINE, matrix, resample=Image.BILINEAR, fillcolor=GREY)


# Each op at a signed level; the op itself draws the sign at random.
GEOMETRIC_REFERENCE = {
    "Rotate": lambda img, level: img.rotate(level / 10 * 30, resample=Image.BILINEAR, fillcolor=GREY),
    "ShearX": lambda img, level: _affine(img, (1, level / 10 * 0.3, 0, 0, 1, 0)),
    "ShearY": lambda img, level: _affine(img, (1, 0, 0, level / 10 * 0.3, 1, 0)),
    "TranslateX": lambda img, level: _affine(img, (1, 0, level / 10 * 0.45 * img.width, 0, 1, 0)),
    "TranslateY": lambda img, level: _affine(img, (1, 0, 0, 0, 1, level / 10 * 0.45 * img.height)),
}


@pytest.mark.parametrize("name", sorted(GEOMETRIC_REFERENCE))
def test_geometric_op_magnitude_with_random_sign(name):
    img = Image.fromarray(_image())
    for level in LEVELS:
        expected = {np.asarray(GEOMETRIC_REFERENCE[name](img, sign * level)).tobytes() for sign in (1, -1)}
        assert _outputs(name, img, level) == expected, level


def test_level_free_ops_ignore_the_level():
    img = Image.fromarray(_image() // 2 + 40)  # not full range, so AutoContrast has work to do
    for name, reference in [("AutoContrast", ImageOps.autocontrast), ("Equalize", ImageOps.equalize),
                            ("Invert", ImageOps.invert), ("Identity", lambda im: im)]:
        for level in LEVELS:
            assert np.array_equal(np.asarray(autoaugment.OPS[name](img, level, None)), np.asarray(reference(img)))


@pytest.mark.parametrize("name", sorted(autoaugment.OPS))
def test_each_autoaugment_op(name):
    img = Image.fromarray(_image() // 2 + 40)  # values 40..167
    # Level 3 changes this image under every op but Identity (5 is the enhancers' factor 1; 7's
    # solarize threshold, 179, is above the image's brightest pixel).
    out = autoaugment.OPS[name](img, 3, np.random.default_rng(0))
    assert out.size == img.size and out.mode == "RGB"
    changed = not np.array_equal(np.asarray(out), np.asarray(img))
    assert changed == (name != "Identity")


def test_autoaugment_and_randaugment_policies():
    img = _image()
    policy = autoaugment.AutoAugment()
    outs = [policy(img, np.random.default_rng(s)) for s in range(20)]
    assert all(o.shape == img.shape and o.dtype == np.uint8 for o in outs)
    assert np.array_equal(policy(img, np.random.default_rng(3)), policy(img, np.random.default_rng(3)))
    assert sum(not np.array_equal(o, img) for o in outs) > 10
    rand = autoaugment.RandAugment(num_ops=2, magnitude=9)
    assert rand(img, np.random.default_rng(0)).shape == img.shape
    assert np.array_equal(autoaugment.RandAugment(num_ops=0)(img, np.random.default_rng(0)), img)
    assert len(autoaugment.IMAGENET_POLICY) == 25


# Our op names that timm spells differently: its "original" policy's posterize, its relative translate.
TIMM_OP_NAMES = {"Posterize": "PosterizeOriginal", "TranslateX": "TranslateXRel", "TranslateY": "TranslateYRel"}
# timm draws bilinear or bicubic per call unless told one.
TIMM_HPARAMS = {"img_mean": GREY, "interpolation": Image.BILINEAR}


def _timm():
    return pytest.importorskip("timm.data.auto_augment", reason="timm is not installed (CI has none)")


def test_each_op_equals_timm_at_every_level():
    timm_augment = _timm()
    img = Image.fromarray(_image())
    state = random.getstate()
    try:
        for name in sorted(set(autoaugment.OPS) - {"Identity"}):
            for level in [*range(11), 2.5, 9.5]:
                op = timm_augment.AugmentOp(TIMM_OP_NAMES.get(name, name), prob=1.0, magnitude=level,
                                            hparams=TIMM_HPARAMS)
                theirs = set()
                for seed in SIGN_SEEDS:
                    random.seed(seed)  # timm draws its random sign from Python's random
                    theirs.add(np.asarray(op(img)).tobytes())
                assert _outputs(name, img, level) == theirs, (name, level)
    finally:
        random.setstate(state)


def test_imagenet_policy_equals_timm_original():
    timm_augment = _timm()
    our_names = {timm_name: name for name, timm_name in TIMM_OP_NAMES.items()}
    level_free = {"AutoContrast", "Equalize", "Invert"}

    def comparable(name, prob, level):
        return name, prob, None if name in level_free else level

    theirs = [[comparable(our_names.get(op.name, op.name), op.prob, op.magnitude) for op in sub_policy]
              for sub_policy in timm_augment.auto_augment_policy("original", TIMM_HPARAMS)]
    assert [[comparable(*op) for op in sub_policy] for sub_policy in autoaugment.IMAGENET_POLICY] == theirs
