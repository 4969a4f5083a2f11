"""Every inference engine this project offers, on this CPU, in one run and by one protocol (the
CPU latency protocol of genet_jax.latency.timing: warm-up, timed runs each ending synchronised,
top and bottom 10% dropped, the fastest of CPU_PROTOCOL.rounds rounds): GENet-normal, batch 64,
192x192, float32 inference (weights random: latency does not depend on their values).

    python benchmarks/cpu_engines.py [--arch genet_normal] [--batch 64] [--resolution 192] [--runs 30]
                                     [--rounds N] [--quick] [--out PATH]

Rows:
  1. JAX, this project's probe (probe_latency; conv_impl "auto").
  2. JAX with BN folded (probe_latency(..., fold_bn=True)).
  3. JAX with the best XLA_FLAGS of a candidate list (XLA_CANDIDATES: YNNPACK off, with BN folding,
     with oneDNN fusions), each probed in a fresh `python -m genet_jax.latency --json` process,
     since XLA reads XLA_FLAGS when it starts; every candidate is kept in the JSON.
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
import os
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import onnxruntime  # noqa: E402
import torch  # noqa: E402

from benchmarks.cpu_engine_rows import (AGREEMENT_TOLERANCE, CALIBRATION_BATCH, CALIBRATION_BATCHES,  # noqa: E402
                                        jax_rows, onnx_rows, torch_rows, xla_rows)
from benchmarks.machine import MATMUL_SIZE, machine_info, matmul_peaks, provenance, save_result  # noqa: E402
from genet_jax.arch.counting import spec_macs  # noqa: E402
from genet_jax.arch.registry import resolve_spec  # noqa: E402
from genet_jax.latency.probes import model_timing_variables  # noqa: E402
from genet_jax.latency.timing import CPU_PROTOCOL, PAPER_TRIM  # noqa: E402
from genet_jax.models.network import create_model  # noqa: E402

DEFAULT_OUT = os.path.join(REPO, "benchmarks", "results", "cpu_engines.json")
QUICK_OUT = os.path.join(tempfile.gettempdir(), "cpu_engines_quick.json")
QUICK = {"arch": "genet_light", "batch": 4, "resolution": 64, "runs": 3, "rounds": 1}

YNN_OFF = "--xla_cpu_experimental_ynn_fusion_type="
ONEDNN_FUSIONS = "--xla_cpu_experimental_onednn_fusion_type=individual_convolution,individual_dot"
# The XLA:CPU settings worth a subprocess each: benchmarks/xla_cpu_options.py measured the others
# (XNNPACK or oneDNN fusions alone, fast math, bfloat16) within 2% of the default on GENet-normal.
XLA_CANDIDATES = [  # (label, XLA_FLAGS, fold BN)
    ("YNNPACK off", YNN_OFF, False),
    ("YNNPACK off + BN folded", YNN_OFF, True),
    ("YNNPACK off + oneDNN fusions + BN folded", f"{YNN_OFF} {ONEDNN_FUSIONS}", True),
]
QUICK_XLA_CANDIDATES = [("YNNPACK off", YNN_OFF, False)]

GOAL_RATIO = 1.1  # the best project engine within this factor of the fastest
INT8_TARGET = 0.55  # INT8 latency at most this fraction of float32's
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
        # every row is a way the project offers to run the network (JAX, its torch module, its ONNX
        # export), so the fastest row is also the best the project offers
        "fastest_is_offered_by_the_project": True,
        "best_jax": best_jax["row"], "best_jax_ratio_to_fastest": best_jax["ratio_to_fastest"],
        "best_jax_ratio_to_fastest_float32": best_jax["seconds_per_batch"] / fastest_float32["seconds_per_batch"],
        "int8_over_fp32": int8 / fp32, "int8_7bit_over_fp32": int8_7bit / fp32, "int8_target": INT8_TARGET,
        "int8_meets_target": int8 / fp32 <= INT8_TARGET, "agreement_within_tolerance": agreement["within_tolerance"],
    }


def print_summary(summary: dict, agreement: dict) -> None:
    print(f"\nfastest: {summary['fastest']}; fastest float32: {summary['fastest_float32']}")
    print(f"every row is a way this project runs the network: the best it offers is the fastest, {summary['fastest']}")
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
    machine = machine_info(torch=torch.__version__, torch_threads=torch.get_num_threads(),
                           onnxruntime=onnxruntime.__version__)
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
              "summary": summary, "notes": NOTES, "provenance": provenance(machine)}
    save_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
