"""The paper's latency protocol as a probe (section 5): a jit-compiled forward pass with inputs and
weights already on the device, warm-up runs, then 30 timed runs each bracketed by a device
synchronisation; the highest and lowest 10% are dropped, the rest averaged and divided by the batch.

    python -m genet_jax.latency --arch genet_normal --batch 64 --resolution 192 --dtype float32 [--fold-bn] [--json]

`probe_latency` is the same measurement as a function; LLR-NAS calls it for its budgets. Defaults
depend on the platform (`timing.platform_protocol`): the paper's single round on a GPU or TPU, the
fastest of repeated rounds on a noisy CPU host. Every result names the device, JAX version, resolved
conv kernels and dtype; `timing.measurement_context` is what caches of latencies are keyed by.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from genet_jax.arch.counting import spec_macs, spec_params
from genet_jax.arch.registry import resolve_spec
from genet_jax.latency import timing
from genet_jax.latency.timing import (PAPER_RUNS, PAPER_TRIM, ProbeSettings, time_forward, time_forwards,
                                      timing_variables)
from genet_jax.models.folding import fold_batch_norm
from genet_jax.models.network import canonical_dtype, create_model


@dataclasses.dataclass(frozen=True)
class LatencyResult:
    name: str
    batch: int
    resolution: int
    dtype: str
    fold_bn: bool
    conv_impl: str  # resolved: the kernels that ran
    ms_per_image: float
    images_per_second: float
    batch_ms: float
    compile_seconds: float
    runs: int
    trim: float
    rounds: int
    warmup: int
    params: int
    macs: int
    device_kind: str
    platform: str
    num_devices_used: int
    jax_version: str
    engine: str = "jax"  # or "onnxruntime" (genet_jax.latency.onnxruntime_probe)
    engine_version: str = ""  # the engine's release and, for ONNX Runtime, its execution provider

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def model_timing_variables(model, resolution: Optional[int] = None) -> dict:
    """`timing_variables` of a MasterNet's (unfolded) initialiser: its variable tree filled on the
    host, with no initialiser compiled (several seconds per network on XLA:CPU)."""
    shape = jax.ShapeDtypeStruct(model.input_shape(1, resolution), jnp.float32)
    return timing_variables(lambda x: model.init(jax.random.PRNGKey(0), x, train=False), shape)


def _forward_inputs(arch, resolution: Optional[int], settings: ProbeSettings, fold_bn: bool, variables):
    """(spec, model, variables, images) on the first device, ready to time. The BN-folded (inference)
    form keeps its weights in the compute dtype, as a deployed network does; otherwise every call
    would convert them."""
    spec = resolve_spec(arch, resolution=resolution)
    dtype = canonical_dtype(settings.dtype)
    model = create_model(spec, dtype=dtype, conv_impl=settings.conv_impl, fold_bn=fold_bn)
    if variables is None:
        variables = model_timing_variables(create_model(spec, dtype=dtype, conv_impl=settings.conv_impl))
    if fold_bn:
        variables = jax.tree_util.tree_map(lambda v: jnp.asarray(v, dtype), fold_batch_norm(variables))
    device = jax.local_devices()[0]  # this process's own (jax.devices()[0] is process 0's)
    images = jax.device_put(jnp.asarray(np.random.default_rng(0).standard_normal(
        model.input_shape(settings.batch), np.float32), dtype), device)
    return spec, model, jax.device_put(variables, device), images


def result_name(arch: Union[str, Any], name: Optional[str] = None) -> str:
    """What a latency result is called: `name`, else the registered name or path given, else "custom"
    (a spec object or inline JSON)."""
    return name or (arch if isinstance(arch, str) and not arch.lstrip().startswith("{") else "custom")


def probe_latency(arch: Union[str, Any], batch: int = 64, resolution: Optional[int] = None,
                  dtype: str = "float32", fold_bn: bool = False, conv_impl: str = "auto",
                  runs: int = PAPER_RUNS, warmup: Optional[int] = None, trim: float = PAPER_TRIM,
                  variables: Optional[dict] = None, timer: Callable[[], float] = time.perf_counter,
                  name: Optional[str] = None, rounds: Optional[int] = None) -> LatencyResult:
    """Forward latency of a network (registered name, spec JSON/path or NetworkSpec) on one device.
    `warmup` / `rounds` default to the platform's protocol (`platform_protocol`).

    Weights are random unless `variables` (unfolded) are given: latency does not depend on values.
    """
    device = timing.current_device()
    settings = ProbeSettings(batch, dtype, conv_impl, runs, warmup, trim, rounds).resolved(device)
    spec, model, variables, images = _forward_inputs(arch, resolution, settings, fold_bn, variables)
    seconds, compile_seconds = time_forward(model.apply, variables, images, settings, timer)
    return LatencyResult(
        name=result_name(arch, name),
        batch=batch, resolution=spec.resolution, dtype=str(jnp.dtype(model.dtype)), fold_bn=fold_bn,
        conv_impl=model.conv_impl, ms_per_image=seconds * 1e3 / batch, images_per_second=batch / seconds,
        batch_ms=seconds * 1e3, compile_seconds=compile_seconds, runs=runs, trim=trim, rounds=settings.rounds,
        warmup=settings.warmup, params=spec_params(spec), macs=spec_macs(spec), device_kind=device.device_kind,
        platform=device.platform, num_devices_used=1, jax_version=device.jax_version,
        engine_version=f"jax {device.jax_version}")


def time_flax_module(module, input_shape: Sequence[int], settings: ProbeSettings) -> float:
    """Trimmed-mean milliseconds per image of a Flax `module` (called without a train flag: a
    latency-table part, genet_jax.latency.parts) on this process's first device, by `settings`."""
    dtype = canonical_dtype(settings.dtype)
    device = jax.local_devices()[0]  # this process's own (jax.devices()[0] is process 0's)
    x = jax.device_put(jnp.asarray(np.random.default_rng(0).standard_normal(input_shape, np.float32), dtype), device)
    variables = jax.device_put(timing_variables(lambda x: module.init(jax.random.PRNGKey(0), x), x), device)
    seconds, _ = time_forward(module.apply, variables, x, settings)
    return seconds * 1e3 / input_shape[0]


def probe_latencies(archs: Sequence[Any], settings: ProbeSettings = ProbeSettings(),
                    timer: Callable[[], float] = time.perf_counter,
                    progress: Optional[Callable[[int], Any]] = None) -> list[float]:
    """ms/image of several networks by the protocol of `probe_latency`, their rounds interleaved
    (`time_forwards`): networks measured together are compared under the same conditions."""
    settings = settings.resolved()
    forwards = []
    for arch in archs:
        _, model, variables, images = _forward_inputs(arch, None, settings, False, None)
        forwards.append((model.apply, variables, images))
    seconds, _ = time_forwards(forwards, settings, timer, progress)
    return [s * 1e3 / settings.batch for s in seconds]
