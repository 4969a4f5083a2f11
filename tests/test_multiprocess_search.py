"""LLR-NAS fine-tunes on JAX's distributed runtime: jobs of several processes sharing the
fine-tunes (`--distributed` with `--shard`), killed and resumed, equal to one process."""
import os
import shutil
import signal
import subprocess
import sys

import pytest

from genet_jax.nas import store
from tests.conftest import REPO_ROOT
from tests.nas_helpers import TINY_SEARCH_CONFIG
from tests.processes import devices_env, finish, wait_for

PERTURBATIONS_PER_BLOCK = 1  # 3 fine-tunes of the 2-block tiny MasterNet: 2 for shard 0, 1 for shard 1


def search_job(config, workdir, *args, processes=None, devices=2):
    command = [os.path.join(REPO_ROOT, "search.py"), f"--config={config}", f"--config.workdir={workdir}",
               f"--config.perturbations_per_block={PERTURBATIONS_PER_BLOCK}", *args]
    if processes:
        command = ["-m", "genet_jax.launch", "--processes", str(processes), "--devices-per-process", str(devices),
                   "--grace", "5", "--", *command]
    return subprocess.Popen([sys.executable, *command], cwd=REPO_ROOT, env=devices_env(devices), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def search_stage(config, workdir, *args, **launch):
    ((code, err),) = finish([search_job(config, workdir, *args, **launch)])
    assert code == 0, err[-3000:]


@pytest.mark.slow
def test_sharded_multi_process_fine_tunes_resume_after_a_kill_and_equal_one_process(tmp_path):
    """LLR-NAS fine-tunes shared by two jobs (--shard 0/2 and 1/2), each 2 processes x 2 devices
    (--distributed), running at once; one loses a process after its first result and is run
    again. Every perturbation's accuracy equals the one a single 1 x 4 process gives."""
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
    search_stage(config, single, "--stage=finetune", devices=4)
    one, two = store.load_results(str(single / "results")), store.load_results(str(multi / "results"))
    assert sorted(one) == sorted(two) and len(one) == 1 + 2 * PERTURBATIONS_PER_BLOCK  # the master itself too
    for key in one:
        assert two[key]["accuracy"] == pytest.approx(one[key]["accuracy"], abs=1e-6)
