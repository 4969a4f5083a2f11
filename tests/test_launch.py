"""`python -m genet_jax.launch` and `--distributed` outside a cluster, with real child processes."""
import os
import signal
import subprocess
import sys
import time

import pytest

from genet_jax import launch
from tests.conftest import REPO_ROOT
from tests.helpers import tiny_args
from tests.processes import RUN_DEADLINE_SECONDS, devices_env

TRAIN = os.path.join(REPO_ROOT, "train.py")

LAUNCHED_CHILD = """
import os, signal, sys, time
if os.environ["GENET_JAX_PROCESS_ID"] == "1":
    time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGKILL)
signal.signal(signal.SIGTERM, lambda *_: (print("stopped by SIGTERM", flush=True), sys.exit(0)))
time.sleep(60)
"""


def test_the_launcher_stops_the_others_when_one_process_is_killed(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(LAUNCHED_CHILD)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "genet_jax.launch", "--processes", "3", "--grace", "20", "--",
                           str(script)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 128 + signal.SIGKILL, done.stderr
    assert "process 1 was killed by signal 9; stopping the others" in done.stderr
    assert "[0] stopped by SIGTERM" in done.stdout and "[2] stopped by SIGTERM" in done.stdout
    assert time.monotonic() - started < 30


def test_distributed_without_a_cluster_or_launcher_is_one_line(tmp_path):
    env = {k: v for k, v in devices_env(1).items() if not k.startswith(("SLURM_", "OMPI_", "KUBERNETES_", "JAX_COORD"))}
    done = subprocess.run([sys.executable, TRAIN, *tiny_args(tmp_path), "--distributed"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=RUN_DEADLINE_SECONDS)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "--distributed" in lines[0], done.stderr[-2000:]


def test_launcher_usage_errors(capsys):
    for argv, message in [([], "give the command after --"), (["--processes", "0", "--", "train.py"], ">= 1")]:
        with pytest.raises(SystemExit) as exited:
            launch.main(argv if argv else ["--processes", "2"])
        assert exited.value.code == 2 and message in capsys.readouterr().err
