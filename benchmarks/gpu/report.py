"""The report's files: report.json (everything), report.csv (one row per measurement), report.md
(the paper's Table 7 layout per dtype, training, correctness, scaling) and latency_vs_batch.png."""
from __future__ import annotations

import csv
import os

from genet_jax.outputs import new_figure, save_figure, write_json

INFERENCE_SECTIONS = ("jax_inference", "torch_inference", "torch_compile", "peers")
TRAINING_SECTIONS = ("jax_training", "torch_training")
LINE_STYLES = {"jax": "-", "torch": "--"}


def measurement_rows(report: dict, sections) -> list[dict]:
    return [{"section": name, **row} for name in sections
            for row in report["sections"].get(name, {}).get("rows", []) if "ms_per_image" in row or "step_ms" in row]


def write_all(report: dict, out_dir: str) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, name) for name in ("report.json", "report.csv", "report.md")]
    write_json(paths[0], report)
    rows = measurement_rows(report, INFERENCE_SECTIONS + TRAINING_SECTIONS)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(paths[1], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns or ["section"])
        writer.writeheader()
        writer.writerows(rows)
    with open(paths[2], "w") as f:
        f.write(markdown(report))
    plotted = plot(report, os.path.join(out_dir, "latency_vs_batch.png"))
    return paths + ([plotted] if plotted else [])


def _environment_line(env: dict) -> str:
    parts = [f"{env.get('device', '?')}"]
    for key, label in (("driver", "driver"), ("torch_cuda", "CUDA (torch)"), ("jax_cuda_plugin", "JAX CUDA plugin"),
                       ("cudnn", "cuDNN"), ("jax", "JAX"), ("jaxlib", "jaxlib"), ("flax", "Flax"),
                       ("torch", "torch"), ("timm", "timm"), ("cpu", "host CPU")):
        if env.get(key):
            parts.append(f"{label} {env[key]}")
    return ", ".join(parts)


def markdown(report: dict) -> str:
    env, plan = report["environment"], report["plan"]
    lines = [f"# GENet GPU report{' (--quick)' if plan['quick'] else ''}", "",
             _environment_line(env) + ".", "",
             f"Paper's protocol: {plan['warmup']} warm-up calls (+ the platform's warm-up seconds), {plan['runs']} "
             f"timed runs each ended by a device synchronisation, highest and lowest 10% dropped. "
             f"Whole report: {report['wall_seconds']:.0f} s.", ""]
    if not report.get("complete", True):
        stopped = [name for name, section in report["sections"].items() if section["status"] == "stopped"]
        lines += [f"**Incomplete**: stopped{' in ' + stopped[0] if stopped else ''} before the last section; "
                  "what follows is what finished.", ""]
    lines += ["| section | status | seconds | note |", "|---|---|---:|---|"]
    for name, section in report["sections"].items():
        note = section.get("reason", "")
        if section.get("skipped"):
            note = (note + "; " if note else "") + f"skipped (time budget): {', '.join(section['skipped'])}"
        notes = [row["note"] for row in section.get("rows", []) if "note" in row]
        note = "; ".join([note] + notes if note else notes)
        lines.append(f"| {name} | {section['status']} | {section.get('seconds', 0):.0f} | {note} |")
    lines += _latency_tables(report, plan["batches"])
    lines += _training_table(report)
    lines += _check_table(report)
    lines += _scaling_table(report)
    return "\n".join(lines) + "\n"


def _latency_tables(report: dict, batches) -> list[str]:
    rows = measurement_rows(report, INFERENCE_SECTIONS)
    lines = []
    for dtype in dict.fromkeys(r["dtype"] for r in rows):
        lines += ["", f"## Inference latency, ms/image, {dtype} (the paper's Table 7 layout)", "",
                  "| model | framework | variant | resolution | " + " | ".join(map(str, batches)) + " |",
                  "|---|---|---|---:|" + "---:|" * len(batches)]
        keys = dict.fromkeys((r["model"], r["framework"], r["variant"], r["resolution"]) for r in rows
                             if r["dtype"] == dtype)
        for model, framework, variant, resolution in keys:
            cells = {r["batch"]: r["ms_per_image"] for r in rows
                     if (r["dtype"], r["model"], r["framework"], r["variant"]) == (dtype, model, framework, variant)}
            values = [f"{cells[b]:.3f}" if b in cells else "-" for b in batches]
            lines.append(f"| {model} | {framework} | {variant} | {resolution} | " + " | ".join(values) + " |")
    return lines


def _training_table(report: dict) -> list[str]:
    rows = measurement_rows(report, TRAINING_SECTIONS)
    if not rows:
        return []
    lines = ["", "## Training throughput (steady state, one device-resident batch)", "",
             "| framework | variant | model | dtype | resolution | batch | images/s | ms/step | note |",
             "|---|---|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['framework']} | {r['variant']} | {r['model']} | {r['dtype']} | {r['resolution']} | "
                     f"{r['batch']} | {r['images_per_second']:.0f} | {r['step_ms']:.1f} | "
                     f"{r.get('batch_choice', '')} |")
    return lines


def _check_table(report: dict) -> list[str]:
    rows = [r for r in report["sections"].get("correctness", {}).get("rows", []) if "check" in r]
    if not rows:
        return []
    lines = ["", "## Correctness on the device", "", "| check | result | passed |", "|---|---|---|"]
    for r in rows:
        if "relative_error" in r:
            result = (f"max abs diff / max(1, max abs logit) = {r['relative_error']:.2e} ({r['device_conv_impl']} vs "
                      f"CPU {r['cpu_conv_impl']})" + (f", tolerance {r['tolerance']:.0e}" if r["tolerance"] else ""))
        else:
            result = "loss " + " -> ".join(f"{v:.3f}" for v in (r["losses"][0], r["losses"][-1]))
        passed = "-" if r["passed"] is None else ("yes" if r["passed"] else "**no**")
        lines.append(f"| {r['check']} | {result} | {passed} |")
    return lines


def _scaling_table(report: dict) -> list[str]:
    rows = [r for r in report["sections"].get("scaling", {}).get("rows", []) if "devices" in r]
    if not rows:
        return []
    lines = ["", "## Data-parallel training scaling", "",
             "| devices | BN statistics | batch per device | images/s | efficiency |", "|---:|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['devices']} | {r.get('bn_statistics', 'global')} | {r['batch_per_device']} | "
                     f"{r['images_per_second']:.0f} | {r['scaling_efficiency']:.0%} |")
    return lines


def plot(report: dict, path: str) -> str | None:
    rows = measurement_rows(report, INFERENCE_SECTIONS)
    dtypes = list(dict.fromkeys(r["dtype"] for r in rows))
    if not rows:
        return None
    fig, axes = new_figure(ncols=len(dtypes), width=6.5, height=5.0)
    models = list(dict.fromkeys(r["model"] for r in rows))
    colors = {m: f"C{i % 10}" for i, m in enumerate(models)}
    for ax, dtype in zip(axes, dtypes):
        for key in dict.fromkeys((r["model"], r["framework"], r["variant"]) for r in rows if r["dtype"] == dtype):
            mine = sorted((r for r in rows if (r["model"], r["framework"], r["variant"]) == key
                           and r["dtype"] == dtype), key=lambda r: r["batch"])
            style = ":" if "compile" in key[2] else LINE_STYLES.get(key[1].split()[0], "-.")
            ax.plot([r["batch"] for r in mine], [r["ms_per_image"] for r in mine], style, marker="o", markersize=3,
                    color=colors[key[0]], label=f"{key[0]} ({key[1]}{', compiled' if 'compile' in key[2] else ''})")
        ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="ms / image",
               title=f"{report['environment'].get('device', '')}, {dtype}")
        ax.set_xscale("log", base=2)
        ax.legend(fontsize=6)
    return save_figure(fig, path)
