"""Latency knows its device: per-platform protocol defaults, "auto" kernels resolved when a model is
built, and stored latencies (full-network probes, table parts) keyed by the device kind, platform,
JAX version, kernels and dtype, so a workdir moved to another machine re-probes (faked device kinds).
Facts about this host (its platform, its "auto" kernels) are read from it: the tests hold on a CPU
or a GPU host."""
import itertools
import json
import time

import jax
import pytest

import genet_jax as g
from genet_jax.latency import probe_latency, timing
from genet_jax.latency.timing import ACCELERATOR_PROTOCOL, CPU_PROTOCOL, DeviceIdentity, ProbeSettings
from genet_jax.models.conv_ops import resolve_conv_impl
from genet_jax.nas.latency_table import PartProbeCache, build_latency_table
from genet_jax.nas.probe_cache import NetworkProbe
from genet_jax.nas.space import SearchSpace

pytestmark = pytest.mark.compat  # also run by CI's newest-JAX leg

# Other machines than this one, whatever it is: device kinds no real device reports, so that on a
# real H100 host too, switching to these is a move to another machine.
H100 = DeviceIdentity("gpu", "NVIDIA H100 80GB HBM3 (another machine)", jax.__version__)
H200 = DeviceIdentity("gpu", "NVIDIA H200 (another machine)", jax.__version__)
MASTER = g.NetworkSpec.from_dict({
    "stem_width": 8, "stem_stride": 2, "final_width": 16, "num_classes": 10, "resolution": 16,
    "blocks": [{"block_type": "XX", "depth": 1, "width": 8, "stride": 2},
               {"block_type": "DW", "depth": 1, "width": 16, "stride": 2, "ratio": 3.0}]})
SPACE = SearchSpace(kernels=(3,), bl_ratios=(0.25,), dw_ratios=(3.0,), width_range=(0.5, 2.0), depth_delta=1,
                    width_multiple=8)


def platform_here() -> str:
    return jax.devices()[0].platform


def auto_kernels_here() -> str:
    """What "auto" stands for on this host (test_auto_kernels_are_resolved_when_the_model_is_built
    asserts the per-platform table)."""
    return resolve_conv_impl("auto", jax.default_backend())


@pytest.fixture
def on_device(monkeypatch):
    """`on_device(identity)`: from now on, probes believe they run on `identity` (None: the real one)."""
    real = timing.current_device

    def switch(identity):
        monkeypatch.setattr(timing, "current_device", (lambda: identity) if identity else real)

    return switch


def test_platform_protocol_defaults():
    cpu = ProbeSettings().resolved(DeviceIdentity("cpu", "cpu", jax.__version__))
    assert (cpu.conv_impl, cpu.rounds, cpu.warmup, cpu.warmup_seconds) == ("taps", CPU_PROTOCOL.rounds,
                                                                           CPU_PROTOCOL.warmup, 0.0)
    gpu = ProbeSettings().resolved(H100)
    assert (gpu.conv_impl, gpu.rounds, gpu.warmup) == ("lax", 1, ACCELERATOR_PROTOCOL.warmup)  # the paper's
    assert gpu.warmup_seconds > 0
    asked = ProbeSettings(rounds=3, warmup=2, conv_impl="taps").resolved(H100)  # asked otherwise: kept
    assert (asked.conv_impl, asked.rounds, asked.warmup) == ("taps", 3, 2)
    assert asked.resolved(H100) == asked
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        ProbeSettings(rounds=0).resolved(H100)


def test_warmup_seconds_keep_calling_until_the_time_has_passed():
    calls = itertools.count()

    def work():
        next(calls)
        time.sleep(0.005)

    timing.time_runs(work, runs=2, warmup=1, warmup_seconds=0.1)
    assert next(calls) >= 1 + 2 + 0.1 / 0.005 / 2  # well over the 3 counted calls (sleep may overshoot)


def test_auto_kernels_are_resolved_when_the_model_is_built():
    assert resolve_conv_impl("auto", "cpu") == "taps" and resolve_conv_impl("auto", "gpu") == "lax"
    assert resolve_conv_impl("auto", "tpu") == "lax" and resolve_conv_impl("lax", "cpu") == "lax"
    here = auto_kernels_here()
    assert g.create_model(MASTER).conv_impl == here
    assert g.MasterNet(MASTER).conv_impl == here and g.MasterNet(MASTER).clone().conv_impl == here
    assert g.create_model(MASTER, conv_impl="lax").conv_impl == "lax"
    result = probe_latency(json.dumps(MASTER.to_dict()), batch=2, runs=2, warmup=0, rounds=1)
    assert result.conv_impl == here and result.platform == platform_here()


def test_measurement_context_names_device_jax_kernels_and_dtype(on_device):
    context = timing.measurement_context(ProbeSettings(dtype="bfloat16"))
    assert context["device"]["platform"] == platform_here() and context["device"]["jax_version"] == jax.__version__
    assert context["settings"]["conv_impl"] == auto_kernels_here() and context["settings"]["dtype"] == "bfloat16"
    on_device(H100)
    assert timing.measurement_context(ProbeSettings(dtype="bfloat16"))["device"]["device_kind"] == H100.device_kind


def fake_part_timer(module, shape, settings):
    return 0.001 * shape[-1] + 0.01 * settings.batch


def build(path):
    cache = PartProbeCache(path, fake_part_timer)
    table = build_latency_table(MASTER, [["XX-k3-r1"], ["DW-k3-r3"]], SPACE, 16, ProbeSettings(batch=4),
                                grid_points=2, progress=False, timer=cache)
    return cache, table


def test_table_parts_are_not_reused_on_another_device_kind_or_jax(tmp_path, on_device):
    path = str(tmp_path / "parts_r16.json")
    here, table = build(path)
    assert here.measured > 0 and table.settings.conv_impl == auto_kernels_here()
    again, _ = build(path)
    assert again.measured == 0  # same machine: every part reused
    on_device(H100)
    moved, gpu_table = build(path)
    assert moved.measured == here.measured  # another device: every part re-timed
    assert gpu_table.settings.conv_impl == "lax" and gpu_table.settings.rounds == 1
    on_device(H200)
    assert build(path)[0].measured == here.measured  # another GPU model too
    on_device(DeviceIdentity(H200.platform, H200.device_kind, "0.99.0"))
    assert build(path)[0].measured == here.measured  # and another JAX
    on_device(None)
    assert build(path)[0].measured == 0  # back home: the first measurements are still there
    with open(path) as f:
        assert len(json.load(f)) == 4 * here.measured


def test_network_probes_are_not_reused_on_another_device_kind(tmp_path, on_device):
    path = str(tmp_path / "probes.json")
    settings = ProbeSettings(batch=2, runs=2, warmup=0, rounds=1)
    first = NetworkProbe(path, settings)
    first(MASTER)
    assert first.cache.measured == 1 and first.settings.conv_impl == auto_kernels_here()
    again = NetworkProbe(path, settings)
    again(MASTER)
    assert again.cache.measured == 0
    on_device(H100)
    moved = NetworkProbe(path, settings)
    assert moved.settings_key != first.settings_key and moved.settings.conv_impl == "lax"
    moved(MASTER)
    assert moved.cache.measured == 1
    with open(path) as f:
        assert len(json.load(f)) == 2
