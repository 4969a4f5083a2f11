"""`python -m genet_jax.evaluate --onnx FILE` (genet_jax.interop.onnx_evaluation): an ONNX export
scores what its checkpoint scores, with and without flip TTA, and bad input is one line, exit 2."""
import json
import subprocess
import sys

import jax
import numpy as np
import pytest

import genet_jax as g
from genet_jax.data.images import normalize
from genet_jax.data.sources import open_source
from genet_jax.checkpoint import save_model_checkpoint
from genet_jax.interop.onnx_export import export_onnx
from tests.conftest import REPO_ROOT
from tests.helpers import calibrated_variables, tiny

pytestmark = pytest.mark.usefixtures("full_float32_products")  # tolerances of full float32 (no TF32)

onnx = pytest.importorskip("onnx", reason="onnx: an optional dependency (the onnx extra; requirements-dev.txt)")
pytest.importorskip("onnxruntime", reason="onnxruntime: the onnx extra (requirements-dev.txt)")
pytest.importorskip("onnxscript", reason="onnxscript: the onnx extra (requirements-dev.txt)")
pytest.importorskip("torch", reason="torch: ONNX export goes through the torch extra (requirements-dev.txt)")

DIGITS_RESOLUTION = 32  # configs/default.py (the config these runs use): digits upsampled to 32x32
HEAD_GAIN = 300.0  # head kernel x this: logits O(1) once centred (measured max |logit| 2.5)
CENTRING_IMAGES = 256
LOSS_RELATIVE_TOLERANCE = 1e-4  # float32 logits of XLA and ONNX Runtime differ in rounding only
INPUT_ERROR_EXIT_CODE = 2


def varied_prediction_variables(model) -> dict:
    """calibrated_variables whose head is scaled up and centred on digits training images: a random
    network otherwise predicts one class for every image, and equal top-1 would then prove little."""
    variables = calibrated_variables(model, resolution=DIGITS_RESOLUTION)
    head = variables["params"]["head"]
    head["kernel"] = head["kernel"] * HEAD_GAIN
    train = open_source("digits", "train")
    images = normalize(np.stack([train[i][0] for i in range(CENTRING_IMAGES)]))
    head["bias"] = head["bias"] - jax.jit(model.apply)(variables, images).mean(axis=0)
    return variables


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(checkpoint dir, .onnx path) of one small GENet-shaped network."""
    out = tmp_path_factory.mktemp("onnx_evaluate")
    model = g.create_model(tiny(width=8, resolution=DIGITS_RESOLUTION))
    variables = varied_prediction_variables(model)
    save_model_checkpoint(out / "ckpt", model.spec, variables)
    return str(out / "ckpt"), export_onnx(model.spec, variables, str(out / "net.onnx"))


def evaluate(*args):
    return subprocess.run([sys.executable, "-m", "genet_jax.evaluate", *args],
                          capture_output=True, text=True, cwd=REPO_ROOT)


def report_of(*args) -> dict:
    done = evaluate(*args)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_onnx_runtime_scores_what_the_checkpoint_scores(exported):
    checkpoint, onnx_path = exported
    losses = {}
    for flip_tta in (False, True):
        config = f"--config.eval_flip_tta={flip_tta}"
        jax_report = report_of(f"--checkpoint={checkpoint}", config)
        onnx_report = report_of(f"--onnx={onnx_path}", config)
        assert onnx_report["onnx"] == onnx_path and onnx_report["provider"] == "CPUExecutionProvider"
        assert "checkpoint" not in onnx_report and onnx_report["resolution"] == DIGITS_RESOLUTION
        assert onnx_report["split"] == jax_report["split"] == "test"
        for key in ("count", "top1", "top5", "skipped_images"):
            assert onnx_report[key] == jax_report[key], (flip_tta, key)
        assert onnx_report["count"] > 0 and 0 < onnx_report["top1"] < onnx_report["top5"] < 1
        assert onnx_report["loss"] == pytest.approx(jax_report["loss"], rel=LOSS_RELATIVE_TOLERANCE), flip_tta
        losses[flip_tta] = onnx_report["loss"]
    assert losses[True] != pytest.approx(losses[False], rel=10 * LOSS_RELATIVE_TOLERANCE)  # TTA took effect


def identity_onnx(path, metadata=None) -> str:
    """A valid ONNX model (y = x) that is no network, with `metadata` as its metadata_props."""
    helper = onnx.helper
    shape = [None, 3, DIGITS_RESOLUTION, DIGITS_RESOLUTION]
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, shape)
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    helper.set_model_props(model, metadata or {})
    onnx.save(model, str(path))
    return str(path)


def test_bad_input_is_one_line_naming_the_flag_or_file(tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(bytes(range(256)) * 4)
    at_32 = identity_onnx(tmp_path / "at32.onnx", {"input_layout": "NCHW", "num_classes": "10",
                                                   "resolution": str(DIGITS_RESOLUTION)})
    cases = [([], "--checkpoint"),
             ([f"--checkpoint={tmp_path}", f"--onnx={at_32}"], "--onnx"),
             ([f"--onnx={tmp_path / 'missing.onnx'}"], "missing.onnx"),
             ([f"--onnx={garbage}"], str(garbage)),
             ([f"--onnx={identity_onnx(tmp_path / 'bare.onnx')}"], "bare.onnx: not a genet_jax ONNX export"),
             ([f"--onnx={at_32}", "--resolution=64"], "--resolution")]
    for args, named in cases:
        done = evaluate(*args)
        assert done.returncode == INPUT_ERROR_EXIT_CODE, (args, done.stderr[-2000:])
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith("error: ") and named in line, (args, line)
