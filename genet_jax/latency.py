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

import argparse
import dataclasses
import json
import sys
import time
from typing import Any, Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from genet_jax import timing
from genet_jax.timing import (ACCELERATOR_PROTOCOL, CPU_PROTOCOL, PAPER_RUNS, PAPER_TRIM, ProbeSettings,
                              time_forward, time_forwards, timing_variables)


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
    from genet_jax.folding import fold_batch_norm
    from genet_jax.model import canonical_dtype, create_model
    from genet_jax.registry import resolve_spec

    spec = resolve_spec(arch, resolution=resolution)
    dtype = canonical_dtype(settings.dtype)
    model = create_model(spec, dtype=dtype, conv_impl=settings.conv_impl, fold_bn=fold_bn)
    if variables is None:
        variables = model_timing_variables(create_model(spec, dtype=dtype, conv_impl=settings.conv_impl))
    if fold_bn:
        variables = jax.tree_util.tree_map(lambda v: jnp.asarray(v, dtype), fold_batch_norm(variables))
    device = jax.devices()[0]
    images = jax.device_put(jnp.asarray(np.random.default_rng(0).standard_normal(
        model.input_shape(settings.batch), np.float32), dtype), device)
    return spec, model, jax.device_put(variables, device), images


def probe_latency(arch: Union[str, Any], batch: int = 64, resolution: Optional[int] = None,
                  dtype: str = "float32", fold_bn: bool = False, conv_impl: str = "auto",
                  runs: int = PAPER_RUNS, warmup: Optional[int] = None, trim: float = PAPER_TRIM,
                  variables: Optional[dict] = None, timer: Callable[[], float] = time.perf_counter,
                  name: Optional[str] = None, rounds: Optional[int] = None) -> LatencyResult:
    """Forward latency of a network (registered name, spec JSON/path or NetworkSpec) on one device.
    `warmup` / `rounds` default to the platform's protocol (`platform_protocol`).

    Weights are random unless `variables` (unfolded) are given: latency does not depend on values.
    """
    from genet_jax.counting import spec_macs, spec_params

    device = timing.current_device()
    settings = ProbeSettings(batch, dtype, conv_impl, runs, warmup, trim, rounds).resolved(device)
    spec, model, variables, images = _forward_inputs(arch, resolution, settings, fold_bn, variables)
    seconds, compile_seconds = time_forward(model.apply, variables, images, settings, timer)
    return LatencyResult(
        name=name or (arch if isinstance(arch, str) and not arch.lstrip().startswith("{") else "custom"),
        batch=batch, resolution=spec.resolution, dtype=str(jnp.dtype(model.dtype)), fold_bn=fold_bn,
        conv_impl=model.conv_impl, ms_per_image=seconds * 1e3 / batch, images_per_second=batch / seconds,
        batch_ms=seconds * 1e3, compile_seconds=compile_seconds, runs=runs, trim=trim, rounds=settings.rounds,
        warmup=settings.warmup, params=spec_params(spec), macs=spec_macs(spec), device_kind=device.device_kind,
        platform=device.platform, num_devices_used=1, jax_version=device.jax_version)


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


def _format(result: LatencyResult) -> str:
    return (f"{result.name}: {result.ms_per_image:.4f} ms/image ({result.images_per_second:.1f} images/s, "
            f"{result.batch_ms:.2f} ms per batch of {result.batch}) at {result.resolution}x{result.resolution} "
            f"{result.dtype}{' BN-folded' if result.fold_bn else ''}; compile {result.compile_seconds:.1f} s; "
            f"{result.device_kind} ({result.platform}), JAX {result.jax_version}; "
            f"mean of the middle {100 * (1 - 2 * result.trim):.0f}% of {result.runs} runs"
            f"{f', fastest of {result.rounds} rounds' if result.rounds > 1 else ''}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genet_jax.latency", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", action="append", required=True,
                        help="registered name, spec .json / structure-string .txt, or inline JSON; repeatable")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--resolution", type=int, default=None, help="default: the spec's resolution")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--fold-bn", action="store_true", help="fold BN into the convs first (inference form)")
    parser.add_argument("--conv-impl", default="auto", choices=["auto", "lax", "taps"])
    parser.add_argument("--runs", type=int, default=PAPER_RUNS)
    parser.add_argument("--warmup", type=int, default=None,
                        help=f"warm-up runs (default: {CPU_PROTOCOL.warmup} on CPU, {ACCELERATOR_PROTOCOL.warmup} "
                             f"+ {ACCELERATOR_PROTOCOL.warmup_seconds} s on GPU/TPU)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="repeat the protocol this many times and keep the fastest round (default: "
                             f"{CPU_PROTOCOL.rounds} on CPU, whose host has slow spells; "
                             f"{ACCELERATOR_PROTOCOL.rounds} on GPU/TPU, the paper's)")
    parser.add_argument("--json", action="store_true", help="one JSON object per network on stdout")
    args = parser.parse_args(argv)
    for name in ("batch", "runs", "rounds"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.warmup is not None and args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    from genet_jax.spec import SpecError

    status = 0
    for arch in args.arch:
        try:
            result = probe_latency(arch, args.batch, args.resolution, args.dtype, args.fold_bn, args.conv_impl,
                                   args.runs, args.warmup, rounds=args.rounds)
        except (SpecError, ValueError) as e:
            print(f"error: --arch {arch}: {e}", file=sys.stderr)
            status = 2
            continue
        print(json.dumps(result.to_dict()) if args.json else _format(result), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
