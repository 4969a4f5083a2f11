"""One job per workdir (genet_jax.workdir_lock): a second train.py or search.py on a workdir in use
stops at once naming the holder; a lock whose holder was killed is taken over, saying so. The holder
here is a real process holding the real lock; train.py's own lock under kill -9 is in
tests/test_train.py, a multi-process job's in tests/test_multiprocess.py."""
import logging
import os
import signal
import subprocess
import sys

import pytest

from genet_jax.errors import InputError
from genet_jax.workdir_lock import (WORKDIR_LOCK_FILE, LockHolder, WorkdirInUse, WorkdirLock, create_workdir,
                                    hold_workdir, shard_lock_file)
from tests.conftest import REPO_ROOT
from tests.helpers import tiny_args
from tests.nas_helpers import TINY_SEARCH_CONFIG
from tests.processes import devices_env, wait_for

HOLDER_DEADLINE_SECONDS = 60
HOLD_THE_LOCK = """
import sys, time
from genet_jax.workdir_lock import WorkdirLock
WorkdirLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep({seconds})
"""


@pytest.fixture
def holder(tmp_path):
    """A real process holding the lock of tmp_path/'work' (killed at the end)."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    process = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK.format(seconds=HOLDER_DEADLINE_SECONDS),
                                str(workdir)], cwd=REPO_ROOT, env=devices_env(1), stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "held"
        yield workdir, process
    finally:
        process.kill()
        process.wait()


def one_line_error(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and lines and lines[-1].startswith("error: "), result.stderr[-2000:]
    assert not any("Traceback" in line for line in lines), result.stderr[-2000:]
    return lines[-1]


@pytest.mark.slow
def test_train_and_search_on_a_workdir_in_use_stop_at_once_then_a_killed_holder_is_taken_over(holder, tmp_path,
                                                                                               caplog):
    workdir, process = holder
    (workdir / "config.json").write_text('{"seed": 7}')
    train = subprocess.run([sys.executable, "train.py", *tiny_args(workdir, seed=2)], cwd=REPO_ROOT,
                           env=devices_env(1), capture_output=True, text=True, timeout=HOLDER_DEADLINE_SECONDS)
    line = one_line_error(train)
    assert f"{workdir} is in use by pid {process.pid}" in line
    assert (workdir / "config.json").read_text() == '{"seed": 7}'  # the refused run wrote nothing
    assert not (workdir / "checkpoints").exists()

    config_file = tmp_path / "search_config.py"
    config_file.write_text(TINY_SEARCH_CONFIG)
    search = subprocess.run([sys.executable, "search.py", f"--config={config_file}", f"--config.workdir={workdir}"],
                            cwd=REPO_ROOT, env=devices_env(1), capture_output=True, text=True,
                            timeout=HOLDER_DEADLINE_SECONDS)
    assert f"{workdir} is in use by pid {process.pid}" in one_line_error(search)

    process.send_signal(signal.SIGKILL)
    process.wait()
    with caplog.at_level(logging.WARNING, logger="genet_jax.workdir"):
        with hold_workdir(str(workdir)):
            assert LockHolder.from_json((workdir / WORKDIR_LOCK_FILE).read_text()).pid == os.getpid()
    assert f"took over the lock of {workdir} from pid {process.pid}" in caplog.text
    assert "ended without releasing it" in caplog.text
    assert (workdir / WORKDIR_LOCK_FILE).read_text() == ""  # released: describes no holder


def test_a_released_lock_is_taken_without_a_warning_and_one_process_cannot_hold_it_twice(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="genet_jax.workdir"):
        with hold_workdir(str(tmp_path)):
            with pytest.raises(WorkdirInUse, match="in use by this process already"):
                WorkdirLock(str(tmp_path)).acquire()
            holder = LockHolder.from_json((tmp_path / WORKDIR_LOCK_FILE).read_text())
            assert holder.pid == os.getpid() and holder.processes == 1
        with hold_workdir(str(tmp_path)):
            pass
    assert caplog.text == ""


def test_shards_of_a_search_hold_their_own_locks(tmp_path):
    first, second = WorkdirLock(str(tmp_path), shard_lock_file(0, 2)), WorkdirLock(str(tmp_path), shard_lock_file(1, 2))
    assert first.acquire() is None and second.acquire() is None
    try:
        with pytest.raises(WorkdirInUse):
            WorkdirLock(str(tmp_path), shard_lock_file(1, 2)).acquire()
    finally:
        first.release()
        second.release()


def test_a_workdir_that_cannot_be_one_is_named(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(InputError, match=f"config.workdir: {a_file} is a file, not a directory"):
        create_workdir(str(a_file))
    with pytest.raises(InputError, match=f"config.workdir: cannot create {a_file}/run"):
        create_workdir(str(a_file / "run"))
