"""benchmarks/gpu_report.py: --quick runs every section on this CPU (so the report cannot rot between
GPU runs), its files carry the keys the README lists, and time budgets cut a section short cleanly.
The report runs on the CPU on any host (a GPU host too): its CPU facts (the "taps" kernels, two
forced host devices to scale over) are what these tests check."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from benchmarks.gpu.jax_sections import MEMORY_HEADROOM, TrainingBench
from benchmarks.gpu.plan import FULL, Budget
from tests.conftest import REPO_ROOT

REPORT = os.path.join(REPO_ROOT, "benchmarks", "gpu_report.py")
INFERENCE = ("jax_inference", "torch_inference", "torch_compile")
STOP_TEST_SECONDS = 120


def on_the_cpu() -> dict:
    """The environment of a report that runs on the CPU on any host: JAX's platform, no GPU for PyTorch."""
    return {**os.environ, "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""}


def run_report(out_dir, *args):
    done = subprocess.run([sys.executable, REPORT, "--quick", "--out-dir", str(out_dir), *args],
                          capture_output=True, text=True, cwd=REPO_ROOT, env=on_the_cpu())
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    with open(os.path.join(out_dir, "report.json")) as f:
        return json.load(f)


@pytest.mark.slow
def test_quick_report_runs_every_section_on_the_cpu(tmp_path):
    report = run_report(tmp_path)
    assert set(report) == {"environment", "plan", "sections", "wall_seconds", "complete", "provenance"}
    assert report["complete"] and {"command", "date", "machine"} <= set(report["provenance"])
    env = report["environment"]
    for key in ("device", "cpu", "jax", "jaxlib", "flax", "torch", "python", "jax_device_kind", "conv_impl_auto"):
        assert env.get(key), key
    assert env["unsupported_versions"] == []
    sections = report["sections"]
    assert list(sections) == ["environment", "correctness", "jax_inference", "torch_inference", "peers",
                              "jax_training", "torch_training", "torch_compile", "scaling"]
    assert all(s["status"] == "ok" and "skipped" not in s for s in sections.values()), sections
    for name in INFERENCE:
        rows = sections[name]["rows"]
        assert {(r["dtype"], r["batch"]) for r in rows} == {(d, b) for d in ("float16", "bfloat16") for b in (1, 2)}
        assert all(r["ms_per_image"] > 0 for r in rows)
    assert {r["conv_impl"] for r in sections["jax_inference"]["rows"]} == {"taps"}  # "auto" resolved, recorded
    checks = sections["correctness"]["rows"]
    assert [c["passed"] for c in checks] == [True, None, True]  # highest precision within tolerance; loss falls
    assert checks[0]["device_conv_impl"] != checks[0]["cpu_conv_impl"]  # two kernel sets compared
    peers = sections["peers"]["rows"]
    assert peers and ("note" in peers[0] or peers[0]["ms_per_image"] > 0)  # timm is optional
    jax_train, torch_train = sections["jax_training"]["rows"][0], sections["torch_training"]["rows"][0]
    assert jax_train["batch"] == torch_train["batch"] == 8
    assert jax_train["images_per_second"] > 0 and torch_train["images_per_second"] > 0
    scaling = sections["scaling"]["rows"]
    assert [(r["devices"], r["bn_statistics"]) for r in scaling] == [(1, "per_device"), (2, "per_device"),
                                                                     (2, "global")]
    assert scaling[0]["scaling_efficiency"] == pytest.approx(1.0)
    with open(tmp_path / "report.csv") as f:
        assert len(list(csv.DictReader(f))) == 3 * 4 + 2 + (len(peers) if "note" not in peers[0] else 0)
    text = (tmp_path / "report.md").read_text()
    for heading in ("Inference latency, ms/image, float16", "Training throughput", "Correctness on the device",
                    "Data-parallel training scaling"):
        assert heading in text
    assert (tmp_path / "latency_vs_batch.png").stat().st_size > 10_000
    assert report["wall_seconds"] > 0  # its time is the budgets' business (plan.budgets), not a timed test's


def test_an_exhausted_budget_skips_measurements_and_says_which(tmp_path):
    report = run_report(tmp_path, "--sections", "jax_inference", "--budget-scale", "1e-6")
    section = report["sections"]["jax_inference"]
    assert section["status"] == "ok" and section["rows"] == []
    assert len(section["skipped"]) == 4 and section["skipped"][0].endswith("float16 batch 1")
    assert "skipped (time budget)" in (tmp_path / "report.md").read_text()


@pytest.mark.slow
def test_a_stopped_report_keeps_the_sections_that_finished(tmp_path):
    """SIGTERM (a job's time limit) during the second section: report.json, .md and .csv still hold
    the first section and the stopped one, say the run did not complete, and its worker is gone."""
    report_json = tmp_path / "report.json"
    process = subprocess.Popen([sys.executable, REPORT, "--quick", "--out-dir", str(tmp_path), "--sections",
                                "environment,correctness"], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
                               start_new_session=True, env=on_the_cpu())  # its own process group: the worker's too
    deadline = time.monotonic() + STOP_TEST_SECONDS
    while not report_json.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)  # written once the environment section has finished
    assert process.poll() is None, "the report ended before it could be stopped"
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=STOP_TEST_SECONDS)
    assert process.returncode == 1 and "stopped by signal" in out, out
    report = json.loads(report_json.read_text())
    assert report["complete"] is False and list(report["sections"]) == ["environment", "correctness"]
    assert report["sections"]["environment"]["status"] == "ok"
    assert report["sections"]["correctness"]["status"] == "stopped"
    assert "**Incomplete**: stopped in correctness" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "report.csv").exists() and not list(tmp_path.glob("*.tmp"))
    with pytest.raises(ProcessLookupError):  # no process of the group is left: the worker was killed
        os.killpg(process.pid, 0)


def test_bad_arguments_are_named():
    for args, message in [(["--sections", "jax_inference,nope"], "--sections: unknown nope"),
                          (["--budget-scale", "0"], "--budget-scale must be > 0")]:
        done = subprocess.run([sys.executable, REPORT, *args], capture_output=True, text=True, cwd=REPO_ROOT)
        assert done.returncode == 2 and message in done.stderr


class FakeDevice:
    def __init__(self, limit):
        self.limit = limit

    def memory_stats(self):
        return {"bytes_limit": self.limit}


GIB = 2 ** 30


@pytest.mark.parametrize("limit,expected,in_no_time", [(100 * GIB, 1024, 128), (8 * GIB, 64, 64),
                                                       (1024 * GIB, 2048, 128), (2 * GIB, 64, 64)])
def test_training_batch_is_the_largest_power_of_two_whose_memory_plan_fits(limit, expected, in_no_time):
    # memory plans as a GPU reports them, linear in the batch: 1 GiB fixed + 60 MiB per image
    def planned(batch):
        return GIB + batch * 60 * 2 ** 20

    bench = TrainingBench.__new__(TrainingBench)  # no network: only the batch search
    bench.plan = FULL
    bench.compile = lambda batch: (None, planned(batch), 0.0)
    batch, why = bench.largest_batch(FakeDevice(limit), Budget(60))
    assert batch == expected and f"{MEMORY_HEADROOM:.0%}" in why
    assert batch == FULL.train_batch_start or planned(batch) <= MEMORY_HEADROOM * limit < planned(2 * batch) \
        or batch == FULL.train_batch_max
    batch, why = bench.largest_batch(FakeDevice(limit), Budget(0))  # no time to check the estimate
    assert batch == in_no_time and (batch == expected or "checked in time" in why)
