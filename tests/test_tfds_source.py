"""`tfds:NAME` for real: a tiny image-classification dataset built with tensorflow-datasets in
array_record format (no TensorFlow needed to write or read it), then read back through
genet_jax.data.sources, the grain pipeline and `python train.py`."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from configs.common import base_config
from genet_jax.data import pipeline, transforms
from genet_jax.data.sources import DataError, open_source, tfds_source
from genet_jax.checkpoint import load_model_checkpoint
from tests.conftest import REPO_ROOT

tfds = pytest.importorskip("tensorflow_datasets", reason="tensorflow-datasets: installed by requirements-dev.txt only")

NAME = "genet_tiny_shapes"
CLASSES = ["zebra", "apple", "mango"]  # declaration order, not sorted: label i is CLASSES[i]
COUNTS = {"train": 30, "test": 12}
FORMATS = {"train": "JPEG", "test": "PNG"}


def _pixels(split, index):
    """A smooth, class-coloured image whose shape is unique within its split: it identifies the
    image after TFDS has shuffled the records."""
    height, width = 16 + index % 6, 16 + index // 6
    rng = np.random.default_rng([COUNTS[split], index])
    yy, xx = np.mgrid[0:height, 0:width]
    colour = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]])[index % 3]
    pixels = colour + 3 * xx[..., None] + 2 * yy[..., None] + rng.integers(0, 12, (height, width, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


class GenetTinyShapes(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Unregistered on purpose: reading it back must work from the files alone, as for a dataset
    that `tfds build` prepared in another process."""

    VERSION = tfds.core.Version("1.0.0")

    def __init__(self, image_dir, **kwargs):
        self.image_dir = image_dir
        super().__init__(**kwargs)

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3)),  # the file bytes as they are: JPEG or PNG
            "label": tfds.features.ClassLabel(names=CLASSES)}))

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(split) for split in COUNTS}

    def _generate_examples(self, split):
        for index in range(COUNTS[split]):
            yield f"{split}{index}", {"image": self.image_dir / f"{split}{index}.{FORMATS[split].lower()}",
                                      "label": index % 3}


@pytest.fixture(scope="module")
def tiny_tfds(tmp_path_factory):
    """(data_dir, {split: {shape: (expected decoded pixels, label)}}) of the prepared dataset."""
    root = tmp_path_factory.mktemp("tfds")
    image_dir, data_dir = root / "images", root / "data"
    image_dir.mkdir()
    expected = {}
    for split, count in COUNTS.items():
        expected[split] = {}
        for index in range(count):
            path = image_dir / f"{split}{index}.{FORMATS[split].lower()}"
            pixels = _pixels(split, index)
            Image.fromarray(pixels).save(path, format=FORMATS[split], quality=95)
            decoded = np.asarray(Image.open(path).convert("RGB"))
            if FORMATS[split] == "PNG":
                assert np.array_equal(decoded, pixels)
            else:  # JPEG: lossy, but close
                assert np.abs(decoded.astype(int) - pixels).mean() < 4
            expected[split][pixels.shape] = (decoded, index % 3)
    builder = GenetTinyShapes(image_dir, data_dir=str(data_dir), file_format="array_record")
    builder.download_and_prepare()
    written = sorted(os.listdir(data_dir / NAME / "1.0.0"))
    assert any(".array_record-" in f for f in written), written
    return str(data_dir), expected


def _check_records(source, expected):
    seen = set()
    for i in range(len(source)):
        image, label = source[i]
        assert isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3, type(image)
        assert type(label) is int
        pixels, expected_label = expected[image.shape]
        np.testing.assert_array_equal(image, pixels)
        assert label == expected_label
        seen.add(image.shape)
    return seen


@pytest.mark.parametrize("split", ["train", "test"])
def test_reads_back_what_was_written(tiny_tfds, split):
    data_dir, expected = tiny_tfds
    source = tfds_source(NAME, split, data_dir)
    assert len(source) == COUNTS[split] and source.class_names == CLASSES and source.num_classes == 3
    assert source.name == f"tfds:{NAME}/{split}" and source.skipped == 0
    assert _check_records(source, expected[split]) == set(expected[split])  # every image, once
    via_spec = open_source(f"tfds:{NAME}", split, data_dir)
    assert len(via_spec) == COUNTS[split] and via_spec.class_names == CLASSES


def test_data_dir_from_environment_and_split_slices(tiny_tfds, monkeypatch):
    data_dir, expected = tiny_tfds
    monkeypatch.setenv("TFDS_DATA_DIR", data_dir)
    source = tfds_source(NAME, "train[:10]")
    assert len(source) == 10 and source.class_names == CLASSES
    assert len(_check_records(source, expected["train"])) == 10


def test_grain_pipeline_over_tfds(tiny_tfds):
    data_dir, expected = tiny_tfds
    test = tfds_source(NAME, "test", data_dir)
    batches = list(pipeline.eval_batches(test, 16, 0.875, 8, 2, pipeline.SkipCounter("eval")))
    assert len(batches) == 2 and sum(b["mask"].sum() for b in batches) == COUNTS["test"]
    images = np.concatenate([b["image"] for b in batches])[:COUNTS["test"]]
    labels = np.concatenate([b["label"] for b in batches])[:COUNTS["test"]]
    for i in range(len(test)):  # in source order, each image resized and centre-cropped
        image, label = test[i]
        np.testing.assert_array_equal(images[i], transforms.eval_image(image, 16, 0.875))
        assert labels[i] == label
    assert np.bincount(labels, minlength=3).tolist() == [4, 4, 4]

    train = tfds_source(NAME, "train", data_dir)
    skips = pipeline.SkipCounter("train")
    iterator = iter(pipeline.train_dataset(train, base_config().augment, 16, 8, 0, 2, skips))
    for _ in range(5):  # 40 examples: past the end of the first epoch
        batch = next(iterator)
        assert batch["image"].shape == (8, 16, 16, 3) and batch["image"].dtype == np.uint8
        assert set(batch["label"].tolist()) <= {0, 1, 2}
    assert skips.count == 0

    cached = pipeline.decode_in_memory(train, 2, progress=False)
    assert len(cached) == COUNTS["train"] and cached.skipped == 0 and cached.class_names == CLASSES
    assert _check_records(cached, expected["train"]) == set(expected["train"])


def test_missing_dataset_and_split_say_what_to_do(tiny_tfds, tmp_path):
    data_dir, _ = tiny_tfds
    with pytest.raises(DataError) as missing:
        tfds_source("genet_no_such_dataset", "train", str(tmp_path))
    message = str(missing.value)
    assert f"cannot open TFDS dataset 'genet_no_such_dataset' split 'train' in {tmp_path}" in message
    assert f"tfds build genet_no_such_dataset --data_dir {tmp_path} --file_format=array_record" in message
    with pytest.raises(DataError, match="cannot open TFDS dataset 'genet_tiny_shapes' split 'validation'") as split:
        tfds_source(NAME, "validation", data_dir)
    assert "Unknown split 'validation'" in str(split.value)


def _train(workdir, data_dir, *extra):
    model = {"stem_width": 8, "stem_stride": 1, "final_width": 32, "num_classes": 10, "resolution": 16,
             "blocks": [{"block_type": "XX", "depth": 1, "width": 16, "stride": 2},
                        {"block_type": "BL", "depth": 1, "width": 32, "stride": 2, "ratio": 0.25}]}
    args = {"workdir": str(workdir), "model": json.dumps(model), "resolution": 16, "batch_size": 8,
            "num_train_steps": 3, "log_every_steps": 1, "eval_every_epochs": 1000.0, "progress_bar": False,
            "data.source": f"tfds:{NAME}", "data.data_dir": data_dir, "data.eval_batch_size": 8,
            "data.num_threads": 2, "optim.warmup_epochs": 0.1}
    command = [sys.executable, os.path.join(REPO_ROOT, "train.py"), *[f"--config.{k}={v}" for k, v in args.items()],
               *extra]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)


def test_train_py_trains_and_evaluates_from_tfds(tiny_tfds, tmp_path):
    data_dir, _ = tiny_tfds
    result = _train(tmp_path / "run", data_dir)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["step"] == 3 and metrics["skipped_train_images"] == 0
    assert metrics["eval"]["count"] == COUNTS["test"] and metrics["eval"]["skipped_images"] == 0
    assert 0.0 <= metrics["eval"]["top1"] <= 1.0 and np.isfinite(metrics["eval"]["loss"])
    assert metrics["model"]["num_classes"] == 3  # from the ClassLabel, not the spec's 10
    checkpoint = load_model_checkpoint(tmp_path / "run")
    assert checkpoint.step == 3 and checkpoint.metadata["class_names"] == CLASSES
    assert checkpoint.metadata["data_source"] == f"tfds:{NAME}"

    failed = _train(tmp_path / "missing", data_dir, "--config.data.eval_split=validation")
    assert failed.returncode == 2
    assert "error: cannot open TFDS dataset 'genet_tiny_shapes' split 'validation'" in failed.stderr
