"""A third latency engine plugs in by registering one class: a deterministic engine whose latency is
proportional to the multiply-adds runs through the latency command line, the search's probe
settings and network probes, and a latency-table build whose parts then sum to each structure's
latency exactly; its measurements are keyed by its own identity."""
import dataclasses
import json

import ml_collections
import pytest

from genet_jax.arch.counting import conv_out_size, spec_macs, spec_params
from genet_jax.arch.registry import resolve_spec
from genet_jax.latency import engines
from genet_jax.latency.cli import main as latency_main
from genet_jax.latency.engines import Engine, JaxEngine, engine_named, register_engine
from genet_jax.latency.parts import StemPart, TailPart
from genet_jax.latency.probes import LatencyResult, result_name
from genet_jax.latency.timing import current_device, measurement_context
from genet_jax.nas.candidates import sample_candidates
from genet_jax.nas.context import probe_settings
from genet_jax.nas.latency_table import PartProbeCache, build_latency_table
from genet_jax.nas.probe_cache import NetworkProbe
from tests.helpers import tiny
from tests.nas_helpers import MASTER, SPACE

MS_PER_MEGA_MAC = 0.25  # the engine's speed: any positive constant


def mac_ms(macs: int) -> float:
    return MS_PER_MEGA_MAC * macs / 1e6


def conv_macs(in_width: int, out_width: int, kernel_size: int, stride: int, groups: int, size: int) -> int:
    out = conv_out_size(size, kernel_size, stride)
    return kernel_size ** 2 * (in_width // groups) * out_width * out ** 2


def part_macs(part, input_shape) -> int:
    """Multiply-adds per image of a latency-table part on NHWC `input_shape`, by genet_jax.arch.counting's rules."""
    _, size, _, channels = input_shape
    if isinstance(part, StemPart):
        return conv_macs(channels, part.width, part.kernel_size, part.stride, 1, size)
    if isinstance(part, TailPart):
        return conv_macs(channels, part.final_width, 1, 1, 1, size) + part.final_width * part.num_classes
    unit = part.unit
    out = conv_out_size(size, unit.kernel_size, unit.stride)
    return sum(conv_macs(c.in_width, c.out_width, c.kernel_size, c.stride, c.groups, out if c.after_stride else size)
               for c in unit.conv_layers())


class MacCountEngine(Engine):
    """Latency proportional to the multiply-adds: deterministic, and runs nothing."""

    name = "mac-count"

    def resolve(self, settings, device):
        return "cpu", dataclasses.replace(settings, conv_impl=None, provider=None)

    def version(self):
        return "mac-count 1"

    def probe(self, arch, settings, resolution=None, *, fold_bn=False, variables=None, name=None, timer=None):
        s, spec = settings.resolved(), resolve_spec(arch, resolution=resolution)
        ms, macs = mac_ms(spec_macs(spec)), spec_macs(spec)
        return LatencyResult(
            name=result_name(arch, name), batch=s.batch, resolution=spec.resolution, dtype=s.dtype, fold_bn=fold_bn,
            conv_impl="", ms_per_image=ms, images_per_second=1e3 / ms, batch_ms=ms * s.batch, compile_seconds=0.0,
            runs=s.runs, trim=s.trim, rounds=s.rounds, warmup=s.warmup, params=spec_params(spec), macs=macs,
            device_kind="arithmetic", platform="cpu", num_devices_used=1, jax_version=current_device().jax_version,
            engine=self.name, engine_version=self.version())

    def latencies(self, archs, settings, progress=None):
        return [mac_ms(spec_macs(resolve_spec(arch))) for arch in archs]

    def time_part(self, part, input_shape, settings):
        return mac_ms(part_macs(part, input_shape))


@pytest.fixture
def mac_count_engine(monkeypatch):
    monkeypatch.setattr(engines, "_REGISTRY", dict(engines._REGISTRY))  # registered for this test only
    register_engine(MacCountEngine)
    return MacCountEngine.name


def test_the_latency_cli_runs_a_registered_engine(mac_count_engine, capsys):
    assert latency_main(["--arch", tiny(), "--engine", mac_count_engine, "--batch", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["engine"] == mac_count_engine and result["batch"] == 2
    assert result["ms_per_image"] == pytest.approx(mac_ms(spec_macs(resolve_spec(tiny()))))
    assert latency_main(["--arch", tiny(), "--engine", mac_count_engine]) == 0
    assert "(cpu), mac-count 1; mean of" in capsys.readouterr().out  # the engine names itself


def test_the_search_measures_on_a_registered_engine(mac_count_engine, tmp_path):
    config = ml_collections.ConfigDict({"batch": 2, "dtype": "float32", "conv_impl": "auto", "runs": 3, "warmup": 1,
                                        "trim": 0.1, "rounds": 1, "engine": mac_count_engine})
    settings = probe_settings(config)
    context = measurement_context(settings)
    assert context["settings"]["engine"] == mac_count_engine and context["engine_version"] == "mac-count 1"
    probe = NetworkProbe(str(tmp_path / "probes.json"), settings)
    assert probe(MASTER) == pytest.approx(mac_ms(spec_macs(MASTER)))

    keys = [["XX-k3-r1"], ["BL-k3-r0.25"], ["DW-k3-r3"]]  # the MasterNet's own types
    parts = PartProbeCache(str(tmp_path / "parts_r16.json"))
    table = build_latency_table(MASTER, keys, SPACE, 16, settings, grid_points=0, line_points=0, progress=False,
                                timer=parts)
    candidates = sample_candidates(MASTER, keys, SPACE, 5, seed=0)
    for spec in [MASTER] + [candidates.spec(MASTER, row) for row in range(5)]:  # every grid holds every width
        assert table.predict_spec(spec) == pytest.approx(mac_ms(spec_macs(spec)), rel=1e-9)
    assert parts.measured > 0 and all(key.endswith(probe.settings_key) for key in parts.entries)
    again = PartProbeCache(parts.path)
    build_latency_table(MASTER, keys, SPACE, 16, settings, grid_points=0, line_points=0, progress=False, timer=again)
    assert again.measured == 0


def test_an_engine_is_offered_only_once_registered():
    assert JaxEngine.name in engines.engine_names() and MacCountEngine.name not in engines.engine_names()
    with pytest.raises(ValueError, match="engine must be one of"):
        engine_named(MacCountEngine.name)


def test_a_registered_name_is_not_taken_over(monkeypatch):
    monkeypatch.setattr(engines, "_REGISTRY", dict(engines._REGISTRY))
    impostor = type("Impostor", (MacCountEngine,), {"name": JaxEngine.name})
    with pytest.raises(ValueError, match="'jax' is already registered by JaxEngine"):
        register_engine(impostor)
