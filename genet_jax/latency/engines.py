"""One entry point for a latency on any engine the project offers: `probe_on(engine, arch, ...)`
runs the JAX probe (genet_jax.latency.probes) or the ONNX Runtime probe
(genet_jax.latency.onnxruntime_probe) by the same protocol, with the same result type. The
command line, the batch sweep and block profiling take `--engine` through it."""
from __future__ import annotations

import argparse
from typing import Any, Optional, Union

from genet_jax.interop.onnx_runtime import CPU_PROVIDER
from genet_jax.latency.onnxruntime_probe import probe_onnxruntime
from genet_jax.latency.probes import LatencyResult, probe_latency
from genet_jax.latency.timing import ENGINES, PAPER_RUNS


def probe_on(engine: str, arch: Union[str, Any], batch: int = 64, resolution: Optional[int] = None,
             dtype: str = "float32", *, fold_bn: bool = False, conv_impl: str = "auto", runs: int = PAPER_RUNS,
             warmup: Optional[int] = None, rounds: Optional[int] = None, provider: Optional[str] = None,
             variables: Optional[dict] = None, name: Optional[str] = None) -> LatencyResult:
    """Latency of a network on `engine`. ONNX Runtime runs the network as exported (BN folded;
    float32 or float16 weights; ProbeSettings rejects another dtype), so `fold_bn`, `conv_impl` and
    `variables` are JAX's alone."""
    if engine == "jax":
        return probe_latency(arch, batch, resolution, dtype, fold_bn, conv_impl, runs, warmup,
                             variables=variables, name=name, rounds=rounds)
    if engine != "onnxruntime":
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    return probe_onnxruntime(arch, batch, resolution, dtype, runs, warmup, rounds=rounds, provider=provider,
                             name=name)


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """--engine and --provider, as every latency tool takes them."""
    parser.add_argument("--engine", choices=ENGINES, default="jax",
                        help="jax (XLA), or onnxruntime: the network exported to ONNX as deployed (BN folded; "
                             "--fold-bn and --conv-impl do not apply; bfloat16 is not offered)")
    parser.add_argument("--provider", default=CPU_PROVIDER,
                        help="onnxruntime: the execution provider (CPUExecutionProvider, CUDAExecutionProvider, "
                             "TensorrtExecutionProvider where installed)")
