"""Checkpoints that survive faults: a resume past a damaged latest step (truncated, deleted or emptied
files, an empty step directory) to the newest good one, a data position file that does not read,
and a full disk during a save (synchronous or in the background) as one line naming the step and
the last good one; TensorBoard metrics on a full disk. The full disk is a small tmpfs: mounted here
as root, in a user and mount namespace of its own (`unshare`) for train.py; skipped where neither
may mount."""
import asyncio
import gc
import glob
import logging
import os
import shutil
import subprocess
import sys
import threading

import jax.numpy as jnp
import optax
import pytest

from genet_jax import checkpoint_faults
from genet_jax.checkpoint import CheckpointError, load_model_checkpoint
from genet_jax.training import steps
from genet_jax.training.metrics import MetricWriter
from genet_jax.training.train_checkpoints import (DATA_ITEM, UNRESTORABLE_DIR, CheckpointWriteError,
                                                  TrainCheckpointer, abstract_like)
from tests.conftest import REPO_ROOT
from tests.helpers import tiny_args

GOOD, LATEST = 2, 4  # the steps saved; faults damage LATEST
MODEL_JSON = {"name": "a stand-in for the model description"}
KERNEL_ROWS = 3
SMALL_DISK = "2m"  # a tmpfs for the tiny state's checkpoints (about 170 KiB each)
# Left free on the full disk for a background failure: orbax's blocking part of a save (the step's
# temporary directory and metadata) fits, its arrays (written in the background) do not.
BACKGROUND_FAILURE_FREE_BYTES = 32 * 1024
# train.py of tests.helpers.TINY: its first checkpoint (about 390 KiB in tmpfs pages) fits, the second does not.
ONE_TINY_CHECKPOINT_DISK = "560k"


def train_state(step, kernel_rows=KERNEL_ROWS):
    variables = {"params": {"kernel": jnp.ones((kernel_rows, 2))}, "batch_stats": {"mean": jnp.zeros(2)}}
    return steps.init_state(variables, optax.sgd(0.1)).replace(step=jnp.asarray(step, jnp.int32))


def position(step):
    return {"next_index": 8 * step}


def save(workdir, *step_numbers, **options):
    checkpointer = TrainCheckpointer(str(workdir), keep=3, **options)
    try:
        for step in step_numbers:
            checkpointer.save(train_state(step), MODEL_JSON, position(step), wait=True)
    finally:
        checkpointer.close()


def restore(workdir, kernel_rows=KERNEL_ROWS):
    replicated, _ = steps.shardings(steps.create_mesh())
    checkpointer = TrainCheckpointer(str(workdir), keep=3)
    try:
        return checkpointer.restore(abstract_like(train_state(0, kernel_rows), replicated))
    finally:
        checkpointer.close()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A workdir with the steps GOOD and LATEST."""
    workdir = tmp_path_factory.mktemp("saved")
    save(workdir, GOOD, LATEST)
    return workdir


@pytest.fixture
def workdir(saved, tmp_path):
    shutil.copytree(saved, tmp_path / "run")
    return tmp_path / "run"


def relative_paths(directory):
    return sorted(os.path.relpath(path, directory) for path in glob.glob(f"{directory}/**", recursive=True))


def truncate_files(step_dir):
    for path in glob.glob(f"{step_dir}/*/d/*") + glob.glob(f"{step_dir}/*/ocdbt.process_0/d/*"):
        os.truncate(path, 10)


def empty(step_dir):
    shutil.rmtree(step_dir)
    step_dir.mkdir()


DAMAGES = {"truncated files": truncate_files,
           "a deleted item": lambda step_dir: shutil.rmtree(step_dir / "train_state"),
           "deleted metadata": lambda step_dir: os.remove(step_dir / "train_state" / "_METADATA"),
           "emptied": empty}


@pytest.mark.parametrize("damage", DAMAGES)
def test_resume_falls_back_past_a_damaged_latest_step_and_sets_it_aside(workdir, damage, caplog):
    checkpoints = workdir / "checkpoints"
    DAMAGES[damage](checkpoints / str(LATEST))
    kept = relative_paths(checkpoints / str(LATEST))
    with caplog.at_level(logging.WARNING):
        state, data_position = restore(workdir)
    assert int(state.step) == GOOD and data_position == position(GOOD)
    set_aside = workdir / UNRESTORABLE_DIR / str(LATEST)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and f"{checkpoints / str(LATEST)} (" in warnings[0] and str(set_aside) in warnings[0]
    assert "tensorstore_spec" not in warnings[0] and "\n" not in warnings[0]
    assert relative_paths(set_aside) == kept  # nothing lost
    save(workdir, LATEST)  # the resumed run's next save of that step number
    state, data_position = restore(workdir)
    assert int(state.step) == LATEST and data_position == position(LATEST)


def test_an_empty_step_directory_newer_than_the_latest_is_skipped(workdir):
    (workdir / "checkpoints" / "6").mkdir()
    state, _ = restore(workdir)
    assert int(state.step) == LATEST and os.listdir(workdir / UNRESTORABLE_DIR) == ["6"]


def test_empty_step_directories_alone_start_afresh(tmp_path):
    (tmp_path / "checkpoints" / "3").mkdir(parents=True)
    assert restore(tmp_path) is None
    assert os.listdir(tmp_path / UNRESTORABLE_DIR) == ["3"] and os.listdir(tmp_path / "checkpoints") == []


def test_a_checkpoint_of_another_model_is_one_line_naming_every_step(workdir):
    with pytest.raises(CheckpointError) as error:
        restore(workdir, kernel_rows=KERNEL_ROWS + 1)
    message = str(error.value)
    assert "\n" not in message and "config.model" in message and "not compatible with the stored shape" in message
    assert f"{workdir / 'checkpoints' / str(LATEST)}, {workdir / 'checkpoints' / str(GOOD)}" in message
    assert not (workdir / UNRESTORABLE_DIR).exists()  # nothing moved


def grain_position_file(workdir):
    return workdir / "checkpoints" / str(LATEST) / DATA_ITEM / "process_0-of-1.json"


def legacy_position_file(workdir):
    """The layout before the position became a checkpoint item: WORKDIR/data_state/<step>/process_<i>.json."""
    shutil.rmtree(workdir / "checkpoints" / str(LATEST) / DATA_ITEM)
    (workdir / "data_state" / str(LATEST)).mkdir(parents=True)
    return workdir / "data_state" / str(LATEST) / "process_0.json"


@pytest.mark.parametrize("layout", [grain_position_file, legacy_position_file], ids=["item", "legacy"])
@pytest.mark.parametrize("content", ['{"next_index": ', "[16]", '{"position": 16}', '{"next_index": -16}'],
                         ids=["garbage", "a list", "no next_index", "a negative next_index"])
def test_a_data_position_that_does_not_read_is_derived_from_the_step(workdir, layout, content, caplog):
    path = layout(workdir)
    path.write_text(content)
    with caplog.at_level(logging.WARNING):
        state, data_position = restore(workdir)
    assert int(state.step) == LATEST and data_position is None  # the trainer resumes at the step's position
    assert [r.getMessage().startswith(f"{path} is no data position") for r in caplog.records] == [True]


@pytest.fixture
def small_disk(tmp_path):
    """An empty tmpfs of SMALL_DISK (root only: skipped elsewhere), unmounted after the test."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SMALL_DISK}", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (root only): {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=True)  # lazy: also after a failure left a file open


def fill(disk, leave_free=0):
    """Fills `disk` but for `leave_free` bytes; the filler file's path."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(bytes(4096))
        except OSError:
            pass
    os.truncate(filler, max(0, os.path.getsize(filler) - leave_free))
    return filler


# How the write of step LATEST fails: during save (synchronous saves, or a disk too full for the part of
# an asynchronous save done before it returns), or in the background, raised by the next save or by close.
FAILURES = {"sync": (False, 0, "save"), "async, at the next save": (True, BACKGROUND_FAILURE_FREE_BYTES, "next save"),
            "async, at close": (True, BACKGROUND_FAILURE_FREE_BYTES, "close")}


@pytest.mark.parametrize("failure", FAILURES)
def test_a_full_disk_is_one_line_naming_the_step_and_the_last_good_one(small_disk, failure, caplog, capfd):
    async_save, leave_free, raised_by = FAILURES[failure]
    workdir, checkpoints = small_disk / "run", small_disk / "run" / "checkpoints"
    checkpointer = TrainCheckpointer(str(workdir), keep=3, async_save=async_save)
    checkpointer.save(train_state(GOOD), MODEL_JSON, position(GOOD), wait=True)
    filler = fill(small_disk, leave_free)
    with caplog.at_level(logging.INFO), pytest.raises(CheckpointWriteError) as error:
        checkpointer.save(train_state(LATEST), MODEL_JSON, position(LATEST))
        if raised_by == "next save":
            checkpointer.save(train_state(LATEST + 1), MODEL_JSON, position(LATEST + 1))
        checkpointer.close()
    assert str(error.value) == (f"cannot write the checkpoint {checkpoints / str(LATEST)}: No space left on device; "
                                f"the last good checkpoint is {checkpoints / str(GOOD)}")
    if raised_by != "close":
        checkpointer.close()  # as the trainer's does on the way out: the error is not raised twice
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "Traceback" not in capfd.readouterr().err
    os.remove(filler)  # space again: the next run resumes from the last good step, then writes LATEST
    state, data_position = restore(workdir)
    assert int(state.step) == GOOD and data_position == position(GOOD)
    save(workdir, LATEST, async_save=async_save)
    assert int(restore(workdir)[0].step) == LATEST


def test_tensorboard_metrics_on_a_full_disk_are_one_warning_and_the_run_goes_on(small_disk, caplog):
    writer = MetricWriter(str(small_disk))
    fill(small_disk)

    def write_a_run():
        for step in range(100):
            writer.write(step, {"train/loss": 1.0})
        writer.close()

    with caplog.at_level(logging.WARNING):
        run = threading.Thread(target=write_a_run, daemon=True)
        run.start()
        run.join(timeout=30)
    assert not run.is_alive(), "writing TensorBoard metrics to a full disk blocks"
    assert [r.getMessage() for r in caplog.records] == [
        f"TensorBoard metrics stop: cannot write {small_disk / 'tensorboard'}: No space left on device"]


@pytest.mark.slow
def test_train_py_on_a_full_disk_exits_2_with_one_line_and_keeps_the_last_good_step(tmp_path):
    """In a mount namespace of its own (`unshare`), on a tmpfs that holds one checkpoint: the second
    (step 4) fails in the background and is raised at the third save; then the workdir is copied out."""
    disk, kept = tmp_path / "disk", tmp_path / "kept"
    disk.mkdir()
    args = tiny_args(disk / "run", steps=100, **{"checkpoint.every_steps": 2})
    script = (f'mount -t tmpfs -o size={ONE_TINY_CHECKPOINT_DISK} tmpfs "$0" || exit 99; "$@"; code=$?; '
              f'cp -a "$0/run" {kept}; exit $code')
    result = subprocess.run(["unshare", "-rm", "sh", "-c", script, str(disk), sys.executable,
                             os.path.join(REPO_ROOT, "train.py"), *args], capture_output=True, text=True, cwd=REPO_ROOT)
    if result.returncode == 99 or "unshare:" in result.stderr:
        pytest.skip(f"cannot mount a tmpfs in a namespace of its own: {result.stderr.strip()[-300:]}")
    checkpoints = disk / "run" / "checkpoints"
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.splitlines()[-1] == (f"error: cannot write the checkpoint {checkpoints / '4'}: No space left "
                                              f"on device; the last good checkpoint is {checkpoints / '2'}")
    assert "Traceback" not in result.stderr and "Exception" not in result.stderr
    assert load_model_checkpoint(kept).step == 2 and TrainCheckpointer(str(kept), keep=3).latest_step() == 2


def test_only_damage_falls_back_and_a_storage_outage_out_of_memory_or_bug_is_raised():
    assert checkpoint_faults.is_damage(FileNotFoundError(2, "No such file or directory", "x/_METADATA"))
    assert checkpoint_faults.is_damage(ValueError("OUT_OF_RANGE: Error reading local file x/d/0: truncated"))
    assert checkpoint_faults.is_damage(ValueError("Requested shape: (3, 3) is not compatible with the stored shape: (3, 8)"))
    assert not checkpoint_faults.is_damage(ValueError("UNAVAILABLE: Error reading gs://bucket/x/d/0"))
    assert not checkpoint_faults.is_damage(PermissionError(13, "Permission denied", "x/d/0"))
    assert not checkpoint_faults.is_damage(MemoryError())
    assert not checkpoint_faults.is_damage(TypeError("unsupported operand"))  # a bug keeps its traceback


def _unretrieved_task_error(message):
    """Runs a task that raises ValueError(message) and lets it be collected with nobody asking for it."""
    async def read():
        raise ValueError(message)
    loop = asyncio.new_event_loop()
    try:
        task = loop.create_task(read())
        loop.run_until_complete(asyncio.sleep(0))
        assert task.done()
        del task
        gc.collect()
    finally:
        loop.close()


def test_the_leftover_task_errors_of_a_reported_failed_read_are_silent_and_others_are_not(tmp_path, caplog):
    failed, other = tmp_path / "checkpoints" / "4", tmp_path / "checkpoints" / "40"
    checkpoint_faults.drop_leftovers_of_failed_read(str(failed))
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        _unretrieved_task_error(f'OUT_OF_RANGE: Error reading local file "{failed}/variables/d/0"')
        assert not caplog.records
        _unretrieved_task_error(f'OUT_OF_RANGE: Error reading local file "{other}/variables/d/0"')
    assert [r.getMessage().splitlines()[0] for r in caplog.records] == ["Task exception was never retrieved"]
