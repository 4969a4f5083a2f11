"""The CPU, input-pipeline and deployment results pages (docs/results/cpu.md, input_pipeline.md,
deployment.md), each from its JSONs in benchmarks/results/ (CPU_SOURCES, INPUT_SOURCES,
DEPLOYMENT_SOURCES). benchmarks/results_pages.py writes them."""
from __future__ import annotations

import os

from benchmarks.results_markdown import Results, page, pct, provenance_lines, table

CPU_SOURCES = ["cpu_engines.json", "speed_vs_pytorch.json", "xla_cpu_options.json", "bn_statistics.json"]
INPUT_SOURCES = ["input_pipeline.json"]
DEPLOYMENT_SOURCES = ["onnx_int8_accuracy.json", "cpu_engines.json"]


# ---- CPU ----------------------------------------------------------------------------------------------
def peak_share(gflops: float, peak: float, weights: str = "float32") -> str:
    return "-" if weights.startswith("int8") else f"{100 * gflops / peak:.0f}%"


def engine_settings(row: dict) -> str:
    parts = (["XLA_FLAGS as in the candidates below"] if row.get("xla_flags") else []) + \
        (["BN folded"] if row.get("fold_bn") else []) + ([f"{row['weights']} weights"] if "weights" in row else [])
    return ", ".join(parts) or "-"


def cpu_engines(d: dict) -> list[str]:
    proto, m, peak, summary = d["protocol"], d["machine"], d["matmul_peak"], d["summary"]
    rows = [[i, r["row"], engine_settings(r), f"{r['ms_per_image']:.2f}", f"{r['images_per_second']:.1f}",
             f"{r['ratio_to_fastest']:.2f}x", f"{r['gflops_per_second']:.0f}",
             peak_share(r["gflops_per_second"], peak["peak_used_gflops"], r.get("weights", "float32"))]
            for i, r in enumerate(d["rows"], start=1)]
    candidates = [[c["setting"], f"`{c['xla_flags']}`", "yes" if c["fold_bn"] else "no", f"{c['ms_per_image']:.2f}"]
                  for c in d["xla_flag_candidates"]]
    agree = d["onnxruntime_agreement"]
    best = next(i for i, r in enumerate(d["rows"], start=1) if r["row"] == summary["best_jax"])
    above_peak = any(r["percent_of_matmul_peak"] > 100 for r in d["rows"]
                     if not r.get("weights", "").startswith("int8"))
    relative = (" Float32 rows above 100% beat that jitted matmul, so read the column as relative, not as a share "
                "of the machine's limit.") if above_peak else ""
    return [
        "## Every CPU engine, one run", "",
        f"`{d['arch']}`, batch {d['batch']}, {d['resolution']}x{d['resolution']}, {d['dtype']} inputs, random "
        f"weights, through every engine this project offers. Protocol: {proto['warmup']} warm-up runs, "
        f"{proto['runs']} timed, top and bottom {proto['trim']:.0%} dropped, {proto['statistic']} of "
        f"{proto['rounds']}. JAX {m['jax']}, torch {m['torch']} ({m['torch_threads']} threads), onnxruntime "
        f"{m['onnxruntime']}. GFLOP/s is 2 x the float network's multiply-adds per second, against the float32 "
        f"matmul peak measured in the same run ({peak['peak_used']}, {peak['size']} x {peak['size']}: "
        f"{peak['peak_used_gflops']:.0f} GFLOP/s).{relative}", "",
        *table(["#", "engine", "settings", "ms/image", "images/s", "x fastest", "GFLOP/s", "% of matmul peak"], rows,
               "rllrrrrr"), "",
        f"- INT8 runs at {summary['int8_over_fp32']:.2f}x the float32 export's latency (7-bit weights: "
        f"{summary['int8_7bit_over_fp32']:.2f}x); target at most {summary['int8_target']}x: "
        f"{'met' if summary['int8_meets_target'] else 'not met'}.",
        f"- Fastest: {summary['fastest']}; fastest in float32: {summary['fastest_float32']}. The best JAX setting "
        f"({summary['best_jax']}) takes {summary['best_jax_ratio_to_fastest_float32']:.2f}x the fastest float32 "
        f"engine's time.",
        f"- A plain ONNX Runtime loop over the float32 file ({agree['plain_warmup']} warm-up then "
        f"{agree['plain_runs']} back-to-back runs, median), before and after the protocol's timing: "
        f"{agree['ratio_before']:.3f} and "
        f"{agree['ratio_after']:.3f} of the protocol's figure (within {agree['tolerance']:.0%}: "
        f"{'yes' if agree['within_tolerance'] else 'no'}).", *(f"- {note}" for note in d["notes"]), "",
        f"XLA_FLAGS candidates, each in a fresh process (the best is row {best} above):", "",
        *table(["setting", "XLA_FLAGS", "BN folded", "ms/image"], candidates, "lllr"), "",
        *provenance_lines(d["provenance"]), ""]


def speed_vs_pytorch(d: dict) -> list[str]:
    peak, a = d["matmul_peak_gflops"], d["args"]
    rows = [[r["task"].replace("_", " "), r["variant"], f"{r['seconds'] * 1e3:.1f}",
             f"{r['compile_seconds']:.1f}" if "compile_seconds" in r else "-", f"{r['gflops_per_second']:.0f}",
             peak_share(r["gflops_per_second"], peak)] for r in d["rows"]]
    rows += [[f"`{r['worker']}`", f"crashed (exit code {r['exit_code']})", "-", "-", "-", "-"]
             for r in d["failed_workers"]]
    sums = [f"- {task.replace('_', ' ')}: the best JAX variant ({s['best_jax']}) is "
            f"{s['speedup_vs_torch_default']:.2f}x as fast as PyTorch eager as it runs by default (NCHW) and "
            f"{s['speedup_vs_best_torch']:.2f}x as fast as the best PyTorch variant ({s['best_torch']})."
            for task, s in d["summary"].items()]
    return [
        "## JAX and PyTorch, same machine, same run", "",
        f"GENet-normal inference (batch {a['batch']}, {a['resolution']}x{a['resolution']}, float32, eval mode) and "
        f"one SGD training step of GENet-light (batch {a['train_batch']}: forward, backward, update), each "
        f"framework in its own process, by the paper's protocol ({a['runs']} timed runs, top and bottom 10% "
        f"dropped, the mean). JAX {d['jax']}, torch {d['torch']} ({d['torch_threads']} threads). GFLOP/s is 2 x "
        f"multiply-adds per second, a training step counted as 3x the forward; the float32 matmul peak measured "
        f"in the same run: {peak:.0f} GFLOP/s.", "",
        *table(["task", "variant", "ms per batch", "compile (s)", "GFLOP/s", "% of matmul peak"], rows, "llrrrr"),
        "", *sums, "", *provenance_lines(d["provenance"]), ""]


def xla_cpu_options(d: dict) -> list[str]:
    base = d["rows"][0]["ms_per_image"]
    rows = [[r["setting"], f"`{r['xla_flags'] or ' '.join(r['args'])}`" if r["xla_flags"] or r["args"] else "-",
             f"{r['ms_per_image']:.2f}" if "ms_per_image" in r else "failed",
             f"{base / r['ms_per_image']:.2f}x" if "ms_per_image" in r else ""] for r in d["rows"]]
    return [
        "## XLA:CPU options for inference", "",
        f"`{d['arch']}`, batch {d['batch']}, {d['resolution']}x{d['resolution']}: each setting runs the latency "
        f"probe (`python -m genet_jax.latency`, {d['runs']} runs, the paper's protocol) in a fresh process with its "
        "XLA_FLAGS, since XLA reads them when it starts. A flag that speeds up the forward can slow the training "
        "step, so none is made a default: set one for CPU inference and latency probes.", "",
        *table(["setting", "XLA_FLAGS / options", "ms/image", "vs default"], rows, "llrr"), "",
        *provenance_lines(d["provenance"]), ""]


def bn_statistics(d: dict) -> list[str]:
    rows = [[r["bn_statistics"], r["variance"], f"{r['ms_per_step']:.1f}", f"{r['ratio_to_per_device_two_pass']:.2f}x",
             r["all_reduces"]] for r in d["rows"]]
    return [
        "## BN statistics in the training step", "",
        "What BN's batch statistics cost in the trainer's step: per-device statistics (PyTorch DDP's, the "
        "paper's) against statistics averaged over every device (`config.bn_statistics = \"global\"`), each with "
        "the two-pass variance the trainer uses and with E[x^2] - E[x]^2. "
        f"{d['devices']} host CPU devices, global batch {d['global_batch']}, network {d['network']}; {d['runs']} "
        f"timed steps per setting in {d['rounds']} turns. On CPU devices an all-reduce is a memory copy, so "
        "these ratios show XLA's work, not a GPU interconnect's.", "",
        *table(["BN statistics", "variance", "ms/step", "vs per-device two-pass", "all-reduces in the step"], rows,
               "llrrr"), "", *provenance_lines(d["provenance"]), ""]


def cpu_page(results: Results) -> str:
    sources = CPU_SOURCES
    sections = (cpu_engines, speed_vs_pytorch, xla_cpu_options, bn_statistics)
    body = ["Inference and training speed on a CPU: every engine the project offers, JAX against PyTorch, "
            "XLA:CPU's options, and the cost of BN's batch statistics. Each section names the machine it ran on.", ""]
    for section, source in zip(sections, sources):
        body += section(results.load(source))
    return page("CPU speed", sources, body)


# ---- input pipeline, deployment -----------------------------------------------------------------------
GPU_IMAGES_PER_SECOND = (2000, 4000, 8000)
EXAMPLE_GPUS = 8


def best_per_augmentation(rows: list[dict]) -> dict[str, dict]:
    """augmentation -> its fastest configuration's row."""
    best = {}
    for r in rows:
        if r["images_per_second"] > best.get(r["augment"], {}).get("images_per_second", 0):
            best[r["augment"]] = r
    return best


def input_page(results: Results) -> str:
    d = results.load(INPUT_SOURCES[0])
    img, proto, m, best = d["images"], d["protocol"], d["machine"], best_per_augmentation(d["rows"])

    def mark(r: dict, text: str) -> str:
        return f"**{text}**" if best[r["augment"]] is r else text

    rows = [[r["augment"], r["mode"], f"{r['worker_count']} x {r['num_threads']}",
             mark(r, f"{r['images_per_second']:.0f}"), mark(r, f"{r['images_per_second_per_core']:.0f}"),
             f"{r['x_threads']:.2f}x"] for r in d["rows"]]
    need = [[aug, f"{r['mode']} {r['worker_count']} x {r['num_threads']}", f"{r['images_per_second_per_core']:.0f}",
             *(f"{rate / r['images_per_second_per_core']:.1f}" for rate in GPU_IMAGES_PER_SECOND)]
            for aug, r in best.items()]
    example = " and ".join(f"{EXAMPLE_GPUS * GPU_IMAGES_PER_SECOND[0] / r['images_per_second_per_core']:.0f} cores "
                           f"for {aug}" for aug, r in best.items())
    sizes = ", ".join(f"{size} ({share:.0%})" for size, share in img["sizes"].items())
    body = [
        f"The ImageNet recipe's host side for `{d['arch']}`: JPEG decoding, random-resized crop and flip, with and "
        "without AutoAugment, in threads of the training process (`data.worker_count` 0) and in grain worker "
        f"processes (`data.worker_count` 1, 2, ...; `data.num_threads` each). On {img['count']} generated JPEGs of "
        f"ImageNet's typical sizes ({sizes}; {img['mean_kb']:.0f} KB on average at quality {img['quality']}), read "
        f"from the page cache, so this measures the CPU, not the disk. Per-host batch {d['batch']}; per "
        f"configuration {proto['warmup_runs']} warm-up runs, then {proto['runs']} timed runs, top and bottom "
        f"{proto['trim']:.0%} dropped, the {proto['statistic']}. Per core: over the {m['usable_cores']} cores the "
        f"process may use. grain {m['grain']}, Pillow {m['pillow']}.", "",
        *table(["augmentation", "pipeline", "workers x threads", "images/s", "images/s per core", "vs threads"], rows,
               "lllrrr"), "",
        "Threads already decode JPEGs in parallel (Pillow releases the GIL); AutoAugment's Python-level work does "
        "not, so worker processes help more there. On a GPU node the training process needs the host too "
        "(dispatch, host-to-device copies), and workers keep the input work out of its GIL.", "",
        "## Cores per GPU", "",
        "The cores one GPU needs for decoding and augmentation alone at the best configuration's images/s per core "
        "(the training process's own host work comes on top); read the column nearest the training speed your GPU "
        "reaches (the GPU report measures it):", "",
        *table(["augmentation", "best configuration", "images/s per core",
                *(f"cores at {rate:,} images/s per GPU" for rate in GPU_IMAGES_PER_SECOND)], need, "llrrrr"), "",
        f"For example, {EXAMPLE_GPUS} GPUs at {GPU_IMAGES_PER_SECOND[0]:,} images/s each need about {example}, "
        "or decoding moved off the host. Pillow's decoding speed scales with the core's.", "",
        *provenance_lines(d["provenance"])]
    return page("Input pipeline", INPUT_SOURCES, body)


def deployment_page(results: Results) -> str:
    d, engines = (results.load(name) for name in DEPLOYMENT_SOURCES)
    engines = engines["summary"]
    names = {"jax": "JAX checkpoint", "onnxruntime_float32": "ONNX float32, ONNX Runtime",
             "onnxruntime_int8": "ONNX INT8, ONNX Runtime"}
    rows = [[label, pct(d[key]["top1"]), pct(d[key]["top5"]), f"{d[key]['loss']:.4f}", f"{d[key]['count']:,}"]
            for key, label in names.items()]
    body = [
        "What INT8 costs in accuracy: one trained checkpoint evaluated on its test split as the JAX model, as its "
        "float32 ONNX export and as its static QDQ INT8 export, each with the same preprocessing and metrics "
        "(`python -m genet_jax.evaluate`). The checkpoint: `configs/cifar10.py`'s first network "
        f"(`CIFAR_GENET_SMALL`, no EMA) after {os.path.basename(d['jax']['checkpoint'])} steps, scored with flip "
        f"test-time augmentation; INT8 calibrated on {d['calibration_images']} training images.", "",
        *table(["model", "top-1", "top-5", "loss", "images"], rows, "lrrrr"), "",
        f"INT8 - float32: {d['int8_change_points']:+.2f} points of top-1 (within the 1-point target: "
        f"{'yes' if d['within_target'] else 'no'}).", "", *provenance_lines(d["provenance"]), "",
        f"Speed: on the CPU of the [CPU page](cpu.md), the INT8 export runs at {engines['int8_over_fp32']:.2f}x the "
        "float32 export's latency.", ""]
    return page("Deployment: INT8 accuracy", DEPLOYMENT_SOURCES, body)
