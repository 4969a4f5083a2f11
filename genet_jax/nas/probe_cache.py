"""Full-network latency for the search on the engine `latency.engine` names (genet_jax.latency.engines:
the jitted probe, or ONNX Runtime's), under the search's settings, every measurement kept
in latency/probes.json so a re-run repeats none (in a multi-process job, measured by process 0 for
all: genet_jax.nas.store.MeasurementCache). Keys carry the device, JAX (and engine) version and
resolved settings (`timing.measurement_context`): a workdir moved to another machine or engine
re-probes instead of reusing that machine's numbers."""
from __future__ import annotations

from typing import Optional

from tqdm import tqdm

from genet_jax.arch.spec import NetworkSpec
from genet_jax.latency.engines import engine_named
from genet_jax.latency.timing import ProbeSettings, measurement_context
from genet_jax.nas.space import spec_key
from genet_jax.nas.store import MeasurementCache, fingerprint


class NetworkProbe:
    """`probe(spec)`: ms/image of one structure; `probe.many(specs)`: of several, their rounds interleaved."""

    def __init__(self, path: str, settings: ProbeSettings):
        self.settings = settings.resolved()
        self.settings_key = fingerprint(measurement_context(self.settings))
        self.cache = MeasurementCache(path)

    def key(self, spec: NetworkSpec) -> str:
        return f"{spec_key(spec)}@{spec.resolution}/{self.settings_key}"

    def __call__(self, spec: NetworkSpec) -> float:
        return self.many([spec])[0]

    def many(self, specs: list[NetworkSpec], desc: Optional[str] = None) -> list[float]:
        """Several structures measured together by `latency.probe_latencies` (one round of each in
        turn), so a slow spell of the host does not bias a whole batch of calibration or check probes;
        a progress bar when `desc` is given. In a multi-process job process 0 measures, every process
        gets its numbers (store.MeasurementCache)."""
        by_key = {self.key(spec): spec for spec in specs}
        return self.cache.get_many([self.key(spec) for spec in specs],
                                   lambda missing: self._measure([by_key[key] for key in missing], desc))

    def _measure(self, specs: list[NetworkSpec], desc: Optional[str]) -> list[float]:
        s = self.settings
        with tqdm(total=len(specs) * s.rounds, desc=desc, unit="round", leave=False, disable=desc is None) as bar:
            return engine_named(s.engine).latencies(specs, s, progress=bar.update)
