"""The training data position in a checkpoint: this host's grain iterator position as an item of
the orbax checkpoint (`data_position`), written and read by grain's own checkpoint handler for the
threads' and the worker processes' iterators alike; checkpoints of the older layout (the position
beside the step, in WORKDIR/data_state/<step>/process_<i>.json) still resume."""
import json
import logging
import os
import shutil

import grain
import grain.checkpoint
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from etils import epath

from configs.common import base_config
from genet_jax.data import pipeline, workers
from genet_jax.data.sources import open_source
from genet_jax.training import steps
from genet_jax.training.train_checkpoints import DATA_ITEM, TrainCheckpointer, abstract_like

SIZE, BATCH, SEED = 16, 8, 0
TAKEN = 3  # batches trained on before the checkpoint
STEP = 4  # the checkpoint's step (the position does not depend on it)
MODEL_JSON = {"name": "a stand-in for the model description"}


@pytest.fixture(scope="module")
def digits():
    return open_source("digits", "train")


def train_iterator(source, worker_count):
    return workers.train_iterator(source, base_config().augment, SIZE, BATCH, SEED, 1, worker_count,
                                  pipeline.SkipCounter("test"))


@pytest.fixture(scope="module")
def reference(digits):
    """The uninterrupted stream of the threads."""
    iterator = train_iterator(digits, 0)
    try:
        return [next(iterator) for _ in range(TAKEN + 1)]
    finally:
        iterator.close()


def train_state(step):
    """A small real TrainState (the checkpoint items besides the data position)."""
    variables = {"params": {"kernel": jnp.ones((3, 2))}, "batch_stats": {"mean": jnp.zeros(2)}}
    state = steps.init_state(variables, optax.sgd(0.1))
    return state.replace(step=jnp.asarray(step, jnp.int32))


def restore(workdir):
    replicated, _ = steps.shardings(steps.create_mesh())
    checkpointer = TrainCheckpointer(str(workdir), keep=1)
    try:
        return checkpointer.restore(abstract_like(train_state(0), replicated))
    finally:
        checkpointer.close()


def assert_same_batch(expected, actual):
    for key in ("image", "label"):
        assert np.array_equal(np.asarray(expected[key]), np.asarray(actual[key])), key


@pytest.fixture(scope="module")
def saved(digits, tmp_path_factory):
    """A workdir whose checkpoint at STEP holds the position after TAKEN batches of the threads,
    as the trainer saves it (DevicePrefetcher's: it reads ahead); (workdir, that position)."""
    workdir = tmp_path_factory.mktemp("run")
    _, batch_sharding = steps.shardings(steps.create_mesh())
    batches = pipeline.DevicePrefetcher(train_iterator(digits, 0), batch_sharding)
    checkpointer = TrainCheckpointer(str(workdir), keep=1)
    try:
        for _ in range(TAKEN):
            next(batches)
        checkpointer.save(train_state(STEP), MODEL_JSON, batches.state, wait=True)
    finally:
        batches.close()
        checkpointer.close()
    return workdir, batches.state


def test_the_position_is_an_item_that_grains_handler_restores_into_either_iterator(saved, digits, reference):
    workdir, position = saved
    item = workdir / "checkpoints" / str(STEP) / DATA_ITEM
    assert sorted(name for name in os.listdir(item) if name.startswith("process_")) == ["process_0-of-1.json"]
    assert not (workdir / "data_state").exists()
    for worker_count in (0, 2):  # set_state only: no worker process starts before a batch is asked for
        iterator = train_iterator(digits, worker_count)
        try:
            restored = grain.checkpoint.CheckpointHandler().restore(
                epath.Path(item), args=grain.checkpoint.CheckpointRestore(iterator))
            assert restored is iterator and iterator.get_state() == position == {"next_index": TAKEN * BATCH}
            if worker_count == 0:
                assert_same_batch(reference[TAKEN], next(iterator))
        finally:
            iterator.close()
    _, restored = restore(workdir)
    assert restored == position


def test_a_position_saved_by_another_number_of_hosts_is_left_to_the_step(saved, tmp_path):
    """None: the trainer then resumes at `pipeline.train_data_state(step)`."""
    workdir = tmp_path / "run"
    shutil.copytree(saved[0], workdir)
    item = workdir / "checkpoints" / str(STEP) / DATA_ITEM
    for process in range(2):
        (item / f"process_{process}-of-2.json").write_text(json.dumps(saved[1]))
    (item / "process_0-of-1.json").unlink()
    state, position = restore(workdir)
    assert int(state.step) == STEP and position is None


def write_old_layout(workdir, step, position):
    """A checkpoint as genet-jax wrote it before the position became a checkpoint item: the orbax
    step without it, the position beside it in WORKDIR/data_state/<step>/process_<i>.json."""
    checkpointer = TrainCheckpointer(str(workdir), keep=1)
    try:
        checkpointer.save(train_state(step), MODEL_JSON, None, wait=True)
    finally:
        checkpointer.close()
    assert not (workdir / "checkpoints" / str(step) / DATA_ITEM).exists()
    (workdir / "data_state" / str(step)).mkdir(parents=True)
    (workdir / "data_state" / str(step) / "process_0.json").write_text(position)


def test_a_checkpoint_of_the_old_layout_resumes_then_its_position_file_goes(tmp_path, digits, reference):
    write_old_layout(tmp_path, STEP, json.dumps({"next_index": TAKEN * BATCH}))
    state, position = restore(tmp_path)
    assert int(state.step) == STEP and position == {"next_index": TAKEN * BATCH}
    iterator = train_iterator(digits, 0)
    try:
        iterator.set_state(position)
        assert_same_batch(reference[TAKEN], next(iterator))
    finally:
        iterator.close()
    checkpointer = TrainCheckpointer(str(tmp_path), keep=1)  # the resumed run's next checkpoint
    try:
        checkpointer.save(train_state(STEP + 1), MODEL_JSON, {"next_index": (TAKEN + 1) * BATCH}, wait=True)
        checkpointer.save(train_state(STEP + 2), MODEL_JSON, {"next_index": (TAKEN + 2) * BATCH}, wait=True)
    finally:
        checkpointer.close()
    assert not (tmp_path / "data_state").exists()
    assert restore(tmp_path)[1] == {"next_index": (TAKEN + 2) * BATCH}


def test_an_unreadable_old_position_is_derived_from_the_step(tmp_path, caplog):
    write_old_layout(tmp_path, STEP, '{"next_index": ')
    with caplog.at_level(logging.WARNING):
        state, position = restore(tmp_path)
    assert int(state.step) == STEP and position is None and "process_0.json is no data position" in caplog.text
