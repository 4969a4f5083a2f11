"""Random-access data sources: (image, label) by index.

`digits`        scikit-learn's bundled 8x8 digits, upsampled to 32x32 RGB (no download)
`folder:DIR`    DIR/<split>/<class>/<image>: ImageNet extracted, the shared CIFAR-10 JPEGs, ...
`tfds:NAME`     any TFDS dataset (tensorflow-datasets installed), e.g. tfds:imagenet2012
Images come back either decoded (uint8 HxWx3) or as a path to decode later (folders).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image

from genet_jax.data.images import DEFAULT_MAX_IMAGE_PIXELS
from genet_jax.errors import InputError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class DataError(InputError, ValueError):
    """A data source that cannot be used; the message says what to fix."""


@dataclasses.dataclass
class Source:
    """records[i] is (image, label): image a uint8 HxWx3 array or a file path, label an int. Where its
    images are decoded (genet_jax.data.pipeline), a file of more than `max_image_pixels` pixels is
    skipped unread (training configs: data.max_image_pixels)."""

    records: Sequence[tuple[Any, int]]
    class_names: list[str]
    name: str
    skipped: int = 0  # undecodable images already dropped (by decode_in_memory)
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.records[index]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


DIGITS_SIZE = 32


def digits_source(split: str, test_fraction: float = 0.2, seed: int = 0) -> Source:
    """sklearn's digits (1797 images), a fixed stratified split, upsampled 8x8 -> 32x32 RGB."""
    from sklearn.datasets import load_digits  # scikit-learn's import is slow; only the digits source needs it

    data = load_digits()
    images, labels = data.images, data.target.astype(np.int32)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        test[members[: int(round(len(members) * test_fraction))]] = True
    if split not in ("train", "test"):
        raise DataError(f"digits has splits 'train' and 'test', not {split!r}")
    keep = test if split == "test" else ~test
    upsampled = []
    for image in images[keep]:
        pixels = Image.fromarray(np.uint8(np.round(image * (255.0 / 16.0))))
        pixels = np.asarray(pixels.resize((DIGITS_SIZE, DIGITS_SIZE), Image.BILINEAR))
        upsampled.append(np.repeat(pixels[..., None], 3, axis=-1))
    return Source(PairedRecords(np.stack(upsampled), labels[keep]), [str(i) for i in range(10)], f"digits/{split}")


def folder_source(root: str, split: str, class_names: Optional[list[str]] = None) -> Source:
    """root/split/<class>/<files>; classes sorted by name (or given, to keep train and eval aligned)."""
    directory = os.path.join(root, split)
    aliases = {"validation": ("val", "test"), "val": ("validation", "test"), "test": ("val", "validation")}
    for alias in aliases.get(split, ()):
        if not os.path.isdir(directory) and os.path.isdir(os.path.join(root, alias)):
            directory = os.path.join(root, alias)
    if not os.path.isdir(directory):
        raise DataError(f"image folder {directory!r} does not exist: expected {root}/{split}/<class>/<image files>")
    found = sorted(d for d in os.listdir(directory) if os.path.isdir(os.path.join(directory, d)))
    if not found:
        raise DataError(f"image folder {directory!r} has no class sub-folders")
    names = class_names or found
    unknown = sorted(set(found) - set(names))
    if unknown:
        raise DataError(f"{directory!r} has classes {unknown[:5]} that the training split does not")
    paths, labels = [], []
    for index, name in enumerate(names):
        class_dir = os.path.join(directory, name)
        if not os.path.isdir(class_dir):
            continue
        for file in sorted(os.listdir(class_dir)):
            if file.lower().endswith(IMAGE_EXTENSIONS):
                paths.append(os.path.join(class_dir, file))
                labels.append(index)
    if not paths:
        raise DataError(f"image folder {directory!r} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return Source(PairedRecords(paths, np.asarray(labels, np.int32)), list(names), f"folder:{root}/{split}")


IMAGENET_MANUAL_FILES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")


def tfds_source(name: str, split: str, data_dir: Optional[str] = None) -> Source:
    """A TFDS dataset through tfds.data_source (random access, array_record files)."""
    data_dir = os.path.expanduser(data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))
    if name.split(":")[0] == "imagenet2012":
        _check_imagenet(data_dir)
    try:
        import tensorflow_datasets as tfds  # optional (the tfds extra)
    except ImportError:
        raise DataError(f"data source tfds:{name} needs tensorflow-datasets: pip install tensorflow-datasets "
                        "tensorflow-cpu (or use data.source=folder:DIR)") from None
    try:
        source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
        info = tfds.builder(name, data_dir=data_dir).info
    except Exception as e:
        raise DataError(f"cannot open TFDS dataset {name!r} split {split!r} in {data_dir}: {e}. Prepare it once "
                        f"with `tfds build {name} --data_dir {data_dir} --file_format=array_record`") from None
    return Source(_TfdsRecords(source), list(info.features["label"].names), f"tfds:{name}/{split}")


class PairedRecords:
    """(images[i], labels[i]) without materialising the pairs."""

    def __init__(self, images: Sequence[Any], labels: np.ndarray):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.images[index], int(self.labels[index])


class _TfdsRecords:
    def __init__(self, source):
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        record = self.source[index]
        return record["image"], int(record["label"])


def _check_imagenet(data_dir: str) -> None:
    prepared = os.path.join(data_dir, "imagenet2012")
    if os.path.isdir(prepared) and os.listdir(prepared):
        return
    manual = os.path.join(data_dir, "downloads", "manual")
    missing = [f for f in IMAGENET_MANUAL_FILES if not os.path.isfile(os.path.join(manual, f))]
    if missing:
        raise DataError(
            f"ImageNet (imagenet2012) is not prepared in {data_dir} and its archives are missing: put "
            f"{' and '.join(IMAGENET_MANUAL_FILES)} (from image-net.org) in {manual}/, then run "
            f"`tfds build imagenet2012 --data_dir {data_dir} --file_format=array_record`; or train on an extracted "
            "copy with --config.data.source=folder:/path/to/imagenet (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG)")


def open_source(spec: str, split: str, data_dir: Optional[str] = None, class_names: Optional[list[str]] = None,
                max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Source:
    if spec == "digits":
        source = digits_source(split)
    elif spec.startswith("folder:"):
        source = folder_source(os.path.expanduser(spec[len("folder:"):]), split, class_names)
    elif spec.startswith("tfds:"):
        source = tfds_source(spec[len("tfds:"):], split, data_dir)
    else:
        raise DataError(f"config.data.source: unknown source {spec!r}; use 'digits', 'folder:DIR' or 'tfds:NAME'")
    return dataclasses.replace(source, max_image_pixels=max_image_pixels)
