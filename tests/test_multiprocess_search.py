"""LLR-NAS on JAX's distributed runtime: jobs of several processes sharing the fine-tunes
(`--distributed` with `--shard`), killed and resumed, equal to one process; the select stage of two
processes (latencies measured once, by process 0, for both) picking and training what one process
does."""
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from genet_jax.nas import store
from genet_jax.nas.store import read_json
from tests.conftest import REPO_ROOT
from tests.nas_helpers import TINY_SEARCH_CONFIG
from tests.processes import RUN_DEADLINE_SECONDS, devices_env, finish, wait_for

PERTURBATIONS_PER_BLOCK = 1  # 3 fine-tunes of the 2-block tiny MasterNet: 2 for shard 0, 1 for shard 1
# The smallest latency table (one width per part, uncalibrated): its parts, the MasterNet's and the
# selection's probes are measurements enough to tell whether the processes share them
# (tests/test_search.py builds and calibrates a fuller one).
SMALLEST_LATENCY_TABLE = ("--config.latency.grid_points=1", "--config.latency.line_points=1",
                          "--config.latency.calibration_probes=0", "--config.latency.validation_probes=0")


def search_job(config, workdir, *args, processes=None, devices=2):
    command = [os.path.join(REPO_ROOT, "search.py"), f"--config={config}", f"--config.workdir={workdir}",
               f"--config.perturbations_per_block={PERTURBATIONS_PER_BLOCK}", *SMALLEST_LATENCY_TABLE, *args]
    if processes:
        command = ["-m", "genet_jax.launch", "--processes", str(processes), "--devices-per-process", str(devices),
                   "--grace", "5", "--", *command]
    return subprocess.Popen([sys.executable, *command], cwd=REPO_ROOT, env=devices_env(devices), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def finished(job):
    """Wait for a job to end (killing it at the deadline); its stdout and stderr (a launched job's:
    every process's lines, each prefixed [i])."""
    try:
        out, err = job.communicate(timeout=RUN_DEADLINE_SECONDS)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert job.returncode == 0, err[-3000:]
    return out + err


def search_stage(config, workdir, *args, **launch):
    return finished(search_job(config, workdir, *args, **launch))


# What a select stage prints of its pick and measurements (and the selection line it logs, in full
# precision), after any log prefix; the "result: PATH" line differs between workdirs and is left out.
OUTCOME_LINE = re.compile(r"(?:[^\]]*\] )?((?:selection|selected) @.*|  (?:predicted|MasterNet) top-1.*)")


def outcome_lines(output):
    """{process: its lines naming the pick and the measurements, in order}; process 0 for an
    unlaunched run."""
    lines = {}
    for line in output.split("\n"):
        process, text = re.fullmatch(r"(?:\[(\d+)\] )?(.*)", line, re.DOTALL).groups()
        match = OUTCOME_LINE.fullmatch(text.split("\r")[-1])  # what a terminal shows after a progress bar
        if match:
            lines.setdefault(int(process or 0), []).append(match.group(1))
    return lines


@pytest.mark.slow
def test_multi_process_fine_tunes_resume_after_a_kill_and_select_equal_one_process(tmp_path):
    """LLR-NAS fine-tunes shared by two jobs (--shard 0/2 and 1/2), each 2 processes x 2 devices
    (--distributed), running at once; one loses a process after its first result and is run
    again. Every perturbation's accuracy equals the one a single 1 x 4 process gives. Then the
    select stage as 2 processes x 2 devices, measuring every latency afresh: both processes report
    the same pick and measurements, bit for bit, and one process (1 x 4 devices) given the same
    measurements picks the same structure and trains it to the same top-1."""
    config = tmp_path / "tiny_search.py"
    config.write_text(TINY_SEARCH_CONFIG)
    single, multi = tmp_path / "single", tmp_path / "multi"
    search_stage(config, single, "--stage=master", devices=4)
    multi.mkdir()
    shutil.copy(single / "master.json", multi)
    shutil.copytree(single / "masternet", multi / "masternet")
    jobs = [search_job(config, multi, "--stage=finetune", f"--shard={i}/2", processes=2) for i in range(2)]
    first_shard = multi / "results" / os.path.basename(store.shard_file("", 0, 2))
    try:
        wait_for(lambda: first_shard.is_file() and first_shard.stat().st_size > 0 or jobs[0].poll() is not None,
                 "the first fine-tune result")
        assert jobs[0].poll() is None, "shard 0 finished before it could be killed"
        children = subprocess.run(["pgrep", "-P", str(jobs[0].pid)], capture_output=True, text=True).stdout.split()
        os.kill(int(max(children, key=int)), signal.SIGKILL)  # process 1 of shard 0
        (killed, err), (other, other_err) = finish(jobs)
    finally:
        for job in jobs:
            if job.poll() is None:
                os.killpg(job.pid, signal.SIGKILL)
    assert killed != 0 and "was killed by signal 9" in err, err[-3000:]
    assert other == 0, other_err[-3000:]
    search_stage(config, multi, "--stage=finetune", "--shard=0/2", processes=2)
    selecting = search_job(config, multi, "--stage=select", processes=2)
    try:  # process 1 mostly waits for process 0's measurements: the one-process fine-tunes run meanwhile
        search_stage(config, single, "--stage=finetune", devices=4)
        two_processes = outcome_lines(finished(selecting))
    finally:
        if selecting.poll() is None:
            os.killpg(selecting.pid, signal.SIGKILL)
    shutil.copytree(multi / "latency", single / "latency")  # the same measurements: no latency measured again
    one_process = outcome_lines(search_stage(config, single, "--stage=select", devices=4))
    one, two = store.load_results(str(single / "results")), store.load_results(str(multi / "results"))
    assert sorted(one) == sorted(two) and len(one) == 1 + 2 * PERTURBATIONS_PER_BLOCK  # the master itself too
    for key in one:
        assert two[key]["accuracy"] == pytest.approx(one[key]["accuracy"], abs=1e-6)
    # Both processes hold the same pick and measurements, bit for bit, and train it as one process does.
    assert sorted(two_processes) == [0, 1] and two_processes[0] == two_processes[1], two_processes
    assert one_process == {0: two_processes[0]}
    picked = [read_json(run / "search_result.json")["selected"] for run in (single, multi)]
    trained = [pick.pop("trained_accuracy") for pick in picked]
    assert picked[0] == picked[1] and picked[0]["trained_weights"] == "ema"
    assert trained[1] == pytest.approx(trained[0], abs=1e-6)
