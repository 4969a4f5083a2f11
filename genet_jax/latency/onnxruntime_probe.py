"""Latency on ONNX Runtime by the same protocol as the JAX probe: the network exported as it would
be deployed (genet_jax.interop.onnx_export: BN folded, float32 NCHW input, float32 or float16
weights), one InferenceSession on the chosen execution provider, warm-up runs, then 30 timed runs,
top and bottom 10% dropped, the fastest of `rounds` rounds. ONNX Runtime's `run` returns when the
outputs are on the host, so each timed call ends synchronised."""
from __future__ import annotations

import os
import tempfile
import time
from typing import Any, Callable, Optional, Union

import numpy as np

from genet_jax.arch.counting import spec_macs, spec_params
from genet_jax.arch.registry import resolve_spec
from genet_jax.interop.onnx_export import export_onnx
from genet_jax.latency.probes import LatencyResult, model_timing_variables, result_name
from genet_jax.latency.timing import PAPER_RUNS, PAPER_TRIM, current_device, platform_protocol, time_runs, trimmed_mean
from genet_jax.models.network import create_model
from genet_jax.optional import require

CPU_PROVIDER = "CPUExecutionProvider"
ENGINES = ("jax", "onnxruntime")


def provider_platform(provider: str) -> str:
    """The protocol's platform for an execution provider: 'cpu' for ONNX Runtime's CPU provider,
    'gpu' for CUDA / TensorRT / others (the accelerator protocol)."""
    return "cpu" if provider == CPU_PROVIDER else "gpu"


def onnxruntime_session(path: str, provider: str = CPU_PROVIDER):
    ort = require("onnxruntime", "ONNX Runtime latency")
    available = ort.get_available_providers()
    if provider not in available:
        raise ValueError(f"ONNX Runtime provider {provider!r} is not available here; available: {available}")
    return ort, ort.InferenceSession(path, providers=[provider])


def probe_onnxruntime(arch: Union[str, Any], batch: int = 64, resolution: Optional[int] = None,
                      dtype: str = "float32", runs: int = PAPER_RUNS, warmup: Optional[int] = None,
                      trim: float = PAPER_TRIM, rounds: Optional[int] = None, provider: str = CPU_PROVIDER,
                      timer: Callable[[], float] = time.perf_counter, name: Optional[str] = None) -> LatencyResult:
    """Forward latency of a network on ONNX Runtime (random weights: latency does not depend on them).
    `warmup` / `rounds` default to the protocol of the provider's platform."""
    spec = resolve_spec(arch, resolution=resolution)
    protocol = platform_protocol(provider_platform(provider))
    warmup = protocol.warmup if warmup is None else warmup
    rounds = protocol.rounds if rounds is None else rounds
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    variables = model_timing_variables(create_model(spec, conv_impl="lax"))
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        path = export_onnx(spec, variables, os.path.join(scratch, "net.onnx"), dtype=dtype)
        ort, session = onnxruntime_session(path, provider)
        compile_seconds = time.perf_counter() - started
        images = np.random.default_rng(0).standard_normal((batch, spec.in_channels, spec.resolution,
                                                           spec.resolution)).astype(np.float32)
        feed = {session.get_inputs()[0].name: images}
        seconds = min(trimmed_mean(time_runs(lambda: session.run(None, feed), runs, warmup, timer,
                                             protocol.warmup_seconds, sync=lambda outputs: outputs), trim)
                      for _ in range(rounds))
    device = current_device()
    return LatencyResult(
        name=result_name(arch, name),
        batch=batch, resolution=spec.resolution, dtype=dtype, fold_bn=True, conv_impl=provider,
        ms_per_image=seconds * 1e3 / batch, images_per_second=batch / seconds, batch_ms=seconds * 1e3,
        compile_seconds=compile_seconds, runs=runs, trim=trim, rounds=rounds, warmup=warmup,
        params=spec_params(spec), macs=spec_macs(spec),
        device_kind=device.device_kind if provider == CPU_PROVIDER else provider,
        platform=provider_platform(provider), num_devices_used=1, jax_version=device.jax_version,
        engine="onnxruntime", engine_version=f"onnxruntime {ort.__version__} ({provider})")

