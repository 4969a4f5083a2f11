"""Each augmentation op: host-side (PIL/NumPy) and on-device (JAX)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from genet_jax.data import transforms
from genet_jax.training import augment_device


def _image(h=48, w=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_random_resized_crop_size_and_content():
    img = Image.fromarray(_image())
    out = transforms.random_resized_crop(img, 32, np.random.default_rng(0))
    assert out.size == (32, 32)
    a = np.asarray(transforms.random_resized_crop(img, 32, np.random.default_rng(1)))
    b = np.asarray(transforms.random_resized_crop(img, 32, np.random.default_rng(1)))
    assert np.array_equal(a, b)  # deterministic for a seed
    full = np.asarray(transforms.random_resized_crop(img, 16, np.random.default_rng(2), scale=(1.0, 1.0),
                                                     ratio=(4 / 3, 4 / 3)))
    assert np.array_equal(full, np.asarray(img.resize((16, 16), Image.BILINEAR)))  # whole image at 4:3


def test_pad_random_crop_and_flip():
    img = _image(32, 32)
    out = transforms.pad_random_crop(img, 32, 4, np.random.default_rng(0))
    assert out.shape == (32, 32, 3)
    shifts = {tuple(np.argwhere(np.all(transforms.pad_random_crop(img, 32, 4, np.random.default_rng(s))[4:28, 4:28]
                                       == img[4:28, 4:28], axis=-1))[:1].ravel()) for s in range(20)}
    assert len(shifts) > 1  # different seeds, different windows
    assert np.array_equal(transforms.pad_random_crop(img, 32, 0, np.random.default_rng(0)), img)
    flips = [transforms.random_hflip(img, np.random.default_rng(s)) for s in range(10)]
    assert any(np.array_equal(f, img[:, ::-1]) for f in flips) and any(np.array_equal(f, img) for f in flips)


def test_normalize_images():
    images = jnp.full((1, 2, 2, 3), 255, jnp.uint8)
    out = augment_device.normalize_images(images)
    expected = (1 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    assert np.allclose(out[0, 0, 0], expected, atol=1e-5)
    assert augment_device.normalize_images(images, jnp.bfloat16).dtype == jnp.bfloat16


def test_random_erasing():
    images = jnp.zeros((64, 32, 32, 3))
    key = jax.random.PRNGKey(0)
    assert np.array_equal(augment_device.random_erasing(key, images, 0.0), images)
    erased = np.asarray(augment_device.random_erasing(key, images, 1.0))
    fractions = (np.abs(erased).sum(-1) > 0).mean(axis=(1, 2))
    assert np.all(fractions > 0.015) and np.all(fractions < 0.34 + 0.05)  # area 2% .. 1/3 (rounding)
    half = np.asarray(augment_device.random_erasing(key, images, 0.5))
    assert 10 < int((np.abs(half).sum(axis=(1, 2, 3)) > 0).sum()) < 54


def test_label_smoothing():
    targets = augment_device.smooth_labels(jnp.array([2]), 5, 0.1)
    assert np.allclose(targets, [[0.02, 0.02, 0.92, 0.02, 0.02]])
    assert np.allclose(augment_device.smooth_labels(jnp.array([1]), 3, 0.0), [[0, 1, 0]])


@pytest.mark.parametrize("mixup,cutmix", [(0.2, 0.0), (0.0, 1.0), (0.2, 1.0)])
def test_mix_batch(mixup, cutmix):
    key = jax.random.PRNGKey(4)
    images = jnp.stack([jnp.zeros((8, 8, 3)), jnp.ones((8, 8, 3))])
    targets = jax.nn.one_hot(jnp.array([0, 1]), 2)
    mixed, mixed_targets = augment_device.mix_batch(key, images, targets, mixup, cutmix)
    assert np.allclose(mixed_targets.sum(-1), 1)
    # image 0 is a mix of zeros and ones: its mean is exactly its weight on the partner
    assert np.allclose(float(mixed[0].mean()), float(mixed_targets[0, 1]), atol=1e-6)
    assert np.allclose(float(mixed[1].mean()), float(mixed_targets[1, 1]), atol=1e-6)
    unchanged = augment_device.mix_batch(key, images, targets, 0.0, 0.0)
    assert unchanged[0] is images and unchanged[1] is targets
