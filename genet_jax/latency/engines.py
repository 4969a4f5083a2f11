"""Latency engines: what runs a network, or a latency-table part, to be timed by the paper's protocol.
Each engine is one `Engine` subclass registered by name (`register_engine`) and chosen once from the
registry (`engine_named`, as `ProbeSettings.engine` names it); nothing outside this module tests an
engine's name. An engine owns its settings (the ProbeSettings fields that are its own, their
defaults and checks), its measurement identity (what keys a stored latency) and its timing (one
network, several networks with their rounds interleaved, a part). Built in: "jax" (XLA,
genet_jax.latency.probes) and "onnxruntime" (the network exported to ONNX as deployed,
genet_jax.latency.onnxruntime_probe). `probe_on` and `add_engine_arguments` serve every latency tool.
"""
from __future__ import annotations

import abc
import argparse
import dataclasses
import time
from typing import Any, Callable, ClassVar, Optional, Sequence, Union

import jax

from genet_jax.interop.onnx_runtime import CPU_PROVIDER
from genet_jax.latency import timing
from genet_jax.latency.onnxruntime_probe import (check_onnxruntime_engine, onnxruntime_latencies, probe_onnxruntime,
                                                 provider_platform, time_torch_module)
from genet_jax.latency.parts import Part
from genet_jax.latency.probes import LatencyResult, probe_latencies, probe_latency, time_flax_module
from genet_jax.latency.timing import PAPER_RUNS, DeviceIdentity, ProbeSettings
from genet_jax.models.conv_ops import resolve_conv_impl
from genet_jax.models.network import canonical_dtype
from genet_jax.optional import require

Progress = Optional[Callable[[int], Any]]


class Engine(abc.ABC):
    """One way of running networks for latency. Settings given to the timing methods are resolved."""

    name: ClassVar[str]

    @abc.abstractmethod
    def resolve(self, settings: ProbeSettings, device: Optional[DeviceIdentity]) -> tuple[str, ProbeSettings]:
        """(the platform whose protocol defaults apply, `settings` with this engine's own fields
        resolved and the fields of other engines cleared); `device`: None for the current one."""

    def check(self, settings: ProbeSettings) -> None:
        """A ValueError naming the setting, for one this engine cannot run."""

    def check_available(self, settings: ProbeSettings, feature: str) -> None:
        """A one-line error when a package or device the engine needs is missing, before a long job starts."""

    @abc.abstractmethod
    def version(self) -> str:
        """The engine's name and release, as a measurement's identity states it."""

    def identity(self, settings: ProbeSettings, device: DeviceIdentity) -> dict:
        """What a latency measured by resolved `settings` on `device` depends on besides the network."""
        return {"device": dataclasses.asdict(device), "settings": dataclasses.asdict(settings),
                "engine_version": self.version()}

    def version_text(self, result: LatencyResult) -> str:
        """The engine and release in a result's one-line summary."""
        return result.engine_version

    @abc.abstractmethod
    def probe(self, arch: Union[str, Any], settings: ProbeSettings, resolution: Optional[int] = None, *,
              fold_bn: bool = False, variables: Optional[dict] = None, name: Optional[str] = None,
              timer: Callable[[], float] = time.perf_counter) -> LatencyResult:
        """Latency of one network (registered name, spec JSON / path or NetworkSpec); `settings`
        may be unresolved here. `fold_bn` and `variables` apply where the engine runs JAX's model."""

    @abc.abstractmethod
    def latencies(self, archs: Sequence[Any], settings: ProbeSettings, progress: Progress = None) -> list[float]:
        """ms/image of several networks, their rounds interleaved; `progress(1)` per timed round."""

    @abc.abstractmethod
    def time_part(self, part: Part, input_shape: Sequence[int], settings: ProbeSettings) -> float:
        """ms/image of a latency-table part (genet_jax.latency.parts) on NHWC inputs of `input_shape`."""


_REGISTRY: dict[str, Engine] = {}


def register_engine(cls: type[Engine]) -> type[Engine]:
    """Offer `cls` under `cls.name` to every latency tool (a class decorator)."""
    taken = _REGISTRY.get(cls.name)
    if taken is not None and type(taken) is not cls:
        raise ValueError(f"engine {cls.name!r} is already registered by {type(taken).__name__}")
    _REGISTRY[cls.name] = cls()
    return cls


def engine_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def engine_named(name: str) -> Engine:
    if name not in _REGISTRY:
        raise ValueError(f"engine must be one of {engine_names()}, got {name!r}")
    return _REGISTRY[name]


@register_engine
class JaxEngine(Engine):
    """XLA on JAX's first local device, the network as genet_jax.models builds it."""

    name = "jax"

    def resolve(self, settings, device):
        platform = (device or timing.current_device()).platform
        return platform, dataclasses.replace(settings, conv_impl=resolve_conv_impl(settings.conv_impl, platform),
                                             provider=None)

    def version(self) -> str:
        return f"jax {jax.__version__}"

    def identity(self, settings, device):
        # the keys JAX measurements had before engines existed (no engine fields), so stored searches stay valid
        own = dataclasses.asdict(settings)
        del own["engine"], own["provider"]
        return {"device": dataclasses.asdict(device), "settings": own}

    def version_text(self, result):
        return f"JAX {result.jax_version}"

    def probe(self, arch, settings, resolution=None, *, fold_bn=False, variables=None, name=None,
              timer=time.perf_counter):
        s = settings
        return probe_latency(arch, s.batch, resolution, s.dtype, fold_bn, s.conv_impl, s.runs, s.warmup, s.trim,
                             variables=variables, timer=timer, name=name, rounds=s.rounds)

    def latencies(self, archs, settings, progress=None):
        return probe_latencies(archs, settings, progress=progress)

    def time_part(self, part, input_shape, settings):
        module = part.flax_module(canonical_dtype(settings.dtype), settings.conv_impl)
        return time_flax_module(module, input_shape, settings)


@register_engine
class OnnxRuntimeEngine(Engine):
    """ONNX Runtime on an execution provider (`ProbeSettings.provider`), the network exported to ONNX
    as deployed: BN folded, float32 or float16 weights."""

    name = "onnxruntime"
    dtypes = ("float32", "float16")

    def resolve(self, settings, device):
        provider = settings.provider or CPU_PROVIDER
        return provider_platform(provider), dataclasses.replace(settings, provider=provider, conv_impl=None)

    def check(self, settings):
        if settings.dtype not in self.dtypes:
            raise ValueError(f"the onnxruntime engine runs {' or '.join(self.dtypes)} models, not {settings.dtype}")

    def check_available(self, settings, feature):
        check_onnxruntime_engine(settings.provider, feature)

    def version(self) -> str:
        return f"onnxruntime {require('onnxruntime', 'ONNX Runtime latency').__version__}"

    def identity(self, settings, device):
        context = super().identity(settings, device)
        # the provider also where keys made before engines owned their settings had it, so stored probes stay found
        context["settings"]["conv_impl"] = settings.provider
        return context

    def probe(self, arch, settings, resolution=None, *, fold_bn=False, variables=None, name=None,
              timer=time.perf_counter):
        s = settings
        return probe_onnxruntime(arch, s.batch, resolution, s.dtype, s.runs, s.warmup, s.trim, s.rounds, s.provider,
                                 timer=timer, name=name)

    def latencies(self, archs, settings, progress=None):
        return onnxruntime_latencies(archs, settings, progress=progress)

    def time_part(self, part, input_shape, settings):
        batch, height, width, channels = input_shape  # the table's NHWC; the exported part takes NCHW
        nchw = (batch, channels, height, width)
        return time_torch_module(part.torch_module(channels), nchw, settings) * 1e3 / batch


def probe_on(engine: str, arch: Union[str, Any], batch: int = 64, resolution: Optional[int] = None,
             dtype: str = "float32", *, fold_bn: bool = False, conv_impl: str = "auto", runs: int = PAPER_RUNS,
             warmup: Optional[int] = None, rounds: Optional[int] = None, provider: Optional[str] = None,
             variables: Optional[dict] = None, name: Optional[str] = None) -> LatencyResult:
    """Latency of a network on the engine named `engine`, with the same result type on every engine.
    Each engine takes the settings that are its own (`conv_impl`, `fold_bn`, `variables`: jax's;
    `provider`: onnxruntime's) and ignores the others."""
    settings = ProbeSettings(batch, dtype, conv_impl, runs, warmup, rounds=rounds, engine=engine, provider=provider)
    return engine_named(engine).probe(arch, settings, resolution, fold_bn=fold_bn, variables=variables, name=name)


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """--engine and --provider, as every latency tool takes them (the engines registered when it is called)."""
    parser.add_argument("--engine", choices=engine_names(), default=JaxEngine.name,
                        help="jax (XLA), or onnxruntime: the network exported to ONNX as deployed (BN folded; "
                             "--fold-bn and --conv-impl do not apply; bfloat16 is not offered)")
    parser.add_argument("--provider", default=CPU_PROVIDER,
                        help="onnxruntime: the execution provider (CPUExecutionProvider, CUDAExecutionProvider, "
                             "TensorrtExecutionProvider where installed)")
