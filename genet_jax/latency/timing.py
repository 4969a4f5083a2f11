"""The timing protocol shared by every latency measurement: per-platform defaults, the settings and
device identity a stored latency is keyed by, the paper's trimmed mean, and the compile-then-time core
(`time_forwards`). genet_jax.latency builds the network probes on it; LLR-NAS's table parts use it too.
What depends on the engine (its own settings, checks and identity) is asked of it
(genet_jax.latency.engines).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

PAPER_RUNS = 30
PAPER_TRIM = 0.1


@dataclasses.dataclass(frozen=True)
class PlatformProtocol:
    """Per-platform defaults of the probe. XLA autotunes cuDNN / TPU kernels while compiling, so warm-up
    only has to bring the device to speed: a GPU idles at low clocks (seen on an H200: 345 MHz idle,
    1980 MHz under load) and needs a fraction of a second of work to reach them. A shared CPU host has
    slow spells that last longer than a 30-run round (measured here: whole rounds 30-40% slow), so
    there the protocol is repeated and the fastest round kept."""

    warmup: int
    warmup_seconds: float
    rounds: int


CPU_PROTOCOL = PlatformProtocol(warmup=5, warmup_seconds=0.0, rounds=3)
ACCELERATOR_PROTOCOL = PlatformProtocol(warmup=10, warmup_seconds=0.2, rounds=1)  # the paper's: one round


def platform_protocol(platform: str) -> PlatformProtocol:
    return CPU_PROTOCOL if platform == "cpu" else ACCELERATOR_PROTOCOL


@dataclasses.dataclass(frozen=True)
class DeviceIdentity:
    """What a measured latency belongs to besides the network and the settings."""

    platform: str
    device_kind: str
    jax_version: str

    @classmethod
    def of(cls, device) -> "DeviceIdentity":
        return cls(device.platform, device.device_kind, jax.__version__)


def current_device() -> DeviceIdentity:
    """The device probes run on (the first of JAX's default backend)."""
    return DeviceIdentity.of(jax.local_devices()[0])


@dataclasses.dataclass(frozen=True)
class ProbeSettings:
    """How a latency is measured. None (and conv_impl "auto") stand for the platform's choice;
    `resolved()` fills them in, and only resolved settings key a stored measurement. `engine` names
    the engine (genet_jax.latency.engines); `conv_impl` is the jax engine's setting and `provider`
    the onnxruntime engine's: resolving clears the fields another engine owns."""

    batch: int = 64
    dtype: str = "float32"
    conv_impl: Optional[str] = "auto"  # the jax engine's conv kernels
    runs: int = PAPER_RUNS
    warmup: Optional[int] = None
    trim: float = PAPER_TRIM
    rounds: Optional[int] = None
    warmup_seconds: Optional[float] = None
    engine: str = "jax"
    provider: Optional[str] = None  # the onnxruntime engine's execution provider (default: its CPU provider)

    def resolved(self, device: Optional[DeviceIdentity] = None) -> "ProbeSettings":
        platform, settings = _engine(self.engine).resolve(self, device)
        defaults = platform_protocol(platform)
        settings = dataclasses.replace(
            settings,
            warmup=defaults.warmup if self.warmup is None else self.warmup,
            rounds=defaults.rounds if self.rounds is None else self.rounds,
            warmup_seconds=defaults.warmup_seconds if self.warmup_seconds is None else self.warmup_seconds)
        settings.check()
        return settings

    def check(self) -> None:
        _engine(self.engine).check(self)
        for name in ("batch", "runs", "rounds"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if (self.warmup is not None and self.warmup < 0) or (self.warmup_seconds or 0) < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup} runs / {self.warmup_seconds} s")


def _engine(name: str):
    """The registered engine `name` (a ValueError naming the choices for any other)."""
    from genet_jax.latency.engines import engine_named  # engines imports this module

    return engine_named(name)


def measurement_context(settings: ProbeSettings) -> dict:
    """Everything a stored latency depends on besides the network: the device (platform, device kind),
    the JAX version, the resolved settings (kernels or provider, dtype, batch, protocol) and the
    engine's release, as the engine states them (`Engine.identity`). A cache keyed by this is not
    reused on another device, JAX, kernel set or engine."""
    device = current_device()
    resolved = settings.resolved(device)
    return _engine(resolved.engine).identity(resolved, device)


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
              timer: Callable[[], float] = time.perf_counter, warmup_seconds: float = 0.0,
              sync: Callable[[Any], Any] = jax.block_until_ready) -> list[float]:
    """Seconds per call of `fn`, waiting for the device (`sync(result)`; another framework passes its
    own) after every call, so each timed call starts on an idle device. Warm-up is `warmup` calls
    and, after them, more calls until `warmup_seconds` of wall time have passed."""
    if runs < 1 or warmup < 0:
        raise ValueError(f"need runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    for _ in range(warmup):
        sync(fn())
    warm_until = time.perf_counter() + warmup_seconds
    while time.perf_counter() < warm_until:
        sync(fn())
    times = []
    for _ in range(runs):
        start = timer()
        sync(fn())
        times.append(timer() - start)
    return times


def time_forwards(forwards: Sequence[tuple[Callable, Any, jax.Array]], settings: ProbeSettings,
                  timer: Callable[[], float] = time.perf_counter,
                  progress: Optional[Callable[[int], Any]] = None) -> tuple[list[float], list[float]]:
    """(trimmed-mean seconds per call, compile seconds) of each jit(apply_fn)(variables, images) in
    `forwards`, with variables and images already on the device, by `settings` (resolved here).

    `rounds` > 1 repeats the whole protocol (warm-up, runs, trim) and keeps the fastest round: on a
    shared or throttling host a slow spell lasts longer than one round and shifts every run in it
    (measured here: whole rounds 40% slow), which trimming within a round cannot remove. Several
    networks are all compiled first, then each round times every one of them in turn: a spell
    (seen here: ~10 s in which every probe ran 20-30% slow) then costs a network one of its rounds
    rather than all of them. `progress(1)` is called per timed round of one network."""
    compiled, compile_seconds = [], []
    for apply_fn, variables, images in forwards:
        start = time.perf_counter()
        fn = jax.jit(apply_fn).lower(variables, images).compile()
        compiled.append(functools.partial(fn, variables, images))
        compile_seconds.append(time.perf_counter() - start)
    return time_calls(compiled, settings, timer, progress), compile_seconds


def time_calls(calls: Sequence[Callable[[], Any]], settings: ProbeSettings,
               timer: Callable[[], float] = time.perf_counter, progress: Optional[Callable[[int], Any]] = None,
               sync: Callable[[Any], Any] = jax.block_until_ready) -> list[float]:
    """The protocol's core for any engine: trimmed-mean seconds per call of each ready-to-run call,
    the fastest of `rounds` rounds, each round timing every call in turn (see `time_forwards`)."""
    s = settings.resolved()
    best = [math.inf] * len(calls)
    for _ in range(s.rounds):
        for i, call in enumerate(calls):
            times = time_runs(call, s.runs, s.warmup, timer, s.warmup_seconds, sync)
            best[i] = min(best[i], trimmed_mean(times, s.trim))
            if progress:
                progress(1)
    return best


def time_forward(apply_fn: Callable, variables: Any, images: jax.Array, settings: ProbeSettings,
                 timer: Callable[[], float] = time.perf_counter) -> tuple[float, float]:
    """`time_forwards` for one network: (seconds per call, compile seconds)."""
    (seconds,), (compile_seconds,) = time_forwards([(apply_fn, variables, images)], settings, timer)
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
