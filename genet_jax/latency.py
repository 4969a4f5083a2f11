"""The paper's latency protocol as a probe (section 5): a jit-compiled forward pass with inputs and
weights already on the device, warm-up runs, then 30 timed runs each bracketed by a device
synchronisation; the highest and lowest 10% are dropped, the rest averaged and divided by the batch.

    python -m genet_jax.latency --arch genet_normal --batch 64 --resolution 192 --dtype float32 [--fold-bn] [--json]

`probe_latency` is the same measurement as a function; LLR-NAS calls it for its budgets.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from typing import Any, Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

PAPER_RUNS = 30
PAPER_TRIM = 0.1


def trimmed_mean(samples: Sequence[float], trim: float = PAPER_TRIM) -> float:
    """Mean after dropping floor(n * trim) samples from each end of the sorted list."""
    if not samples:
        raise ValueError("trimmed_mean of no samples")
    if not 0 <= trim < 0.5:
        raise ValueError(f"trim must be in [0, 0.5), got {trim}")
    ordered = sorted(samples)
    drop = int(math.floor(len(ordered) * trim))
    kept = ordered[drop:len(ordered) - drop]
    return float(sum(kept) / len(kept))


def time_runs(fn: Callable[[], Any], runs: int = PAPER_RUNS, warmup: int = 5,
              timer: Callable[[], float] = time.perf_counter) -> list[float]:
    """Seconds per call of `fn`, waiting for the device before and after every timed call."""
    if runs < 1 or warmup < 0:
        raise ValueError(f"need runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(runs):
        start = timer()
        jax.block_until_ready(fn())
        times.append(timer() - start)
    return times


def time_forwards(forwards: Sequence[tuple[Callable, Any, jax.Array]], runs: int = PAPER_RUNS, warmup: int = 5,
                  trim: float = PAPER_TRIM, timer: Callable[[], float] = time.perf_counter, rounds: int = 1,
                  progress: Optional[Callable[[int], Any]] = None) -> tuple[list[float], list[float]]:
    """(trimmed-mean seconds per call, compile seconds) of each jit(apply_fn)(variables, images) in
    `forwards`, with variables and images already on the device.

    `rounds` > 1 repeats the whole protocol (warm-up, runs, trim) and keeps the fastest round: on a
    shared or throttling host a slow spell lasts longer than one round and shifts every run in it
    (measured here: whole rounds 40% slow), which trimming within a round cannot remove. Several
    networks are all compiled first, then each round times every one of them in turn: a spell
    (seen here: ~10 s in which every probe ran 20-30% slow) then costs a network one of its rounds
    rather than all of them. `progress(1)` is called per timed round of one network."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    compiled, compile_seconds = [], []
    for apply_fn, variables, images in forwards:
        start = time.perf_counter()
        compiled.append(jax.jit(apply_fn).lower(variables, images).compile())
        compile_seconds.append(time.perf_counter() - start)
    best = [math.inf] * len(compiled)
    for _ in range(rounds):
        for i, (fn, (_, variables, images)) in enumerate(zip(compiled, forwards)):
            seconds = trimmed_mean(time_runs(lambda: fn(variables, images), runs, warmup, timer), trim)
            best[i] = min(best[i], seconds)
            if progress:
                progress(1)
    return best, compile_seconds


def time_forward(apply_fn: Callable, variables: Any, images: jax.Array, runs: int = PAPER_RUNS, warmup: int = 5,
                 trim: float = PAPER_TRIM, timer: Callable[[], float] = time.perf_counter,
                 rounds: int = 1) -> tuple[float, float]:
    """`time_forwards` for one network: (seconds per call, compile seconds)."""
    (seconds,), (compile_seconds,) = time_forwards([(apply_fn, variables, images)], runs, warmup, trim, timer, rounds)
    return seconds, compile_seconds


def timing_variables(init_fn: Callable, *args, seed: int = 0) -> Any:
    """Variables with the tree, shapes and dtypes `init_fn(*args)` returns, filled on the host:
    latency does not depend on the values, and jit-compiling an initialiser costs more than timing a
    small module (0.5-0.7 s vs 0.2 s per latency-table part here). Values keep activations O(1) as a
    real initialisation does (kernels ~ N(0, 1/fan_in); BN identity), so no denormals slow a probe."""
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = getattr(path[-1], "key", None)
        if name in ("scale", "var"):
            value = np.ones(leaf.shape)
        elif name in ("bias", "mean"):
            value = np.zeros(leaf.shape)
        else:
            value = rng.standard_normal(leaf.shape) / math.sqrt(max(1, math.prod(leaf.shape[:-1])))
        return jnp.asarray(value, leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, jax.eval_shape(init_fn, *args))


@dataclasses.dataclass(frozen=True)
class LatencyResult:
    name: str
    batch: int
    resolution: int
    dtype: str
    fold_bn: bool
    conv_impl: str
    ms_per_image: float
    images_per_second: float
    batch_ms: float
    compile_seconds: float
    runs: int
    trim: float
    rounds: int
    params: int
    macs: int
    device_kind: str
    platform: str
    num_devices_used: int
    jax_version: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def device_description() -> tuple[str, str]:
    device = jax.devices()[0]
    return device.device_kind, device.platform


def _forward_inputs(arch, batch, resolution, dtype, fold_bn, conv_impl, variables):
    """(spec, model, variables, images) on the first device, ready to time."""
    from genet_jax.folding import fold_batch_norm
    from genet_jax.model import canonical_dtype, create_model
    from genet_jax.registry import resolve_spec

    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    spec = resolve_spec(arch, resolution=resolution)
    model = create_model(spec, dtype=dtype, conv_impl=conv_impl)
    if variables is None:
        variables = timing_variables(lambda x: model.init(jax.random.PRNGKey(0), x, train=False),
                                     jax.ShapeDtypeStruct(model.input_shape(1), jnp.float32))
    if fold_bn:
        variables = fold_batch_norm(variables)
        model = create_model(spec, dtype=dtype, fold_bn=True, conv_impl=conv_impl)
    device = jax.devices()[0]
    images = jax.device_put(jnp.asarray(np.random.default_rng(0).standard_normal(
        model.input_shape(batch), np.float32), canonical_dtype(dtype)), device)
    return spec, model, jax.device_put(variables, device), images


def probe_latency(arch: Union[str, Any], batch: int = 64, resolution: Optional[int] = None,
                  dtype: str = "float32", fold_bn: bool = False, conv_impl: str = "auto",
                  runs: int = PAPER_RUNS, warmup: int = 5, trim: float = PAPER_TRIM, variables: Optional[dict] = None,
                  timer: Callable[[], float] = time.perf_counter, name: Optional[str] = None,
                  rounds: int = 1) -> LatencyResult:
    """Forward latency of a network (registered name, spec JSON/path or NetworkSpec) on one device.

    Weights are random unless `variables` (unfolded) are given: latency does not depend on values.
    """
    from genet_jax.counting import spec_macs, spec_params
    from genet_jax.model import canonical_dtype

    spec, model, variables, images = _forward_inputs(arch, batch, resolution, dtype, fold_bn, conv_impl, variables)
    seconds, compile_seconds = time_forward(lambda v, x: model.apply(v, x), variables, images, runs, warmup, trim,
                                            timer, rounds)
    kind, platform = device_description()
    return LatencyResult(
        name=name or (arch if isinstance(arch, str) and not arch.lstrip().startswith("{") else "custom"),
        batch=batch, resolution=spec.resolution, dtype=str(jnp.dtype(canonical_dtype(dtype))), fold_bn=fold_bn,
        conv_impl=conv_impl, ms_per_image=seconds * 1e3 / batch, images_per_second=batch / seconds,
        batch_ms=seconds * 1e3, compile_seconds=compile_seconds, runs=runs, trim=trim, rounds=rounds,
        params=spec_params(spec),
        macs=spec_macs(spec), device_kind=kind, platform=platform, num_devices_used=1, jax_version=jax.__version__)


def probe_latencies(archs: Sequence[Any], batch: int = 64, dtype: str = "float32", conv_impl: str = "auto",
                    runs: int = PAPER_RUNS, warmup: int = 5, trim: float = PAPER_TRIM, rounds: int = 3,
                    timer: Callable[[], float] = time.perf_counter,
                    progress: Optional[Callable[[int], Any]] = None) -> list[float]:
    """ms/image of several networks by the protocol of `probe_latency`, their rounds interleaved
    (`time_forwards`): networks measured together are compared under the same conditions."""
    forwards = []
    for arch in archs:
        _, model, variables, images = _forward_inputs(arch, batch, None, dtype, False, conv_impl, None)
        forwards.append((model.apply, variables, images))
    seconds, _ = time_forwards(forwards, runs, warmup, trim, timer, rounds, progress)
    return [s * 1e3 / batch for s in seconds]


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
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat the protocol this many times and keep the fastest round (noisy hosts)")
    parser.add_argument("--json", action="store_true", help="one JSON object per network on stdout")
    args = parser.parse_args(argv)
    for name in ("batch", "runs", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
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
