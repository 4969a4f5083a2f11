"""`python search.py` end to end on digits with a tiny MasterNet keeping a weight EMA: outputs, the
weights every stage measures, kill -9 and resume, sharded fine-tunes merging to the unsharded
selection, the latency-dependent stages on ONNX Runtime, bad usage."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from genet_jax.nas import store
from genet_jax.nas.store import read_json
from tests.conftest import REPO_ROOT
from tests.nas_helpers import TINY_SEARCH_CONFIG

NUM_JOBS = 3  # the baseline (the MasterNet under the fine-tune schedule) + 1 per super-block


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "tiny_search.py"
    path.write_text(TINY_SEARCH_CONFIG)
    return str(path)


def search_command(config_file, workdir, *extra):
    return [sys.executable, os.path.join(REPO_ROOT, "search.py"), f"--config={config_file}",
            f"--config.workdir={workdir}", *extra]


def run_search(config_file, workdir, *extra):
    result = subprocess.run(search_command(config_file, workdir, *extra), capture_output=True, text=True,
                            cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def result_lines(workdir):
    lines = []
    for name in sorted(os.listdir(os.path.join(workdir, "results"))):
        with open(os.path.join(workdir, "results", name)) as f:
            lines += [json.loads(line) for line in f if line.strip()]
    return lines


def kill_9_during_the_fine_tunes(config_file, workdir):
    """Start a search, kill -9 it once a fine-tune has finished; the results it kept."""
    proc = subprocess.Popen(search_command(config_file, workdir), cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    results_dir = os.path.join(workdir, "results")
    deadline = time.time() + 400
    while time.time() < deadline and proc.poll() is None:
        if os.path.isdir(results_dir) and len(store.load_results(results_dir)) >= 1:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return store.load_results(results_dir)


def check_outputs(workdir):
    """Every output of a finished search; its pick."""
    result = read_json(os.path.join(workdir, "search_result.json"))
    picked = result["selected"]
    assert picked["measured_latency_ms"] <= picked["budget_ms"]
    assert picked["trained_accuracy"] is not None and picked["structure_string"]
    for name in ("pseudo_gradients.json", "pseudo_gradients.csv", "plots/accuracy_predicted_vs_measured.png",
                 "plots/candidates_r16.png", "latency/table_r16.json", "latency/parts_r16.json", "latency/probes.json"):
        assert os.path.getsize(os.path.join(workdir, name)) > 0, name
    assert result["resolutions"][0]["candidates"] == 1001
    table_check = result["resolutions"][0]["latency_table"]
    assert table_check["pairs"] == 2 and table_check["median_abs_relative_error"] >= 0
    assert os.path.getsize(os.path.join(workdir, "plots", "latency_table_r16.png")) > 0
    measured_on = read_json(os.path.join(workdir, "selection_r16.json"))["latency_measured_on"]
    assert measured_on["device"]["platform"] == "cpu" and measured_on["settings"]["conv_impl"] == "taps"
    return picked


def trainer_top1(run_dir):
    """(EMA weights' top-1, raw weights' top-1) of a trainer run's last evaluation."""
    metrics = read_json(os.path.join(run_dir, "metrics.json"))
    return metrics["eval_ema"]["top1"], metrics["eval"]["top1"]


def check_every_stage_measured_the_ema_weights(workdir):
    """The test search keeps an EMA (optim.ema_decay > 0): A*, every fine-tune's top-1 and the
    pick's trained top-1 are those of the EMA weights, and each record says so."""
    master = read_json(os.path.join(workdir, "master.json"))
    ema, raw = trainer_top1(os.path.join(workdir, "masternet"))
    assert ema != raw, "the test needs EMA and raw weights that score differently"
    assert (master.get("weights"), master["accuracy"]) == ("ema", ema)
    for key, record in store.load_results(os.path.join(workdir, "results")).items():
        finetuned, _ = trainer_top1(os.path.join(workdir, "finetunes", key))
        assert (record.get("weights"), record["accuracy"]) == ("ema", finetuned)
    result = read_json(os.path.join(workdir, "search_result.json"))
    assert result["master"].get("weights") == "ema"
    picked, (trained, _) = result["selected"], trainer_top1(os.path.join(workdir, "final", "r16"))
    assert (picked.get("trained_weights"), picked["trained_accuracy"]) == ("ema", trained)
    assert read_json(os.path.join(workdir, "pseudo_gradients.json")).get("weights") == "ema"


def check_shards_merge_to_the_same_selection(config_file, workdir, sharded, picked):
    """The fine-tunes of `workdir` again as two shards on a copy of its MasterNet and latency
    measurements: the merged shards give the unsharded results and selection."""
    os.makedirs(sharded)
    shutil.copy(os.path.join(workdir, "master.json"), sharded)
    shutil.copytree(os.path.join(workdir, "latency"), os.path.join(sharded, "latency"))
    missing = subprocess.run(search_command(config_file, sharded, "--stage=select"), capture_output=True, text=True,
                             cwd=REPO_ROOT)
    assert missing.returncode == 2 and "have no result yet" in missing.stderr
    for shard, count in (("0/2", 2), ("1/2", 1)):
        assert f"fine-tunes run now: {count}" in run_search(config_file, sharded, f"--shard={shard}").stdout
    assert sorted(os.listdir(os.path.join(sharded, "results"))) == [
        "finetunes-0000-of-0002.jsonl", "finetunes-0001-of-0002.jsonl"]
    merged = store.load_results(os.path.join(sharded, "results"))
    single = store.load_results(os.path.join(workdir, "results"))
    assert sorted(merged) == sorted(single)
    for key in merged:  # same work, same numbers (CPU XLA is deterministic for a fixed seed)
        assert merged[key]["accuracy"] == pytest.approx(single[key]["accuracy"], abs=1e-6)
    run_search(config_file, sharded, "--stage=select", "--config.final.num_train_steps=-1", "--config.final.epochs=0")
    selected = read_json(os.path.join(sharded, "search_result.json"))["selected"]
    assert (selected["spec"], selected["measured_latency_ms"]) == (picked["spec"], picked["measured_latency_ms"])
    assert read_json(os.path.join(sharded, "pseudo_gradients.json"))["fits"] == \
        read_json(os.path.join(workdir, "pseudo_gradients.json"))["fits"]


def check_the_engine_dependent_stages_on_onnxruntime(config_file, workdir, other):
    """The same search with `latency.engine = "onnxruntime"` on a copy of its MasterNet and fine-tunes
    (which do not depend on the engine): `search.py` runs the latency table, selection and the final
    training with every latency measured on ONNX Runtime, none reused from the JAX measurements."""
    pytest.importorskip("onnxruntime", reason="onnxruntime: the onnx extra (requirements-dev.txt)")
    os.makedirs(other)
    shutil.copy(os.path.join(workdir, "master.json"), other)
    for name in ("masternet", "results"):
        shutil.copytree(os.path.join(workdir, name), os.path.join(other, name))
    done = run_search(config_file, other, "--config.latency.engine=onnxruntime", "--config.latency.line_points=2")
    assert "fine-tunes run now: 0" in done.stdout
    picked = read_json(os.path.join(other, "search_result.json"))["selected"]
    assert picked["measured_latency_ms"] <= picked["budget_ms"] and picked["trained_accuracy"] is not None
    measured_on = read_json(os.path.join(other, "selection_r16.json"))["latency_measured_on"]
    assert measured_on["settings"]["engine"] == "onnxruntime"
    assert measured_on["settings"]["provider"] == "CPUExecutionProvider"
    assert measured_on["engine_version"].startswith("onnxruntime ")
    for name in ("probes.json", "parts_r16.json"):  # the stores are keyed by the engine: no JAX entry reused
        jax_keys = set(read_json(os.path.join(workdir, "latency", name)))
        onnxruntime_keys = set(read_json(os.path.join(other, "latency", name)))
        assert onnxruntime_keys and not jax_keys & onnxruntime_keys, name


@pytest.mark.slow
def test_kill_9_and_resume_then_shards_merge_to_the_same_selection(config_file, tmp_path):
    """One search, killed -9 between fine-tunes and re-run, then the same fine-tunes again as two
    shards on a copy of its MasterNet: the merged shards give the unsharded results and selection."""
    workdir = str(tmp_path / "run")
    finished_before = kill_9_during_the_fine_tunes(config_file, workdir)
    assert 1 <= len(finished_before) < NUM_JOBS, "the kill should land between fine-tunes"

    rerun = run_search(config_file, workdir)
    assert f"fine-tunes run now: {NUM_JOBS - len(finished_before)}" in rerun.stdout
    lines = result_lines(workdir)
    assert len(lines) == len({r["key"] for r in lines}) == NUM_JOBS  # nothing ran twice
    for key, record in finished_before.items():
        assert next(r for r in lines if r["key"] == key) == record

    picked = check_outputs(workdir)
    check_every_stage_measured_the_ema_weights(workdir)
    again = run_search(config_file, workdir)  # a finished search: same answer, nothing re-run
    assert "fine-tunes run now: 0" in again.stdout
    assert read_json(os.path.join(workdir, "search_result.json"))["selected"] == picked

    check_shards_merge_to_the_same_selection(config_file, workdir, str(tmp_path / "sharded"), picked)
    check_the_engine_dependent_stages_on_onnxruntime(config_file, workdir, str(tmp_path / "onnxruntime"))
