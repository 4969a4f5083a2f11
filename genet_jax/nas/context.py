"""What every LLR-NAS stage works from: the search config, its workdir, the trainer config the
search derives (NAS validation split, search seed), the search space, the latency probe settings,
the cached full-network probe and the data sources, opened on first use."""
from __future__ import annotations

import dataclasses
import os
from typing import Optional

import ml_collections

from genet_jax.arch.registry import resolve_spec
from genet_jax.arch.spec import NetworkSpec
from genet_jax.errors import InputError
from genet_jax.latency.engines import engine_named
from genet_jax.latency.timing import ProbeSettings
from genet_jax.nas.probe_cache import NetworkProbe
from genet_jax.nas.space import SearchSpace
from genet_jax.nas.train_configs import search_train_config
from genet_jax.training.inputs import open_sources


class SearchError(InputError, RuntimeError):
    """A search that cannot go on as asked; the message says what to run or fix."""


@dataclasses.dataclass
class SearchContext:
    config: ml_collections.ConfigDict  # the search config
    workdir: str  # absolute
    train_config: ml_collections.ConfigDict  # config.train, evaluated on the NAS validation split
    space: SearchSpace
    master_spec: NetworkSpec  # the MasterNet the config names (before any training)
    settings: ProbeSettings  # resolved latency probe settings
    probe: NetworkProbe  # full-network latency, cached in latency/probes.json
    _sources: Optional[tuple] = None

    @property
    def settings_key(self) -> str:
        return self.probe.settings_key

    def path(self, *parts: str) -> str:
        return os.path.join(self.workdir, *parts)

    def sources(self) -> tuple:
        """(train, NAS validation) sources, opened on first use: stages that train nothing never read data."""
        if self._sources is None:
            self._sources = open_sources(self.train_config)
        return self._sources


def open_context(config: ml_collections.ConfigDict) -> SearchContext:
    workdir = os.path.abspath(config.workdir)
    space = SearchSpace.from_config(config.space)
    train_config = search_train_config(config)
    if train_config.data.holdout_size <= 0:
        raise SearchError("config.train.data.holdout_size must be > 0: LLR-NAS validates on held-out "
                          "training images, never on the test split")
    master_spec = resolve_spec(config.train.model)
    settings = probe_settings(config.latency)
    probe = NetworkProbe(os.path.join(workdir, "latency", "probes.json"), settings)
    return SearchContext(config, workdir, train_config, space, master_spec, settings, probe)


def probe_settings(lat) -> ProbeSettings:
    """The resolved probe settings of `config.latency`; a bad value is a SearchError naming the field."""
    try:  # resolved: the provider is dropped for the jax engine
        settings = ProbeSettings(lat.batch, lat.dtype, lat.conv_impl, lat.runs, lat.warmup, lat.trim, lat.rounds,
                                 engine=lat.get("engine", "jax"), provider=lat.get("provider", None)).resolved()
    except ValueError as e:
        raise SearchError(f"config.latency: {e}") from None
    engine_named(settings.engine).check_available(settings, f'LLR-NAS with latency.engine = "{settings.engine}"')
    return settings
