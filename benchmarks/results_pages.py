"""The results pages: docs/results/*.md generated from benchmarks/results/*.json (every figure on
them comes from a results file, each with the machine, date and command that produced it), and the
README's model table between its generated-block markers.

    python benchmarks/results_pages.py            # regenerate docs/results/ and the README block
    python benchmarks/results_pages.py --check    # exit 1 listing each file that differs; writes nothing

Exit code 2 (one line) when the README lacks the markers. Pages: INDEX_PAGES (their sources:
PAGE_SOURCES); the GPU page renders each benchmarks/results/gpu_report/<device>/report.json there is,
or says that no GPU figure has been measured yet. The CIFAR-10 page is rendered by
benchmarks/results_cifar10.py; the CPU, input-pipeline and deployment pages by
benchmarks/results_cpu.py; the model table (models.md and the README block) by benchmarks/model_table.py;
the Markdown helpers every page shares are benchmarks/results_markdown.py. This file keeps the index, the GPU page and the driver.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.model_table import models_page, readme_block  # noqa: E402
from benchmarks.results_cifar10 import CIFAR_PLOT, CIFAR_SOURCES, cifar10_page  # noqa: E402
from benchmarks.results_cpu import (CPU_SOURCES, DEPLOYMENT_SOURCES, INPUT_SOURCES, cpu_page,  # noqa: E402
                                    deployment_page, input_page)
from benchmarks.results_markdown import Results, image, page, provenance_lines, table  # noqa: E402

RESULTS = os.path.join(REPO, "benchmarks", "results")
README = os.path.join(REPO, "README.md")
DOCS_RESULTS = "docs/results"
BEGIN = "<!-- generated: model-table (python benchmarks/results_pages.py) -->"
END = "<!-- end generated: model-table -->"
MISSING_MARKERS_EXIT = 2
STALE_EXIT = 1
GPU_REPORTS = "gpu_report"
GPU_PLOT = "latency_vs_batch.png"
GPU_WHAT = ("`python benchmarks/gpu_report.py` measures the paper's Table 7 on a GPU: inference latency of "
            "GENet-light, -normal and -large in JAX and as this project's torch module (eager and `torch.compile`) "
            "against timm's ResNet-50/152, EfficientNet-B0 to B3 and MobileNetV2 at batch 1 to 64 in float16 and "
            "bfloat16; training throughput of GENet-normal in JAX and PyTorch; device-against-CPU logits; and "
            "data-parallel scaling over every visible device. Each section runs under a time budget "
            "(`benchmarks/gpu/plan.py`) and writes `benchmarks/results/gpu_report/<device>/`.")
GPU_NONE = [GPU_WHAT, "", "**No GPU figure has been measured yet.** Once a report is in "
            "`benchmarks/results/gpu_report/`, `python benchmarks/results_pages.py` renders it here.", ""]


class MissingMarkers(Exception):
    """The README has no generated model-table block to rewrite."""


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


# ---- index, GPU, README block, driver ---------------------------------------------------------------
INDEX_PAGES = {"models.md": ("Models", "every registered network: resolution, parameters, multiply-adds, published "
                                       "accuracy; the pretrained weights; what was measured here"),
               "cifar10.md": ("CIFAR-10", "the final training run, round 1's recipe choice, every trial"),
               "cpu.md": ("CPU speed", "every CPU engine, JAX against PyTorch, XLA:CPU options, BN statistics"),
               "input_pipeline.md": ("Input pipeline", "images/s of the ImageNet input pipeline; CPU cores per GPU"),
               "deployment.md": ("Deployment", "INT8 against float32 accuracy on ONNX Runtime"),
               "gpu.md": ("GPU", "the GPU report: the paper's Table 7 on today's GPUs, training throughput")}
PAGE_SOURCES = {"models.md": ["model_table.json"], "cifar10.md": CIFAR_SOURCES[:-1], "cpu.md": CPU_SOURCES,
                "input_pipeline.md": INPUT_SOURCES, "deployment.md": DEPLOYMENT_SOURCES[:1]}


def result_dates(results: Results, sources: list[str]) -> str:
    """The dates of the results in `sources` (each record of a list), earliest to latest."""
    dates = set()
    for name in sources:
        data = results.load(name)
        dates.update(r["provenance"]["date"] for r in (data if isinstance(data, list) else [data]))
    return " to ".join(sorted(dates)[::max(1, len(dates) - 1)]) if dates else "not measured yet"


def index_page(results: Results) -> str:
    reports = [f"{GPU_REPORTS}/{device}/report.json" for device, _ in gpu_reports(results)]
    rows = [[f"[{title}]({name})", what, result_dates(results, PAGE_SOURCES.get(name, reports))]
            for name, (title, what) in INDEX_PAGES.items()]
    body = ["Every figure this project has measured, generated from the results files in `benchmarks/results/`, "
            "which each benchmark script writes. Each result states the machine it ran on, the date and the "
            "command that produced it: rerun the command to check a figure on your machine, then "
            "`python benchmarks/results_pages.py` to regenerate these pages (`--check` lists the pages that "
            "differ from the results files, as the test suite does).", "",
            *table(["page", "what", "dates"], rows, "lll"), ""]
    return page("Results", ["*.json"], body)


def gpu_reports(results: Results) -> list[tuple[str, dict]]:
    """(device folder, report.json) of each GPU report measured, in folder order."""
    paths = sorted(glob.glob(os.path.join(results.root, GPU_REPORTS, "*", "report.json")))
    return [(os.path.basename(os.path.dirname(p)), results.load(os.path.relpath(p, results.root))) for p in paths]


def gpu_page(results: Results, files: dict) -> str:
    """Each GPU report's tables (benchmarks/gpu/report.py's layout) with its provenance, or a page
    saying no GPU figure has been measured yet."""
    reports = gpu_reports(results)
    if not reports:
        return page("GPU", [f"{GPU_REPORTS}/<device>/report.json"], GPU_NONE)
    from benchmarks.gpu.report import markdown

    body = [GPU_WHAT, ""]
    for device, report in reports:
        body += [f"## {report['environment'].get('device', device)}", "", *provenance_lines(report["provenance"]), ""]
        plot = os.path.join(results.root, GPU_REPORTS, device, GPU_PLOT)
        if os.path.isfile(plot):
            files[f"{DOCS_RESULTS}/gpu_{device}.png"] = read_bytes(plot)
            body += [image(f"Latency against batch size on {device}", f"gpu_{device}.png"), ""]
        lines = markdown(report).splitlines()[2:]  # its own title (and the blank line) replaced by the heading
        body += ["#" + line if line.startswith("#") else line for line in lines] + [""]
    return page("GPU", [f"{GPU_REPORTS}/{device}/report.json" for device, _ in reports], body)


def replace_block(readme: str, block: str) -> str:
    """`readme` with the text between the model-table markers replaced by `block`."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise MissingMarkers(f"README.md has no '{BEGIN}' ... '{END}' block for the model table")
    return readme[:start + len(BEGIN)] + "\n" + block.rstrip("\n") + "\n" + readme[end:]


def expected_files(results_dir: str = RESULTS, readme_path: str = README) -> dict[str, bytes]:
    """Every generated file (path relative to the repository root) with the content it should have."""
    results = Results(results_dir)
    table_json = results.load("model_table.json")
    files: dict[str, bytes] = {}
    pages = {"models.md": models_page(table_json), "cifar10.md": cifar10_page(results),
             "cpu.md": cpu_page(results), "input_pipeline.md": input_page(results),
             "deployment.md": deployment_page(results), "gpu.md": gpu_page(results, files),
             "index.md": index_page(results)}
    files.update({f"{DOCS_RESULTS}/{name}": content.encode() for name, content in pages.items()})
    plot = os.path.join(results_dir, CIFAR_PLOT)
    if os.path.isfile(plot):
        files[f"{DOCS_RESULTS}/{CIFAR_PLOT}"] = read_bytes(plot)
    readme_path = os.path.abspath(readme_path)
    inside = readme_path.startswith(REPO + os.sep)
    with open(readme_path) as f:
        files[os.path.relpath(readme_path, REPO) if inside else readme_path] = \
            replace_block(f.read(), readme_block(table_json)).encode()
    return files


def _path(name: str, root: str) -> str:
    return name if os.path.isabs(name) else os.path.join(root, name)


def stale_files(files: dict[str, bytes], root: str = REPO) -> list[str]:
    """The generated files that differ from `files` or are missing, and files in docs/results/ that
    nothing generates."""
    stale = []
    for name, content in files.items():
        path = _path(name, root)
        if not os.path.isfile(path) or read_bytes(path) != content:
            stale.append(name)
    generated_dir = os.path.join(root, DOCS_RESULTS)
    present = sorted(os.listdir(generated_dir)) if os.path.isdir(generated_dir) else []
    return stale + [f"{DOCS_RESULTS}/{name}" for name in present if f"{DOCS_RESULTS}/{name}" not in files]


def write_files(files: dict[str, bytes], root: str = REPO) -> list[str]:
    """Write what differs (and remove files in docs/results/ that nothing generates); the paths changed."""
    changed = stale_files(files, root)
    for name in changed:
        path = _path(name, root)
        if name in files:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(files[name])
        else:
            os.remove(path)
    return changed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="list the files that differ; exit 1 if any")
    parser.add_argument("--results-dir", default=RESULTS, help="the results JSONs (default benchmarks/results)")
    parser.add_argument("--readme", default=README, help="the README whose model-table block is rewritten")
    args = parser.parse_args(argv)
    try:
        files = expected_files(args.results_dir, args.readme)
    except MissingMarkers as error:
        print(f"error: {error}", file=sys.stderr)
        return MISSING_MARKERS_EXIT
    if args.check:
        stale = stale_files(files)
        for name in stale:
            print(f"{name}: differs from what `python benchmarks/results_pages.py` generates")
        return STALE_EXIT if stale else 0
    for name in write_files(files):
        print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
