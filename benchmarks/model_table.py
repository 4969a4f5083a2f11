"""The model table: every registered network's resolution, parameters and multiply-adds (computed
from its spec by genet_jax.spec_params / spec_macs: arithmetic, no model is built), the ImageNet
top-1 the paper reports, which registered names build the same network, the published figures of
the pretrained weights (genet_jax.pretrained.catalog), and what this project has measured with them
(its CIFAR-10 result; nothing on ImageNet yet), and the networks of this project's own configs
(configs/cifar10.py's, with its final run's test top-1 when that run trained the same network).

    python benchmarks/model_table.py [--results-dir benchmarks/results]

Writes RESULTS_DIR/model_table.json. Its "provenance" keeps the date the table last changed: a run
that computes the same table leaves the file as it is. tests/test_results_pages.py checks that the
committed file equals what this computes now. The rendering of the table (docs/results/models.md and
the README's block) is here too; the Markdown helpers it shares with every page of
benchmarks/results_pages.py are in benchmarks/results_markdown.py.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.machine import provenance  # noqa: E402
from benchmarks.results_markdown import page, pct, provenance_lines, table  # noqa: E402

RESULTS = os.path.join(REPO, "benchmarks", "results")
OUT_NAME = "model_table.json"
CIFAR10_FINAL = "cifar10_train.json"
COUNTED_WITH = "computed by `genet_jax.spec_params` / `genet_jax.spec_macs` at each network's resolution, 1000 classes"
MACS_NOTE = "MACs count the convolutions and the head, as the paper's FLOPs do"
CIFAR10_CONFIG, CIFAR10_CLASSES = "configs/cifar10.py", 10


def _units(spec) -> tuple:
    """What a network computes: stem, final width, resolution, classes and every residual unit."""
    units = tuple(u for i in range(len(spec.blocks)) for u in spec.units(i))
    return spec.stem_width, spec.final_width, spec.resolution, spec.num_classes, units


def networks() -> list[dict]:
    """Every registered network, in genet_jax.list_models() order, with its counts and twins."""
    import genet_jax

    entries = [genet_jax.get_entry(name) for name in genet_jax.list_models()]
    built = {entry.name: _units(entry.spec) for entry in entries}
    return [{"name": entry.name, "resolution": entry.spec.resolution, "params": genet_jax.spec_params(entry.spec),
             "macs": genet_jax.spec_macs(entry.spec), "paper_top1": entry.paper_top1,
             "description": entry.description,
             "same_network_as": [other for other in built if other != entry.name and built[other] == built[entry.name]]}
            for entry in entries]


def pretrained() -> dict:
    """name -> the published weights: Hub repository, the authors' file, and each publisher's top-1."""
    from genet_jax.pretrained.catalog import PRETRAINED

    return {name: {"hub_repo": w.hub_repo, "hub_revision": w.hub_revision, "authors_file": w.authors_file,
                   "authors_url": w.authors_url, "license": w.license,
                   "published_top1": [{"publisher": p.publisher, "top1": p.top1, "resolution": p.resolution,
                                       "crop_fraction": p.crop_fraction} for p in w.published]}
            for name, w in sorted(PRETRAINED.items())}


def measured(results_dir: str) -> dict:
    """This project's own results with these networks: ImageNet (none yet) and the CIFAR-10 final."""
    import genet_jax
    from genet_jax.arch.spec import NetworkSpec

    run = final_run(results_dir)
    if run is None:
        return {"imagenet": [], "cifar10": []}
    spec = NetworkSpec.from_dict(run["model"])
    return {"imagenet": [], "cifar10": [{
        "source": f"benchmarks/results/{CIFAR10_FINAL}", "name": run["name"], "split": run["split"],
        "resolution": spec.resolution, "params": genet_jax.spec_params(spec), "macs": genet_jax.spec_macs(spec),
        "top1": run["top1"], "top5": run["top5"], "raw_top1": run["raw_top1"], "ema_top1": run["ema_top1"],
        "epochs": run["epochs"], "provenance": run["provenance"]}]}


def final_run(results_dir: str) -> dict | None:
    """The CIFAR-10 final run's record (benchmarks/cifar10_train.py), None before there is one."""
    path = os.path.join(results_dir, CIFAR10_FINAL)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def config_networks(results_dir: str) -> list[dict]:
    """configs/cifar10.py's network (counted at 10 classes) and, when the CIFAR-10 final run trained
    that same network, its test top-1 (of the EMA weights where on), device and date."""
    import genet_jax
    from configs.cifar10 import get_config
    from genet_jax.arch.spec import NetworkSpec

    config, run = get_config(), final_run(results_dir)
    spec = genet_jax.resolve_spec(config.model, num_classes=CIFAR10_CLASSES, resolution=config.resolution)
    result = None
    if run is not None and NetworkSpec.from_dict(run["model"]) == spec:
        ema = run["ema_top1"] is not None
        result = {"source": f"benchmarks/results/{CIFAR10_FINAL}", "split": run["split"],
                  "weights": "EMA" if ema else "raw", "top1": run["ema_top1"] if ema else run["raw_top1"],
                  "device": run["provenance"]["machine"].split(";")[0], "date": run["provenance"]["date"]}
    return [{"name": CIFAR10_CONFIG, "dataset": "CIFAR-10", "resolution": spec.resolution,
             "num_classes": spec.num_classes, "params": genet_jax.spec_params(spec), "macs": genet_jax.spec_macs(spec),
             "measured": result}]


def compute(results_dir: str = RESULTS) -> dict:
    """The table as model_table.json holds it, without its provenance."""
    return {"counted_with": COUNTED_WITH, "macs_note": MACS_NOTE, "networks": networks(),
            "config_networks": config_networks(results_dir), "pretrained": pretrained(),
            "measured": measured(results_dir)}


def without_provenance(table: dict) -> dict:
    return {key: value for key, value in table.items() if key != "provenance"}


# ---- rendering: the model table's pages (Markdown helpers: benchmarks/results_markdown.py) ------------
HEADLINE = ("genet_light", "genet_normal", "genet_large", "masternet")  # the README's rows
MILLION, BILLION = 1e6, 1e9
RESULTS_INDEX = "docs/results/index.md"
MODELS_PAGE = "docs/results/models.md"
DATASET_PAGES = {f"benchmarks/results/{CIFAR10_FINAL}": "docs/results/cifar10.md"}  # a result's source -> its page
PAPER_DIGITS, TIMM_DIGITS = 1, 2  # as each publishes its top-1
README_WIDTH = 100


def top1_text(value: float | None, digits: int = PAPER_DIGITS) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _published(weights: dict, publisher: str) -> dict | None:
    return next((p for p in weights.get("published_top1", []) if p["publisher"].startswith(publisher)), None)


def _top1(weights: dict, publisher: str, digits: int) -> str:
    hit = _published(weights, publisher)
    return "-" if hit is None else f"{hit['top1']:.{digits}f} ({hit['resolution']}, crop {hit['crop_fraction']:g})"


def _ordered(networks: list[dict]) -> list[dict]:
    """The headline networks first, then the registry's order."""
    first = [n for name in HEADLINE for n in networks if n["name"] == name]
    return first + [n for n in networks if n["name"] not in HEADLINE]


def twins_note(networks: list[dict]) -> list[str]:
    """Which Table 6 rows build the same network, computed from the specs, and what that says."""
    rows = {n["name"]: n for n in networks if n["name"].startswith("table6_")}
    names = list(rows)
    twins = {name: [other for other in rows[name]["same_network_as"] if other in rows] for name in names}
    pairs = [(a, b) for a in names for b in twins[a] if names.index(a) < names.index(b)]
    distinct = sum(all(names.index(other) > names.index(name) for other in twins[name]) for name in names)
    spread = next(((a, b) for a, b in pairs if rows[a]["paper_top1"] != rows[b]["paper_top1"]), None)
    example = "" if spread is None else (
        f" The paper reports different accuracies for such rows ({top1_text(rows[spread[0]]['paper_top1'])} for "
        f"`{spread[0]}`, {top1_text(rows[spread[1]]['paper_top1'])} for `{spread[1]}`), so the spread between "
        "them is run-to-run noise of the paper's training.")
    return ["Several Table 6 rows describe the same network. A super-block of stride 1 whose width equals the "
            "previous one's continues it with identity shortcuts: `D d4 s2` then `D d2 s1` at width 320 builds the "
            "same units as `D d6 s2`. Rows that build identical stems, units and heads (computed from the specs): "
            + ", ".join(f"`{a}` = `{b}`" for a, b in pairs)
            + f"; {distinct} distinct networks in {len(names)} rows." + example
            + " The registry keeps every row as written.", ""]


def measured_imagenet(runs: list[dict]) -> list[str]:
    if not runs:
        return ["ImageNet: none yet.", ""]
    rows = [[r["name"], r.get("split", "validation"), pct(r["top1"])] for r in runs]
    lines = ["ImageNet:", "", *table(["network", "split", "top-1"], rows, "llr"), ""]
    return lines + [line for r in runs for line in provenance_lines(r["provenance"]) + [""]]


def models_page(t: dict) -> str:
    """docs/results/models.md: every registered network, the pretrained weights, what was measured here."""
    rows = [[f"`{n['name']}`", n["resolution"], f"{n['params']:,}", f"{n['macs'] / BILLION:.3f}",
             top1_text(n["paper_top1"]), n["description"],
             ", ".join(f"`{o}`" for o in n["same_network_as"]) or "-"] for n in _ordered(t["networks"])]
    weights = [[f"`{name}`", f"`{w['hub_repo']}`", f"`{w['authors_file']}`", w["license"],
                _top1(w, "authors", PAPER_DIGITS), _top1(w, "timm", TIMM_DIGITS)]
               for name, w in sorted(t["pretrained"].items(), key=lambda item: HEADLINE.index(item[0]))]
    cifar = [[r["name"], r["split"], r["resolution"], f"{r['params']:,}", f"{r['macs'] / MILLION:.0f} M",
              pct(r["top1"]), pct(r["top5"]), f"{r['epochs']:.0f}"] for r in t["measured"]["cifar10"]]
    body = [f"Every network registered in `genet_jax` (`genet_jax.list_models()`). Parameters and multiply-adds "
            f"(MACs) {t['counted_with']}; {t['macs_note']}. Top-1: the ImageNet accuracy the paper reports. "
            "Table 6 gives no resolution; its networks use section 3.2's benchmark resolution.", "",
            *table(["network", "resolution", "params", "MACs (G)", "paper top-1", "what", "same network as"], rows,
                   "lrrrrll"), "", *twins_note(t["networks"]), *provenance_lines(t["provenance"]), "",
            "## Pretrained weights", "",
            "The published ImageNet weights `genet_jax` loads (`genet_jax.pretrained.catalog`), with the top-1 each "
            "publisher reports (resolution and centre-crop fraction in brackets); published figures, not measured "
            "here.", "", *table(["network", "Hugging Face Hub", "authors' file", "license", "top-1, authors",
                                 "top-1, timm"], weights, "llllrr"), "",
            "## Measured here", "",
            *measured_imagenet(t["measured"]["imagenet"]),
            "CIFAR-10 (the network of `configs/cifar10.py`; every run on the [CIFAR-10 page](cifar10.md)):", "",
            *table(["run", "split", "resolution", "params", "MACs", "top-1", "top-5", "epochs"], cifar, "llrrrrrr"), ""]
    for r in t["measured"]["cifar10"]:
        body += provenance_lines(r["provenance"]) + [""]
    return page("Models", ["model_table.json"], body)


def measured_cell(result: dict | None) -> str:
    """A config network's own result, linking the page of its dataset: "[89.74%](...) test top-1, ..."."""
    if result is None:
        return "-"
    return (f"[{pct(result['top1'])}]({DATASET_PAGES[result['source']]}) {result['split']} top-1, {result['weights']} "
            f"weights ({result['device']}, {result['date']})")


def readme_block(t: dict) -> str:
    """The README's model table: the pretrained and headline networks, then the networks of this project's
    configs with what was measured with them, and what the figures are."""
    rows = []
    for n in _ordered(t["networks"])[:len(HEADLINE)]:
        timm = _published(t["pretrained"].get(n["name"], {}), "timm")
        rows.append([f"`{n['name']}`", n["resolution"], f"{n['params'] / MILLION:.2f}", f"{n['macs'] / BILLION:.3f}",
                     top1_text(n["paper_top1"]),
                     "-" if timm is None else f"{top1_text(timm['top1'], TIMM_DIGITS)} ({timm['resolution']})", "-"])
    rows += [[f"`{n['name']}` ({n['dataset']})", n["resolution"], f"{n['params'] / MILLION:.2f}",
              f"{n['macs'] / BILLION:.3f}", "-", "-", measured_cell(n["measured"])] for n in t["config_networks"]]
    classes = "".join(f" ({n['num_classes']} for {n['dataset']})" for n in t["config_networks"])
    measured = ("No ImageNet accuracy has been measured here yet." if not t["measured"]["imagenet"]
                else f"ImageNet accuracy measured here: [{MODELS_PAGE}]({MODELS_PAGE}).")
    note = (f"Parameters and multiply-adds (MACs) {t['counted_with']}{classes}; {t['macs_note']}. ImageNet top-1 "
            f"as published by the paper (Table 2) and by timm (its resolution in brackets). {measured} Every "
            f"registered network: [{MODELS_PAGE}]({MODELS_PAGE}).")
    lines = table(["network", "resolution", "params (M)", "MACs (G)", "ImageNet top-1, paper", "timm's evaluation",
                   f"[measured here]({RESULTS_INDEX})"], rows, "lrrrrrl")
    wrapped = textwrap.fill(note, README_WIDTH, break_long_words=False, break_on_hyphens=False)
    return "\n".join([*lines, "", wrapped]) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results-dir", default=RESULTS, help="where the results JSONs are and the table goes")
    args = parser.parse_args(argv)
    path = os.path.join(args.results_dir, OUT_NAME)
    computed = compute(args.results_dir)
    if os.path.isfile(path):
        with open(path) as f:
            if without_provenance(json.load(f)) == computed:
                print(f"{path}: unchanged")
                return 0
    computed["provenance"] = provenance(argv=None if argv is None else [__file__, *argv])
    with open(path, "w") as f:
        json.dump(computed, f, indent=2)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
