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
from genet_jax.workdir_lock import (WORKDIR_LOCK_FILE, WorkdirInUse, WorkdirLock, create_workdir,
                                    hold_workdir, shard_lock_file)
from tests.conftest import REPO_ROOT
from tests.helpers import tiny_args
from tests.nas_helpers import TINY_SEARCH_CONFIG
from tests.probe_table import HOLD_LOCK
from tests.processes import devices_env

HOLDER_DEADLINE_SECONDS = 60


@pytest.fixture
def holder(tmp_path):
    """A real process holding the lock of tmp_path/'work' (killed at the end)."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    process = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(workdir)], cwd=REPO_ROOT, env=devices_env(1),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)  # holds until stdin closes
    try:
        assert process.stdout.readline().strip() == "held", process.stderr.read()[-2000:]
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
    lock = WorkdirLock(str(workdir))
    with caplog.at_level(logging.WARNING, logger="genet_jax.workdir"):
        with hold_workdir(str(workdir)):
            with pytest.raises(WorkdirInUse, match="in use by this process already"):
                lock.acquire()
        assert lock.acquire() is None  # released cleanly: nothing to take over
    try:
        assert lock.holder().pid == os.getpid()
    finally:
        lock.release()
    assert f"took over the lock of {workdir} from pid {process.pid}" in caplog.text
    assert "ended without releasing it" in caplog.text
    assert (workdir / WORKDIR_LOCK_FILE).read_text() == ""  # released: describes no holder


HOLD = ("import sys\nfrom genet_jax.workdir_lock import WorkdirLock\n"
        "WorkdirLock(sys.argv[1], sys.argv[2], sys.argv[3] == 'shared').acquire()\nprint('held', flush=True)\n"
        "sys.stdin.read()\n")
TRY = ("import sys\nfrom genet_jax.workdir_lock import WorkdirLock, WorkdirInUse\n"
       "try:\n    WorkdirLock(sys.argv[1], sys.argv[2], sys.argv[3] == 'shared').acquire()\n"
       "except WorkdirInUse as e:\n    print(e)\n")


def other_process_tries(workdir, name, mode) -> str:
    """What another process gets for the lock (another process: within one, the registry answers)."""
    return subprocess.run([sys.executable, "-c", TRY, str(workdir), name, mode], cwd=REPO_ROOT, capture_output=True,
                          text=True, check=True, timeout=HOLDER_DEADLINE_SECONDS).stdout.strip()


def test_the_search_shards_share_the_workdir_each_holding_its_own_shard_and_exclude_any_other_run(tmp_path):
    shard = [subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), name, "shared"], cwd=REPO_ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for name in (WORKDIR_LOCK_FILE,)]
    try:
        assert shard[0].stdout.readline().strip() == "held"
        assert other_process_tries(tmp_path, WORKDIR_LOCK_FILE, "shared") == ""  # another shard's job
        refused = other_process_tries(tmp_path, WORKDIR_LOCK_FILE, "exclusive")
        assert refused == f"{tmp_path} is in use by the fine-tune shards of a search (--shard): wait for it to end, " \
                          "or give this run another workdir"
    finally:
        shard[0].kill()
        shard[0].wait()
    with hold_workdir(str(tmp_path)):
        assert other_process_tries(tmp_path, WORKDIR_LOCK_FILE, "shared").startswith(f"{tmp_path} is in use by pid")
        with hold_workdir(str(tmp_path), shard_lock_file(0, 2)):
            assert other_process_tries(tmp_path, shard_lock_file(0, 2), "exclusive").endswith(
                "or give this run another workdir")
            assert other_process_tries(tmp_path, shard_lock_file(1, 2), "exclusive") == ""


def test_a_workdir_that_cannot_be_one_is_named(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(InputError, match=f"config.workdir: {a_file} is a file, not a directory"):
        create_workdir(str(a_file))
    with pytest.raises(InputError, match=f"config.workdir: cannot create {a_file}/run"):
        create_workdir(str(a_file / "run"))
