"""`--engine onnxruntime`: the paper's protocol on ONNX Runtime, agreeing with a plain ONNX Runtime
loop over the same exported file, through the same command line as the JAX probe; the batch sweep,
block profiling and LLR-NAS's table parts on that engine; measurements keyed by engine."""
import json
import time

import numpy as np
import pytest

import genet_jax as g
from genet_jax.arch.spec import UnitConfig
from genet_jax.interop.onnx_export import export_onnx
from genet_jax.interop.onnx_runtime import onnxruntime_session
from genet_jax.latency.cli import main as latency_main
from genet_jax.latency.onnxruntime_probe import probe_onnxruntime, time_onnx_files
from genet_jax.latency.parts import StemPart, TailPart, UnitPart
from genet_jax.latency.probes import model_timing_variables
from genet_jax.latency.timing import ProbeSettings, measurement_context
from genet_jax.measure import batch_sweep, block_profile
from genet_jax.nas.latency_table import time_part
from genet_jax.nas.store import fingerprint
from tests.helpers import FakeTimer, read_csv, tiny

ort = pytest.importorskip("onnxruntime", reason="onnxruntime: the onnx extra (requirements-dev.txt)")
pytest.importorskip("onnxscript", reason="onnxscript: the onnx extra (requirements-dev.txt)")

# Loose, for a test on a shared 2-core host running other tests beside it; benchmarks measure exactly.
AGREEMENT = (0.5, 1.6)
ALTERNATIONS = 5


def test_protocol_statistics_on_a_fake_timer():
    durations = [0.010] * 27 + [1.0] * 3  # the top 10% dropped
    result = probe_onnxruntime(tiny(), batch=2, runs=30, warmup=1, rounds=1, timer=FakeTimer(durations))
    assert result.batch_ms == pytest.approx(10.0) and result.ms_per_image == pytest.approx(5.0)
    assert result.engine == "onnxruntime" and result.fold_bn and "CPUExecutionProvider" in result.engine_version


def plain_loop_ms_per_image(session, feed, batch, runs=30):
    """ms/image of `runs` back-to-back session.run calls (their total time / runs), after 5 warm-up calls."""
    for _ in range(5):
        session.run(None, feed)
    start = time.perf_counter()
    for _ in range(runs):
        session.run(None, feed)
    return (time.perf_counter() - start) / runs * 1e3 / batch


def test_agrees_with_a_plain_onnxruntime_loop_over_the_same_file(tmp_path):
    spec = g.resolve_spec(tiny(width=16, resolution=32))
    path = export_onnx(spec, model_timing_variables(g.create_model(spec, conv_impl="lax")), str(tmp_path / "n.onnx"))
    _, session = onnxruntime_session(path)
    shape = (16, 3, 32, 32)
    feed = {session.get_inputs()[0].name: np.random.default_rng(0).standard_normal(shape, np.float32)}
    settings = ProbeSettings(batch=16, engine="onnxruntime", rounds=1)
    plain, probed = [], []
    for _ in range(ALTERNATIONS):  # each lasts tens of ms: alternate, so a busy spell of the host hits both
        plain.append(plain_loop_ms_per_image(session, feed, 16))
        (seconds,), _ = time_onnx_files([path], [shape], settings)
        probed.append(seconds * 1e3 / 16)
    assert AGREEMENT[0] <= min(probed) / min(plain) <= AGREEMENT[1], (probed, plain)


def test_cli_engine_flag(capsys):
    assert latency_main(["--arch", tiny(), "--batch", "2", "--runs", "3", "--rounds", "1", "--engine", "onnxruntime",
                         "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["engine"] == "onnxruntime" and result["conv_impl"] == "CPUExecutionProvider"
    assert latency_main(["--arch", tiny(), "--engine", "onnxruntime", "--dtype", "bfloat16"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "bfloat16" in line
    assert latency_main(["--arch", tiny(), "--engine", "onnxruntime", "--provider", "NoSuchProvider"]) == 2
    assert "NoSuchProvider" in capsys.readouterr().err


def test_batch_sweep_and_block_profile_take_the_engine(tmp_path):
    sweep_out, profile_out = tmp_path / "sweep", tmp_path / "profile"
    assert batch_sweep.main(["--arch", tiny(8), "--batches", "1,2", "--runs", "3", "--rounds", "1",
                             "--engine", "onnxruntime", "--out", str(sweep_out)]) == 0
    rows = read_csv(sweep_out / "latency_vs_batch.csv")
    assert [(r["batch"], r["engine"], r["conv_impl"]) for r in rows] == [
        ("1", "onnxruntime", "CPUExecutionProvider"), ("2", "onnxruntime", "CPUExecutionProvider")]
    assert block_profile.main(["--widths", "8", "--block-types", "XX", "--batch", "2", "--resolution", "16",
                               "--runs", "3", "--rounds", "1", "--engine", "onnxruntime", "--out",
                               str(profile_out)]) == 0
    (row,) = read_csv(profile_out / "block_profile.csv")
    assert row["engine"] == "onnxruntime" and row["engine_version"].startswith("onnxruntime ")


def test_measurements_are_keyed_by_engine_and_provider():
    jax_context = measurement_context(ProbeSettings(batch=4))
    assert "engine" not in jax_context["settings"] and "engine_version" not in jax_context  # keys as before
    ort_settings = ProbeSettings(batch=4, engine="onnxruntime")
    assert ort_settings.resolved().conv_impl is None  # the provider is the engine's own field, not a kernel set
    ort_context = measurement_context(ort_settings)
    # keyed as before engines owned their settings (the provider under conv_impl too): stored probes stay found
    assert ort_context["settings"]["provider"] == ort_context["settings"]["conv_impl"] == "CPUExecutionProvider"
    assert ort_context["engine_version"] == f"onnxruntime {ort.__version__}"
    assert fingerprint(jax_context) != fingerprint(ort_context)
    with pytest.raises(ValueError, match="bfloat16"):
        ProbeSettings(dtype="bfloat16", engine="onnxruntime").resolved()
    with pytest.raises(ValueError, match="engine must be one of"):
        ProbeSettings(engine="tensorrt").resolved()


def test_latency_table_parts_time_on_onnxruntime():
    settings = ProbeSettings(batch=2, runs=3, warmup=1, rounds=1, engine="onnxruntime")
    unit = UnitConfig("BL", 8, 16, 4, 2, 3)
    parts = [(StemPart(8, 3, 2), (2, 16, 16, 3)), (UnitPart(unit), (2, 8, 8, 8)), (TailPart(32, 10), (2, 4, 4, 16))]
    for part, shape in parts:
        ms = time_part(part, shape, settings)
        assert 0 < ms < 1e3
    torch_unit = parts[1][0].torch_module(8)
    assert sorted(name for name, _ in torch_unit.named_children()) == sorted(c.name for c in unit.conv_layers())
