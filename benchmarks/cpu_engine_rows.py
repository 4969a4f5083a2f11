"""The rows of benchmarks/cpu_engines.py: each engine this project offers, timed by the CPU
latency protocol (JAX in this process and with XLA_FLAGS in subprocesses, the project's torch
module, ONNX Runtime on the project's exports), plus the plain ONNX Runtime loop it is checked
against. A row is a dict with the seconds per batch; cpu_engines.py adds the rates."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import onnxruntime
import torch

from genet_jax.interop.onnx_quantize import quantize_int8
from genet_jax.interop.onnx_runtime import CPU_PROVIDER
from genet_jax.interop.torch_model import TorchGENet
from genet_jax.latency import probe_latency
from genet_jax.latency.onnxruntime_probe import export_for_timing, time_onnx_files
from genet_jax.latency.timing import CPU_PROTOCOL, ProbeSettings, time_calls

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CALIBRATION_BATCHES = 8
CALIBRATION_BATCH = 16
PLAIN_WARMUP = 5
AGREEMENT_TOLERANCE = 0.10  # plain ONNX Runtime loop vs the protocol's float32 number


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
    """Row 3: every candidate probed in its own process; the row is the fastest of them (all are
    kept in the JSON)."""
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
