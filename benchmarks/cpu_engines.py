"""Every inference engine this project offers, on this CPU, in one run and by one protocol (the
CPU latency protocol of genet_jax.latency.timing: warm-up, timed runs each ending synchronised,
top and bottom 10% dropped, the fastest of CPU_PROTOCOL.rounds rounds): GENet-normal, batch 64,
192x192, float32 inference (weights random: latency does not depend on their values).

    python benchmarks/cpu_engines.py [--arch genet_normal] [--batch 64] [--resolution 192] [--runs 30]
                                     [--rounds N] [--quick] [--out PATH]

Rows:
  1. JAX, this project's probe (probe_latency; conv_impl "auto").
  2. JAX with BN folded (probe_latency(..., fold_bn=True)).
  3. JAX with the best XLA_FLAGS of a candidate list (YNNPACK off, XNNPACK / oneDNN fusions, each
     with and without BN folding), each probed in a fresh `python -m genet_jax.latency --json`
     process, since XLA reads XLA_FLAGS when it starts; every candidate is kept in the JSON.
  4. The project's torch module (TorchGENet.from_variables, eval, inference_mode): eager NCHW,
     channels_last, and BN-folded channels_last, rounds interleaved.
  5. ONNX Runtime (CPU provider) on the project's export: float32, float16, static QDQ INT8 and INT8
     with 7-bit weights (reduce_range), all four timed in one time_onnx_files call, rounds interleaved.
     INT8 is calibrated on random standard-normal images: latency does not depend on the ranges.
Also: a plain ONNX Runtime loop (warm-up, back-to-back runs, median) on the float32 file before and
after the protocol's timing, as an agreement check; the float32 matmul peak (jitted jnp.dot and
numpy); the machine (CPU model, AVX-512 / VNNI / AVX2, cores, versions).

Writes benchmarks/results/cpu_engines.json (with --quick, by default a file in the temporary
directory, so the committed result stays) and prints a table: ms/image, images/s, ratio to the
fastest, GFLOP/s (2 x MACs / seconds) and % of the measured float32 matmul peak.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import onnxruntime  # noqa: E402
import torch  # noqa: E402

from genet_jax.arch.counting import spec_macs  # noqa: E402
from genet_jax.arch.registry import resolve_spec  # noqa: E402
from genet_jax.interop.onnx_quantize import quantize_int8  # noqa: E402
from genet_jax.interop.onnx_runtime import CPU_PROVIDER  # noqa: E402
from genet_jax.interop.torch_model import TorchGENet  # noqa: E402
from genet_jax.latency import probe_latency  # noqa: E402
from genet_jax.latency.onnxruntime_probe import export_for_timing, time_onnx_files  # noqa: E402
from genet_jax.latency.probes import model_timing_variables  # noqa: E402
from genet_jax.latency.timing import CPU_PROTOCOL, PAPER_TRIM, ProbeSettings, time_calls, time_runs  # noqa: E402
from genet_jax.models.network import create_model  # noqa: E402

DEFAULT_OUT = os.path.join(REPO, "benchmarks", "results", "cpu_engines.json")
QUICK_OUT = os.path.join(tempfile.gettempdir(), "cpu_engines_quick.json")
QUICK = {"arch": "genet_light", "batch": 4, "resolution": 64, "runs": 3, "rounds": 1}

YNN_OFF = "--xla_cpu_experimental_ynn_fusion_type="
XNN_FUSIONS = "--xla_cpu_experimental_xnn_fusion_type=individual_convolution,individual_dot"
ONEDNN_FUSIONS = "--xla_cpu_experimental_onednn_fusion_type=individual_convolution,individual_dot"
FLAG_SETS = [  # (label, XLA_FLAGS); "no flags" is the same-conditions baseline of the subprocess probes
    ("no flags", ""),
    ("YNNPACK off", YNN_OFF),
    ("XNNPACK fusions (conv, dot)", XNN_FUSIONS),
    ("oneDNN fusions (conv, dot)", ONEDNN_FUSIONS),
    ("YNNPACK off + oneDNN fusions", f"{YNN_OFF} {ONEDNN_FUSIONS}"),
]
XLA_CANDIDATES = [(label + (" + BN folded" if fold else ""), flags, fold)
                  for label, flags in FLAG_SETS for fold in (False, True)]
QUICK_XLA_CANDIDATES = [("YNNPACK off", YNN_OFF, False)]

CALIBRATION_BATCHES = 8
CALIBRATION_BATCH = 16
PLAIN_WARMUP = 5
MATMUL_SIZE = 2048
MATMUL_RUNS = 10
MATMUL_WARMUP = 2
GOAL_RATIO = 1.1  # the best project engine within this factor of the fastest
INT8_TARGET = 0.55  # INT8 latency at most this fraction of float32's
AGREEMENT_TOLERANCE = 0.10  # plain ONNX Runtime loop vs the protocol's float32 number
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
NOTES = [
    "Weights are random (the project's timing variables) and INT8 is calibrated on random "
    "standard-normal images: latency does not depend on weight or calibration values.",
    "GFLOP/s counts 2 x multiply-adds of the float network for every row; for INT8 rows they are "
    "integer operations, so their % of the float32 matmul peak is not a like-for-like efficiency.",
    "JAX rows 1-2 and the torch and ONNX Runtime rows run in this process, one engine at a time; "
    "each XLA_FLAGS candidate runs in its own subprocess.",
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="genet_normal")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--resolution", type=int, default=192)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=None,
                        help=f"protocol rounds, fastest kept (default: the CPU protocol's {CPU_PROTOCOL.rounds})")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: " + ", ".join(f"{k} {v}" for k, v in QUICK.items())
                        + ", one XLA_FLAGS candidate, output to a temporary file")
    parser.add_argument("--out", default=None, help=f"default {DEFAULT_OUT} ({QUICK_OUT} with --quick)")
    args = parser.parse_args()
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    args.rounds = args.rounds or CPU_PROTOCOL.rounds
    args.out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
    for name in ("batch", "resolution", "runs", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    return args


def lscpu_fields() -> dict:
    """lscpu's 'Model name' and 'Flags' (from /proc/cpuinfo where lscpu is missing)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        with open("/proc/cpuinfo") as f:
            text = f.read().replace("model name", "Model name").replace("flags", "Flags")
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return {"model_name": fields.get("Model name", platform.processor()), "flags": fields.get("Flags", "").split()}


def machine_info() -> dict:
    cpu = lscpu_fields()
    return {
        "cpu_model": cpu["model_name"], "cpu_flags": {flag: flag in cpu["flags"] for flag in CPU_FLAGS},
        "cpu_count": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
        "jax": jax.__version__, "jaxlib": metadata.version("jaxlib"),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__, "jax_device": jax.devices()[0].device_kind,
        "xla_flags_env": os.environ.get("XLA_FLAGS", ""), "load_average_at_start": os.getloadavg(),
    }


def matmul_peaks(size: int = MATMUL_SIZE, runs: int = MATMUL_RUNS) -> dict:
    """Float32 matmul GFLOP/s, best of `runs`: a jitted jnp.dot, and numpy's (its BLAS)."""
    a = np.random.default_rng(0).standard_normal((size, size), np.float32)
    b = np.random.default_rng(1).standard_normal((size, size), np.float32)
    flops = 2 * size ** 3
    dot = jax.jit(jnp.dot)
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    jax_seconds = min(time_runs(lambda: dot(ja, jb), runs, MATMUL_WARMUP))
    numpy_seconds = min(time_runs(lambda: np.dot(a, b), runs, MATMUL_WARMUP, sync=lambda out: out))
    return {"size": size, "runs": runs, "jax_gflops": flops / jax_seconds / 1e9,
            "numpy_gflops": flops / numpy_seconds / 1e9}


def row(label: str, engine: str, seconds: float, **extra) -> dict:
    """One result row: `seconds` per batch; rates are added by `add_rates`."""
    print(f"  {label}: {seconds * 1e3:.1f} ms per batch", flush=True)
    return {"row": label, "engine": engine, "seconds_per_batch": seconds, **extra}


def jax_rows(args) -> list[dict]:
    """Rows 1-2: the project's probe in this process (XLA_FLAGS as in the environment)."""
    rows = []
    for label, fold in (("JAX default (conv_impl auto)", False), ("JAX, BN folded", True)):
        result = probe_latency(args.arch, args.batch, args.resolution, "float32", fold_bn=fold, conv_impl="auto",
                               runs=args.runs, rounds=args.rounds)
        rows.append(row(label, "jax", result.batch_ms / 1e3, conv_impl=result.conv_impl, fold_bn=fold,
                        compile_seconds=result.compile_seconds))
    return rows


def xla_probe(args, flags: str, fold: bool) -> dict:
    """`python -m genet_jax.latency --json` in a fresh process with `flags` added to XLA_FLAGS."""
    env = {**os.environ, "XLA_FLAGS": " ".join(filter(None, [os.environ.get("XLA_FLAGS", ""), flags]))}
    command = [sys.executable, "-m", "genet_jax.latency", "--arch", args.arch, "--batch", str(args.batch),
               "--resolution", str(args.resolution), "--runs", str(args.runs), "--rounds", str(args.rounds),
               "--dtype", "float32", "--json", *(["--fold-bn"] if fold else [])]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit code {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def xla_rows(args, candidates) -> tuple[list[dict], list[dict]]:
    """Row 3: every candidate probed in its own process; the row is the fastest candidate that sets
    XLA_FLAGS (the no-flags candidates are the same-conditions baseline, kept in the JSON)."""
    probed = []
    for label, flags, fold in candidates:
        result = xla_probe(args, flags, fold)
        entry = {"setting": label, "xla_flags": flags, "fold_bn": fold}
        if "error" in result:
            entry["error"] = result["error"]
            print(f"  XLA candidate {label}: failed: {result['error']}", flush=True)
        else:
            entry.update(seconds_per_batch=result["batch_ms"] / 1e3, ms_per_image=result["ms_per_image"],
                         compile_seconds=result["compile_seconds"], conv_impl=result["conv_impl"])
            print(f"  XLA candidate {label}: {result['batch_ms']:.1f} ms per batch", flush=True)
        probed.append(entry)
    flagged = [c for c in probed if c["xla_flags"] and "error" not in c]
    if not flagged:
        return [], probed
    best = min(flagged, key=lambda c: c["seconds_per_batch"])
    label = f"JAX, best XLA_FLAGS: {best['setting']}"
    return [row(label, "jax (XLA_FLAGS)", best["seconds_per_batch"], xla_flags=best["xla_flags"],
                fold_bn=best["fold_bn"], conv_impl=best["conv_impl"],
                compile_seconds=best["compile_seconds"])], probed


def torch_rows(args, spec, variables) -> list[dict]:
    """Row 4: the project's torch module, eager, three layouts, rounds interleaved (time_calls is
    time_runs + trimmed_mean, fastest of the rounds)."""
    channels_last = torch.channels_last
    images = torch.from_numpy(np.random.default_rng(0).standard_normal(
        (args.batch, spec.in_channels, spec.resolution, spec.resolution), np.float32))
    modules = [
        ("PyTorch eager, NCHW", TorchGENet.from_variables(spec, variables), images),
        ("PyTorch eager, channels_last", TorchGENet.from_variables(spec, variables).to(memory_format=channels_last),
         images.to(memory_format=channels_last)),
        ("PyTorch eager, BN folded, channels_last",
         TorchGENet.from_variables(spec, variables).fold_bn().to(memory_format=channels_last),
         images.to(memory_format=channels_last)),
    ]
    calls = [(lambda m=module, x=inputs: m(x)) for _, module, inputs in modules]
    settings = ProbeSettings(batch=args.batch, dtype="float32", runs=args.runs, rounds=args.rounds,
                             warmup=CPU_PROTOCOL.warmup)
    with torch.inference_mode():
        seconds = time_calls(calls, settings, sync=lambda out: out)
    return [row(label, "torch", s, threads=torch.get_num_threads()) for (label, _, _), s in zip(modules, seconds)]


def calibration_batches(spec, count: int = CALIBRATION_BATCHES, size: int = CALIBRATION_BATCH):
    """Random standard-normal float32 NCHW batches: calibration values do not change latency."""
    rng = np.random.default_rng(0)
    for _ in range(count):
        yield rng.standard_normal((size, spec.in_channels, spec.resolution, spec.resolution), np.float32)


def onnx_files(args, spec, scratch: str) -> list[tuple[str, str, str]]:
    """(label, dtype, path) of the project's export: float32, float16, INT8, INT8 with 7-bit weights."""
    fp32 = export_for_timing(args.arch, os.path.join(scratch, "fp32.onnx"), args.resolution, "float32")
    fp16 = export_for_timing(args.arch, os.path.join(scratch, "fp16.onnx"), args.resolution, "float16")
    print("  exported float32 and float16; quantizing (calibration on random images)", flush=True)
    int8 = quantize_int8(fp32, os.path.join(scratch, "int8.onnx"), calibration_batches(spec))
    int8_7bit = quantize_int8(fp32, os.path.join(scratch, "int8_7bit.onnx"), calibration_batches(spec),
                              reduce_range=True)
    return [("ONNX Runtime fp32", "float32", fp32), ("ONNX Runtime fp16", "float16", fp16),
            ("ONNX Runtime INT8", "int8", int8), ("ONNX Runtime INT8, 7-bit weights", "int8 (7-bit)", int8_7bit)]


def plain_loop(path: str, shape, runs: int, warmup: int = PLAIN_WARMUP) -> float:
    """Median seconds of `runs` back-to-back session.run calls after `warmup`: no protocol."""
    session = onnxruntime.InferenceSession(path, providers=[CPU_PROVIDER])
    feed = {session.get_inputs()[0].name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    for _ in range(warmup):
        session.run(None, feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def onnx_rows(args, spec, scratch: str) -> tuple[list[dict], dict]:
    """Row 5 (all files in one time_onnx_files call) and the plain-loop agreement check around it."""
    files = onnx_files(args, spec, scratch)
    shape = (args.batch, spec.in_channels, spec.resolution, spec.resolution)
    plain_before = plain_loop(files[0][2], shape, args.runs)
    print(f"  plain ONNX Runtime loop, fp32, before: {plain_before * 1e3:.1f} ms per batch", flush=True)
    settings = ProbeSettings(batch=args.batch, dtype="float32", runs=args.runs, rounds=args.rounds,
                             engine="onnxruntime")
    seconds, version = time_onnx_files([path for _, _, path in files], [shape] * len(files), settings)
    rows = [row(label, "onnxruntime", s, weights=dtype, engine_version=version)
            for (label, dtype, _), s in zip(files, seconds)]
    plain_after = plain_loop(files[0][2], shape, args.runs)
    print(f"  plain ONNX Runtime loop, fp32, after: {plain_after * 1e3:.1f} ms per batch", flush=True)
    protocol = seconds[0]
    agreement = {"protocol_fp32_seconds": protocol, "plain_runs": args.runs, "plain_warmup": PLAIN_WARMUP,
                 "plain_before_seconds": plain_before, "plain_after_seconds": plain_after,
                 "ratio_before": plain_before / protocol, "ratio_after": plain_after / protocol,
                 "tolerance": AGREEMENT_TOLERANCE}
    agreement["within_tolerance"] = all(abs(agreement[k] - 1) <= AGREEMENT_TOLERANCE
                                        for k in ("ratio_before", "ratio_after"))
    return rows, agreement


def add_rates(rows: list[dict], macs: int, batch: int, peak_gflops: float) -> None:
    fastest = min(r["seconds_per_batch"] for r in rows)
    for r in rows:
        gflops = 2 * macs * batch / r["seconds_per_batch"] / 1e9
        r.update(ms_per_image=r["seconds_per_batch"] * 1e3 / batch, images_per_second=batch / r["seconds_per_batch"],
                 ratio_to_fastest=r["seconds_per_batch"] / fastest, gflops_per_second=gflops,
                 percent_of_matmul_peak=100 * gflops / peak_gflops)


def print_table(rows: list[dict]) -> None:
    print("\n| # | engine | ms/image | images/s | x fastest | GFLOP/s | % of fp32 matmul peak |")
    print("|---|---|---|---|---|---|---|")
    for i, r in enumerate(rows, 1):
        print(f"| {i} | {r['row']} | {r['ms_per_image']:.3f} | {r['images_per_second']:.1f} | "
              f"{r['ratio_to_fastest']:.2f}x | {r['gflops_per_second']:.1f} | {r['percent_of_matmul_peak']:.1f}% |")


def summarize(rows: list[dict], agreement: dict) -> dict:
    by_label = {r["row"]: r for r in rows}
    fastest = min(rows, key=lambda r: r["seconds_per_batch"])
    fastest_float32 = min((r for r in rows if r.get("weights", "float32") == "float32"),
                          key=lambda r: r["seconds_per_batch"])
    best_jax = min((r for r in rows if r["engine"].startswith("jax")), key=lambda r: r["seconds_per_batch"])
    fp32 = by_label["ONNX Runtime fp32"]["seconds_per_batch"]
    int8 = by_label["ONNX Runtime INT8"]["seconds_per_batch"]
    int8_7bit = by_label["ONNX Runtime INT8, 7-bit weights"]["seconds_per_batch"]
    return {
        "fastest": fastest["row"], "fastest_float32": fastest_float32["row"],
        "best_project_engine": fastest["row"], "best_project_engine_ratio_to_fastest": 1.0,
        "goal_best_project_engine_within_1_1x": True,  # every row is a project engine
        "best_jax": best_jax["row"], "best_jax_ratio_to_fastest": best_jax["ratio_to_fastest"],
        "best_jax_ratio_to_fastest_float32": best_jax["seconds_per_batch"] / fastest_float32["seconds_per_batch"],
        "int8_over_fp32": int8 / fp32, "int8_7bit_over_fp32": int8_7bit / fp32, "int8_target": INT8_TARGET,
        "int8_meets_target": int8 / fp32 <= INT8_TARGET, "agreement_within_tolerance": agreement["within_tolerance"],
    }


def print_summary(summary: dict, agreement: dict) -> None:
    print(f"\nfastest: {summary['fastest']}; fastest float32: {summary['fastest_float32']}")
    print(f"best project engine within {GOAL_RATIO}x of the fastest: yes, every row is a project engine and "
          f"the fastest is {summary['best_project_engine']} (1.00x)")
    print(f"best JAX row: {summary['best_jax']}, {summary['best_jax_ratio_to_fastest']:.2f}x the fastest, "
          f"{summary['best_jax_ratio_to_fastest_float32']:.2f}x the fastest float32 row "
          f"({'within' if summary['best_jax_ratio_to_fastest_float32'] <= GOAL_RATIO else 'outside'} {GOAL_RATIO}x)")
    print(f"ONNX Runtime INT8 / fp32 latency: {summary['int8_over_fp32']:.2f}x (7-bit weights: "
          f"{summary['int8_7bit_over_fp32']:.2f}x); target <= {INT8_TARGET}x: "
          f"{'met' if summary['int8_meets_target'] else 'NOT met'}")
    print(f"plain ONNX Runtime loop (median) / protocol fp32: before {agreement['ratio_before']:.3f}, after "
          f"{agreement['ratio_after']:.3f}; within {AGREEMENT_TOLERANCE:.0%}: "
          f"{'yes' if agreement['within_tolerance'] else 'NO'}")


def measure(args, spec) -> tuple[list[dict], list[dict], dict]:
    """All rows in order, the XLA_FLAGS candidates, and the agreement check."""
    print("JAX in this process:", flush=True)
    rows = jax_rows(args)
    print("JAX with XLA_FLAGS, one subprocess per candidate:", flush=True)
    flagged, candidates = xla_rows(args, QUICK_XLA_CANDIDATES if args.quick else XLA_CANDIDATES)
    rows += flagged
    print(f"PyTorch ({torch.get_num_threads()} threads):", flush=True)
    variables = model_timing_variables(create_model(spec, conv_impl="lax"))
    rows += torch_rows(args, spec, variables)
    print("ONNX Runtime (CPU provider), the project's export:", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        onnx, agreement = onnx_rows(args, spec, scratch)
    return rows + onnx, candidates, agreement


def main() -> int:
    args = parse_args()
    spec = resolve_spec(args.arch, resolution=args.resolution)
    machine = machine_info()
    print(f"{machine['cpu_model']}, {machine['cpu_count']} CPUs, "
          + ", ".join(f"{flag} {'yes' if present else 'no'}" for flag, present in machine["cpu_flags"].items())
          + f"; JAX {machine['jax']}, torch {machine['torch']}, onnxruntime {machine['onnxruntime']}", flush=True)
    print(f"{args.arch}, batch {args.batch}, {spec.resolution}x{spec.resolution}, float32; {args.runs} runs, "
          f"warm-up {CPU_PROTOCOL.warmup}, trim {PAPER_TRIM}, fastest of {args.rounds} rounds", flush=True)
    peaks = matmul_peaks()
    print(f"float32 matmul peak ({MATMUL_SIZE}^2): jitted jnp.dot {peaks['jax_gflops']:.0f} GFLOP/s, "
          f"numpy {peaks['numpy_gflops']:.0f} GFLOP/s", flush=True)
    rows, candidates, agreement = measure(args, spec)
    macs = spec_macs(spec)
    add_rates(rows, macs, args.batch, peaks["jax_gflops"])
    print_table(rows)
    summary = summarize(rows, agreement)
    print_summary(summary, agreement)
    machine["load_average_at_end"] = os.getloadavg()
    protocol = {"runs": args.runs, "warmup": CPU_PROTOCOL.warmup, "trim": PAPER_TRIM, "rounds": args.rounds,
                "statistic": "trimmed mean per round, fastest round"}
    result = {"arch": args.arch, "batch": args.batch, "resolution": spec.resolution, "dtype": "float32",
              "macs_per_image": macs, "quick": args.quick, "protocol": protocol, "machine": machine,
              "matmul_peak": {**peaks, "peak_used_gflops": peaks["jax_gflops"], "peak_used": "jitted jnp.dot"},
              "rows": rows, "xla_flag_candidates": candidates, "onnxruntime_agreement": agreement,
              "calibration": {"batches": CALIBRATION_BATCHES, "batch": CALIBRATION_BATCH,
                              "images": "random standard-normal float32 NCHW"},
              "summary": summary, "notes": NOTES}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
