"""Training batches from grain worker processes (data.worker_count > 0), with real processes: the
threads' batches bit for bit, a checkpointable position in the threads' format (resume across
workers and threads, and from `train_data_state`), undecodable images counted in the training
process; `python train.py` with workers; the input-pipeline benchmark's smoke run."""
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from configs.common import base_config
from genet_jax.data import pipeline, workers
from genet_jax.data.autoaugment import make_policy
from genet_jax.data.sources import DataError, open_source
from genet_jax.training import steps
from tests.conftest import REPO_ROOT
from tests.helpers import tiny_args

SIZE, BATCH, SEED = 16, 8, 0
TAKEN, RESUMED = 3, 3  # batches before the checkpoint, and after the resume


@pytest.fixture(scope="module")
def digits():
    return open_source("digits", "train")


def recipe_augment():
    """The ImageNet recipe's host-side augmentation: random-resized crop, flip, AutoAugment."""
    augment = base_config().augment
    augment.random_resized_crop, augment.hflip, augment.policy = True, True, "autoaugment"
    return augment


def train_iterator(source, worker_count, num_threads=1, skips=None):
    augment = recipe_augment()
    return workers.train_iterator(source, augment, SIZE, BATCH, SEED, num_threads, worker_count,
                                  skips or pipeline.SkipCounter("test"), make_policy(augment))


def take(iterator, count, state=None):
    """`count` batches (after set_state(state), if given), then the iterator closed."""
    try:
        if state is not None:
            iterator.set_state(state)
        return [next(iterator) for _ in range(count)]
    finally:
        iterator.close()


def assert_same_batches(expected, actual):
    assert len(expected) == len(actual)
    for a, b in zip(expected, actual):
        assert sorted(a) == sorted(b) == ["image", "label"]
        for key in a:
            assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def reference(digits):
    """The uninterrupted stream of the threads (data.worker_count 0)."""
    return take(train_iterator(digits, 0, num_threads=2), TAKEN + RESUMED)


@pytest.mark.parametrize("worker_count,num_threads", [(2, 1), (1, 2)])
def test_workers_give_the_threads_batches(digits, reference, worker_count, num_threads):
    assert_same_batches(reference, take(train_iterator(digits, worker_count, num_threads), len(reference)))


def checkpointed_state(iterator, count):
    """The state a checkpoint after `count` steps saves: DevicePrefetcher's (it prefetches ahead but
    records the state of the batch it handed out), through JSON like the checkpoint's data_position item."""
    _, batch_sharding = steps.shardings(steps.create_mesh())
    prefetcher = pipeline.DevicePrefetcher(iterator, batch_sharding)
    try:
        for _ in range(count):
            next(prefetcher)
        return json.loads(json.dumps(prefetcher.state))
    finally:
        prefetcher.close()


@pytest.mark.parametrize("saved_by,resumed_by", [(2, 2), (0, 0), (0, 2), (2, 0)])
def test_resume_continues_the_uninterrupted_stream(digits, reference, saved_by, resumed_by):
    state = checkpointed_state(train_iterator(digits, saved_by), TAKEN)
    assert state == {"next_index": TAKEN * BATCH}  # one format for threads and workers
    assert_same_batches(reference[TAKEN:], take(train_iterator(digits, resumed_by), RESUMED, state))


def test_train_data_state_resumes_the_workers(digits, reference):
    """How a checkpoint written by another number of hosts resumes: from the step."""
    state = pipeline.train_data_state(TAKEN, BATCH)
    assert_same_batches(reference[TAKEN:], take(train_iterator(digits, 2), RESUMED, state))


def test_a_position_inside_a_batch_resumes_like_the_threads(digits):
    """E.g. a checkpoint of a run with another batch size: the batches start at that example."""
    state = {"next_index": BATCH + 3}
    assert_same_batches(take(train_iterator(digits, 0), 2, state), take(train_iterator(digits, 2), 2, state))


def test_a_malformed_state_is_a_one_line_data_error(digits):
    with pytest.raises(DataError, match="next_index"):
        train_iterator(digits, 2).set_state({"iterators_in_use_states": []})


def write_folder(root, good_per_class, corrupt_per_class):
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        directory = root / "train" / name
        directory.mkdir(parents=True)
        for i in range(good_per_class):
            Image.fromarray(rng.integers(0, 255, (20 + i, 24, 3), dtype=np.uint8)).save(directory / f"{i}.jpg")
        for i in range(corrupt_per_class):
            (directory / f"corrupt{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return open_source(f"folder:{root}", "train")


def test_undecodable_images_are_counted_and_named_by_the_training_process(tmp_path, caplog):
    source = write_folder(tmp_path, good_per_class=6, corrupt_per_class=1)
    epochs = 2
    count = epochs * len(source) // BATCH + 1
    expected = take(train_iterator(source, 0), count)
    skips = pipeline.SkipCounter("train test")
    with caplog.at_level(logging.WARNING, logger=pipeline.__name__):
        assert_same_batches(expected, take(train_iterator(source, 2, skips=skips), count))
    assert skips.count == 2  # each corrupt file once, whichever epoch and worker (or substitute) visited it
    assert all("corrupt" in example for example in skips.examples)
    assert "train test: skipping an image:" in caplog.text and "corrupt0.jpg" in caplog.text


def test_only_undecodable_images_stop_the_workers_with_a_data_error(tmp_path):
    source = write_folder(tmp_path, good_per_class=0, corrupt_per_class=3)
    with pytest.raises(DataError, match="could not be decoded"):
        take(train_iterator(source, 2), 1)


@pytest.mark.slow
def test_train_py_with_workers(tmp_path):
    workdir = tmp_path / "run"
    result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "train.py"),
                             *tiny_args(workdir, steps=8, **{"data.worker_count": 2, "data.num_threads": 1})],
                            capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert metrics["step"] == 8 and metrics["skipped_train_images"] == 0
    assert json.loads((workdir / "checkpoints" / "8" / "data_position" / "process_0-of-1.json").read_text()) == \
        {"next_index": 8 * 16}


def test_input_pipeline_benchmark_quick(tmp_path):
    out = tmp_path / "input_pipeline.json"
    result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "benchmarks", "input_pipeline.py"), "--quick",
                             f"--out={out}"], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert {row["augment"] for row in rows} == {"crop+flip", "crop+flip+autoaugment"}
    assert {row["worker_count"] for row in rows} >= {0, 1}
    assert all(row["images_per_second"] > 0 and row["images_per_second_per_core"] > 0 for row in rows)
    assert set(report["cores_per_gpu"]) == {"crop+flip", "crop+flip+autoaugment"}
    assert "images/s" in result.stdout
