"""Latency on ONNX Runtime by the same protocol as the JAX probe: the network exported as it would
be deployed (genet_jax.interop.onnx_export: BN folded, float32 NCHW input, float32 or float16
weights; or any exported file, INT8 included), one InferenceSession on the chosen execution
provider, warm-up runs, then 30 timed runs, top and bottom 10% dropped, the fastest of `rounds`
rounds. ONNX Runtime's `run` returns when the outputs are on the host, so each timed call ends
synchronised. Several models are timed with their rounds interleaved (`timing.time_calls`)."""
from __future__ import annotations

import os
import tempfile
import time
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from genet_jax.arch.counting import spec_macs, spec_params
from genet_jax.arch.registry import resolve_spec
from genet_jax.interop.onnx_export import export_onnx, export_torch_module
from genet_jax.interop.onnx_runtime import CPU_PROVIDER, check_provider, onnxruntime_session
from genet_jax.latency.probes import LatencyResult, model_timing_variables, result_name
from genet_jax.latency.timing import PAPER_RUNS, PAPER_TRIM, ProbeSettings, current_device, time_calls
from genet_jax.models.network import create_model
from genet_jax.optional import require


def provider_platform(provider: str) -> str:
    """The protocol's platform for an ONNX Runtime execution provider: 'cpu' for its CPU provider,
    'gpu' for CUDA / TensorRT / others (the accelerator protocol)."""
    return "cpu" if provider == CPU_PROVIDER else "gpu"


def check_onnxruntime_engine(provider: str, feature: str) -> None:
    """Every package the engine needs (export: torch, onnxscript, onnx; timing: onnxruntime) and the
    provider, checked before a long job starts rather than when it first probes."""
    for module in ("torch", "onnxscript", "onnx"):
        require(module, feature)
    check_provider(provider, feature)


def session_call(path: str, input_shape: Sequence[int], provider: str) -> tuple[Callable[[], Any], str]:
    """(a call running the model at `path` on random float32 inputs of `input_shape`, the engine's
    version string 'onnxruntime X.Y.Z (Provider)')."""
    ort, session = onnxruntime_session(path, provider, "ONNX Runtime latency")
    images = np.random.default_rng(0).standard_normal(tuple(input_shape)).astype(np.float32)
    feed = {session.get_inputs()[0].name: images}
    return (lambda: session.run(None, feed)), f"onnxruntime {ort.__version__} ({provider})"


def time_onnx_files(paths: Sequence[str], input_shapes: Sequence[Sequence[int]], settings: ProbeSettings,
                    timer: Callable[[], float] = time.perf_counter,
                    progress: Optional[Callable[[int], Any]] = None) -> tuple[list[float], str]:
    """(seconds per call of each ONNX file on its input shape, the engine version), by the protocol of
    `settings` (engine onnxruntime), rounds interleaved."""
    settings = settings.resolved()
    calls = [session_call(path, shape, settings.provider) for path, shape in zip(paths, input_shapes)]
    seconds = time_calls([call for call, _ in calls], settings, timer, progress, sync=lambda outputs: outputs)
    return seconds, calls[0][1] if calls else ""


def time_torch_module(module, nchw: Sequence[int], settings: ProbeSettings) -> float:
    """Seconds per call of an eval-mode torch `module` (BN folded: a latency-table part) exported to
    ONNX, on float32 inputs of shape `nchw`, by `settings`."""
    with tempfile.TemporaryDirectory() as scratch:
        path = export_torch_module(module, nchw, os.path.join(scratch, "part.onnx"), dtype=settings.dtype)
        (seconds,), _ = time_onnx_files([path], [nchw], settings)
    return seconds


def export_for_timing(arch: Union[str, Any], out: str, resolution: Optional[int] = None,
                      dtype: str = "float32") -> str:
    """The network exported as deployed, with random weights (latency does not depend on them)."""
    spec = resolve_spec(arch, resolution=resolution)
    return export_onnx(spec, model_timing_variables(create_model(spec, conv_impl="lax")), out, dtype=dtype)


def onnxruntime_latencies(archs: Sequence[Any], settings: ProbeSettings,
                          timer: Callable[[], float] = time.perf_counter,
                          progress: Optional[Callable[[int], Any]] = None) -> list[float]:
    """ms/image of several networks on ONNX Runtime (`probe_latencies` for that engine)."""
    settings = settings.resolved()
    specs = [resolve_spec(arch) for arch in archs]
    with tempfile.TemporaryDirectory() as scratch:
        paths = [export_for_timing(spec, os.path.join(scratch, f"{i}.onnx"), dtype=settings.dtype)
                 for i, spec in enumerate(specs)]
        shapes = [(settings.batch, spec.in_channels, spec.resolution, spec.resolution) for spec in specs]
        seconds, _ = time_onnx_files(paths, shapes, settings, timer, progress)
    return [s * 1e3 / settings.batch for s in seconds]


def probe_onnxruntime(arch: Union[str, Any], batch: int = 64, resolution: Optional[int] = None,
                      dtype: str = "float32", runs: int = PAPER_RUNS, warmup: Optional[int] = None,
                      trim: float = PAPER_TRIM, rounds: Optional[int] = None, provider: Optional[str] = None,
                      timer: Callable[[], float] = time.perf_counter, name: Optional[str] = None) -> LatencyResult:
    """Forward latency of a network on ONNX Runtime (random weights: latency does not depend on them).
    `warmup` / `rounds` default to the protocol of the provider's platform."""
    spec = resolve_spec(arch, resolution=resolution)
    settings = ProbeSettings(batch, dtype, "auto", runs, warmup, trim, rounds, engine="onnxruntime",
                             provider=provider).resolved()
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        path = export_for_timing(spec, os.path.join(scratch, "net.onnx"), dtype=dtype)
        compile_seconds = time.perf_counter() - started
        (seconds,), engine_version = time_onnx_files([path], [(batch, spec.in_channels, spec.resolution,
                                                               spec.resolution)], settings, timer)
    device, platform = current_device(), provider_platform(settings.provider)
    return LatencyResult(
        name=result_name(arch, name),
        batch=batch, resolution=spec.resolution, dtype=dtype, fold_bn=True, conv_impl=settings.provider,
        ms_per_image=seconds * 1e3 / batch, images_per_second=batch / seconds, batch_ms=seconds * 1e3,
        compile_seconds=compile_seconds, runs=runs, trim=trim, rounds=settings.rounds, warmup=settings.warmup,
        params=spec_params(spec), macs=spec_macs(spec),
        device_kind=device.device_kind if platform == "cpu" else settings.provider, platform=platform, num_devices_used=1, jax_version=device.jax_version,
        engine="onnxruntime", engine_version=engine_version)
