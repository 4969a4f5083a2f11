"""The generated results pages cannot go stale: docs/results/ and the README's model table equal what
benchmarks/results_pages.py generates from benchmarks/results/*.json, a changed figure names the page
that disagrees, model_table.json equals what benchmarks/model_table.py computes from the registry
now, and every result names the machine, date and command that produced it."""
import datetime
import glob
import json
import os
import shutil

import pytest

from benchmarks import model_table, results_pages
from benchmarks.machine import provenance
from tests.conftest import REPO_ROOT

RESULTS = os.path.join(REPO_ROOT, "benchmarks", "results")
GPU_REPORT = {
    "environment": {"device": "NVIDIA H200", "driver": "580.1", "gpus": 1, "cpu": "Intel Xeon x 16", "jax": "0.11.2"},
    "plan": {"quick": False, "warmup": 10, "runs": 30, "batches": [1, 2]},
    "sections": {"jax_inference": {"status": "ok", "seconds": 30.0, "rows": [
        {"model": "genet_normal", "framework": "jax", "variant": "BN folded", "resolution": 192, "dtype": "float16",
         "batch": batch, "ms_per_image": ms} for batch, ms in ((1, 1.234), (2, 0.789))]}},
    "complete": True, "wall_seconds": 40.0,
    "provenance": {"command": "python benchmarks/gpu_report.py", "date": "2027-01-02",
                   "machine": "1 x NVIDIA H200, driver 580.1; host Intel Xeon x 16"},
}


def results_copy(tmp_path) -> str:
    copy = str(tmp_path / "results")
    shutil.copytree(RESULTS, copy)
    return copy


def newly_stale(results: str) -> set[str]:
    """The files the check flags for `results` that it does not flag for the committed results."""
    return set(results_pages.stale_files(results_pages.expected_files(results))) - \
        set(results_pages.stale_files(results_pages.expected_files(RESULTS)))


def edit_json(path: str, edit) -> None:
    with open(path) as f:
        data = json.load(f)
    edit(data)
    with open(path, "w") as f:
        json.dump(data, f, indent=2)


def test_the_committed_pages_are_what_the_results_generate(capsys):
    code = results_pages.main(["--check"])
    assert code == 0, capsys.readouterr().out


@pytest.mark.parametrize("name, edit, page", [
    ("cpu_engines.json", lambda d: d["rows"][0].update(ms_per_image=d["rows"][0]["ms_per_image"] * 2), "cpu.md"),
    ("cifar10_trials.json", lambda d: d[4].update(top1=0.5), "cifar10.md"),
    ("input_pipeline.json", lambda d: d["rows"][3].update(images_per_second_per_core=1.0), "input_pipeline.md"),
])
def test_an_edited_figure_names_the_page_that_disagrees(tmp_path, capsys, name, edit, page):
    results = results_copy(tmp_path)
    edit_json(os.path.join(results, name), edit)
    assert newly_stale(results) == {f"docs/results/{page}"}
    assert results_pages.main(["--check", "--results-dir", results]) == results_pages.STALE_EXIT
    assert f"docs/results/{page}: differs" in capsys.readouterr().out


def test_a_gpu_report_gets_rendered_with_its_provenance(tmp_path):
    results = results_copy(tmp_path)
    os.makedirs(os.path.join(results, "gpu_report", "nvidia-h200"))
    with open(os.path.join(results, "gpu_report", "nvidia-h200", "report.json"), "w") as f:
        json.dump(GPU_REPORT, f)
    assert newly_stale(results) == {"docs/results/gpu.md", "docs/results/index.md"}
    files = results_pages.expected_files(results)
    gpu = files["docs/results/gpu.md"].decode()
    assert "## NVIDIA H200" in gpu and "| 1.234 | 0.789 |" in gpu and "- Date: 2027-01-02" in gpu
    assert "not measured yet" not in files["docs/results/index.md"].decode()


def test_a_readme_without_the_markers_exits_2(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# genet-jax\n\nno generated block here\n")
    assert results_pages.main(["--check", "--readme", str(readme)]) == results_pages.MISSING_MARKERS_EXIT
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_model_table_json_is_what_the_registry_computes_now():
    with open(os.path.join(RESULTS, model_table.OUT_NAME)) as f:
        committed = json.load(f)
    assert model_table.without_provenance(committed) == model_table.compute(RESULTS), \
        "benchmarks/results/model_table.json is stale: run python benchmarks/model_table.py"


def readme_block() -> str:
    with open(os.path.join(REPO_ROOT, "README.md")) as f:
        readme = f.read()
    return readme[readme.index(results_pages.BEGIN):readme.index(results_pages.END)]


def test_the_readme_table_shows_the_cifar10_result_of_the_config_network():
    with open(os.path.join(RESULTS, model_table.CIFAR10_FINAL)) as f:
        run = json.load(f)
    with open(os.path.join(RESULTS, model_table.OUT_NAME)) as f:
        (net,) = json.load(f)["config_networks"]
    row = next(line for line in readme_block().splitlines() if line.startswith("| `configs/cifar10.py` (CIFAR-10) |"))
    assert (net["resolution"], net["num_classes"]) == (32, 10)
    assert f"| 32 | {net['params'] / 1e6:.2f} | {net['macs'] / 1e9:.3f} | - | - | " \
           f"[{100 * run['ema_top1']:.2f}%](docs/results/cifar10.md) test top-1" in row
    assert f"EMA weights ({run['device']}, {run['provenance']['date']})" in row
    paragraph = readme_block().split("\n\n")[-1].strip().splitlines()
    assert len(paragraph) <= 5, paragraph


@pytest.mark.parametrize("edit, measured", [
    (lambda run: run.update(ema_top1=0.5), "[50.00%](docs/results/cifar10.md) test top-1, EMA weights"),
    (lambda run: run.update(ema_top1=None, raw_top1=0.25), "[25.00%](docs/results/cifar10.md) test top-1, raw weights"),
    (lambda run: run["model"].update(stem_width=32), "-"),  # a run of another network is not the config's result
], ids=["ema", "raw", "another network"])
def test_the_config_row_follows_the_cifar10_final_run(tmp_path, edit, measured):
    results = results_copy(tmp_path)
    edit_json(os.path.join(results, model_table.CIFAR10_FINAL), edit)
    (config_row,) = model_table.config_networks(results)
    assert model_table.measured_cell(config_row["measured"]).startswith(measured)


def result_records() -> list:
    """A case (file, record) per results JSON: each record of a list, the file itself otherwise."""
    paths = glob.glob(os.path.join(RESULTS, "*.json")) + glob.glob(os.path.join(RESULTS, "gpu_report", "*", "*.json"))
    records = []
    for path in sorted(paths):
        with open(path) as f:
            data = json.load(f)
        name = os.path.relpath(path, RESULTS)
        records += [pytest.param(name, data, id=name)] if isinstance(data, dict) else \
            [pytest.param(name, r, id=f"{name}[{i}]") for i, r in enumerate(data)]
    return records


def check_provenance(p: dict) -> None:
    assert p["command"].startswith("python benchmarks/"), p
    assert datetime.date.fromisoformat(p["date"]).isoformat() == p["date"], p
    assert isinstance(p["machine"], str) and p["machine"].strip(), p


@pytest.mark.parametrize("name, record", result_records())
def test_every_result_names_its_machine_date_and_command(name, record):
    check_provenance(record["provenance"])
    if "final_provenance" in record:
        check_provenance(record["final_provenance"])


def test_the_scripts_provenance_helper(tmp_path):
    script = os.path.join(REPO_ROOT, "benchmarks", "some_benchmark.py")
    p = provenance(argv=[script, "--name", "a b"], device="NVIDIA H200")
    assert p["command"] == "python benchmarks/some_benchmark.py --name 'a b'"
    check_provenance(p)
    assert p["machine"].startswith("NVIDIA H200; host ") and "cores" in p["machine"]
