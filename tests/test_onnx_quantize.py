"""INT8 ONNX models (`python -m genet_jax.export int8 --calibration SOURCE`):
static QDQ with per-channel int8 weights, calibrated on a data source through the evaluation
preprocessing; close to the float model; metadata kept; bad usage is one line, exit 2."""
import json

import numpy as np
import pytest

import genet_jax as g
from genet_jax import export
from genet_jax.data.sources import open_source
from genet_jax.checkpoint import save_model_checkpoint
from genet_jax.interop.onnx_quantize import calibration_batches, calibration_subset
from tests.helpers import calibrated_variables, tiny

onnx = pytest.importorskip("onnx", reason="onnx: an optional dependency (the onnx extra; requirements-dev.txt)")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime: the onnx extra (requirements-dev.txt)")
pytest.importorskip("onnxscript", reason="onnxscript: the onnx extra (requirements-dev.txt)")

RESOLUTION = 32
CALIBRATION_IMAGES = 64
# max |INT8 - float32| / max |float32| over the logits of held-out digits: 8-bit activations (a step
# of 1/255 of each tensor's range) through every layer (measured: 0.0075 on this network).
INT8_TOLERANCE = 0.05


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(float32 file, INT8 file, spec) of a small GENet-shaped network saved as a checkpoint."""
    tmp = tmp_path_factory.mktemp("int8")
    model = g.create_model(tiny(width=16, resolution=RESOLUTION), num_classes=10)
    variables = calibrated_variables(model, resolution=RESOLUTION)
    save_model_checkpoint(tmp / "ckpt", model.spec, variables, metadata={"class_names": list("0123456789"),
                                                                         "eval_crop_fraction": 1.0})
    paths = {}
    for name, command in (("float32", ["onnx"]), ("int8", ["int8", "--calibration", "digits",
                                                             "--calibration-images", str(CALIBRATION_IMAGES)])):
        paths[name] = str(tmp / f"{name}.onnx")
        assert export.main([*command, "--checkpoint", str(tmp / "ckpt"), "--out", paths[name]]) == 0
    return paths["float32"], paths["int8"], model.spec


def logits(path, images):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images})[0]


def test_int8_graph_is_qdq_with_per_channel_weights_and_keeps_the_metadata(exported):
    float_path, int8_path, spec = exported
    model = onnx.load(int8_path)
    ops = [node.op_type for node in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    initializers = {t.name: t for t in model.graph.initializer}
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    producers = {out: node for node in model.graph.node for out in node.output}
    for conv in convs:  # every conv's weight is an int8 tensor dequantised per output channel
        dequantize = producers[conv.input[1]]
        assert dequantize.op_type == "DequantizeLinear"
        weight, scale = initializers[dequantize.input[0]], initializers[dequantize.input[1]]
        assert weight.data_type == onnx.TensorProto.INT8
        assert list(scale.dims) == [weight.dims[0]]
        assert {a.name: a.i for a in dequantize.attribute}.get("axis", 1) == 0
    metadata = {p.key: p.value for p in model.metadata_props}
    float_metadata = {p.key: p.value for p in onnx.load(float_path).metadata_props}
    assert metadata["weights_dtype"] == "int8" and metadata["genet_jax.spec"] == float_metadata["genet_jax.spec"]
    assert json.loads(metadata["class_names"]) == list("0123456789")
    assert json.loads(metadata["preprocessing"])["resize_shorter_side"] == RESOLUTION  # crop fraction 1.0
    quantization = json.loads(metadata["quantization"])
    assert quantization["format"] == "QDQ" and f"{CALIBRATION_IMAGES} images" in quantization["calibration"]


def test_int8_logits_follow_the_float_model_at_any_batch(exported):
    float_path, int8_path, spec = exported
    held_out = calibration_subset(open_source("digits", "test"), 16)
    images = np.concatenate(list(calibration_batches(held_out, RESOLUTION, 1.0, "NCHW")))
    for batch in (1, 3, 16):
        expected, actual = logits(float_path, images[:batch]), logits(int8_path, images[:batch])
        assert actual.shape == expected.shape == (batch, 10)
        error = float(np.abs(actual - expected).max() / np.abs(expected).max())
        assert 0 < error <= INT8_TOLERANCE, (batch, error)


def test_calibration_draws_a_seeded_subset_through_the_evaluation_preprocessing():
    source = open_source("digits", "train")
    first, again = calibration_subset(source, 20), calibration_subset(source, 20)
    assert len(first) == 20 and list(first.records.indices) == list(again.records.indices)
    assert len({label for _, label in first.records}) > 3  # spread over the classes, not the first rows
    (batch,) = list(calibration_batches(first, 24, 1.0, "NHWC", batch=32))
    assert batch.shape == (20, 24, 24, 3) and batch.dtype == np.float32 and abs(float(batch.mean())) < 3


def last_error_line(capsys):
    return [line for line in capsys.readouterr().err.strip().splitlines() if line.strip()][-1]


@pytest.mark.parametrize("args,message", [
    (["int8"], "the following arguments are required: --calibration"),
    (["int8", "--calibration", "digits", "--dtype", "float16"], "unrecognized arguments: --dtype"),
    (["onnx", "--crop-fraction", "1.5"], "--crop-fraction: must be in (0, 1]"),
    (["int8", "--calibration", "digits", "--crop-fraction", "0"], "--crop-fraction: must be in (0, 1]")])
def test_bad_quantization_flags_are_usage_errors(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        export.main([*args, "--arch", tiny(), "--out", str(tmp_path / "x.onnx")])
    assert exited.value.code == 2 and message in last_error_line(capsys)


@pytest.mark.parametrize("args,message", [
    (["--calibration", "digits", "--calibration-images", "0"], "--calibration-images"),
    (["--calibration", "nosuch:source"], "unknown source")])
def test_bad_calibration_data_is_one_line(args, message, tmp_path, capsys):
    out = tmp_path / "x.onnx"
    assert export.main(["int8", "--arch", tiny(), "--out", str(out), *args]) == 2
    assert message in last_error_line(capsys) and not out.exists()
