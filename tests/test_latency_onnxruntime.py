"""`--engine onnxruntime`: the paper's protocol on ONNX Runtime, agreeing with a plain ONNX Runtime
loop over the same exported file, through the same command line as the JAX probe."""
import json
import time

import numpy as np
import pytest

import genet_jax as g
from genet_jax.interop.onnx_export import export_onnx
from genet_jax.latency.cli import main as latency_main
from genet_jax.latency.onnxruntime_probe import onnxruntime_session, probe_onnxruntime
from genet_jax.latency.probes import model_timing_variables
from tests.helpers import FakeTimer, tiny

pytest.importorskip("onnxruntime", reason="onnxruntime: the onnx extra (requirements-dev.txt)")
pytest.importorskip("onnxscript", reason="onnxscript: the onnx extra (requirements-dev.txt)")

# Loose, for a test on a shared 2-core host running other tests beside it; benchmarks measure exactly.
AGREEMENT = (0.5, 1.6)


def test_protocol_statistics_on_a_fake_timer():
    durations = [0.010] * 27 + [1.0] * 3  # the top 10% dropped
    result = probe_onnxruntime(tiny(), batch=2, runs=30, warmup=1, rounds=1, timer=FakeTimer(durations))
    assert result.batch_ms == pytest.approx(10.0) and result.ms_per_image == pytest.approx(5.0)
    assert result.engine == "onnxruntime" and result.fold_bn and "CPUExecutionProvider" in result.engine_version


def plain_loop_ms_per_image(session, feed, batch, runs=30):
    """Median ms/image of `runs` back-to-back session.run calls, after 5 warm-up calls."""
    for _ in range(5):
        session.run(None, feed)
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds)) * 1e3 / batch


def test_agrees_with_a_plain_onnxruntime_loop_over_the_same_file(tmp_path):
    spec = g.resolve_spec(tiny(width=16, resolution=32))
    path = export_onnx(spec, model_timing_variables(g.create_model(spec, conv_impl="lax")), str(tmp_path / "n.onnx"))
    _, session = onnxruntime_session(path)
    feed = {session.get_inputs()[0].name: np.random.default_rng(0).standard_normal((16, 3, 32, 32), np.float32)}
    before = plain_loop_ms_per_image(session, feed, 16)
    probed = probe_onnxruntime(spec, batch=16, rounds=3).ms_per_image
    after = plain_loop_ms_per_image(session, feed, 16)  # bracketing: other tests may load the host meanwhile
    assert AGREEMENT[0] * min(before, after) <= probed <= AGREEMENT[1] * max(before, after), (probed, before, after)


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
