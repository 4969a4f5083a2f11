"""ONNX export (`python -m genet_jax.export onnx`): ONNX Runtime's logits equal JAX's for
the paper's networks at any batch size and in either input layout; metadata; missing extras."""
import json
import subprocess
import sys

import jax
import numpy as np
import pytest

import genet_jax as g
from genet_jax import export
from genet_jax.checkpoint import save_model_checkpoint
from genet_jax.interop.onnx_export import export_onnx
from tests.conftest import REPO_ROOT
from tests.helpers import calibrated_variables

pytestmark = pytest.mark.usefixtures("full_float32_products")  # tolerances of full float32 (no TF32)

onnx = pytest.importorskip("onnx", reason="onnx: an optional dependency (the onnx extra; requirements-dev.txt)")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime: the onnx extra (requirements-dev.txt)")
pytest.importorskip("onnxscript", reason="onnxscript: the onnx extra (requirements-dev.txt)")

FLOAT32_TOLERANCE = 1e-4  # max |ORT - JAX| / max(1, max |JAX|), float32 weights
FLOAT16_TOLERANCE = 1e-2  # the same with float16 weights and activations (measured: 3.1e-3, genet_light)
BATCHES = (1, 3)


def onnx_logits(path, images_nhwc, layout):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    images = images_nhwc if layout == "NHWC" else np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2))
    return session.run(None, {session.get_inputs()[0].name: images})[0]


def relative_error(actual, expected):
    return float(np.abs(actual - expected).max() / max(1.0, np.abs(expected).max()))


@pytest.mark.parametrize("name,layout,dtype", [
    ("genet_light", "NCHW", "float32"), ("genet_light", "NHWC", "float32"), ("genet_light", "NCHW", "float16"),
    ("genet_normal", "NCHW", "float32"), ("genet_large", "NHWC", "float32"), ("table6_net3", "NCHW", "float32")])
def test_onnx_runtime_logits_equal_jax(name, layout, dtype, tmp_path):
    model = g.create_model(name)
    variables = calibrated_variables(model, resolution=model.spec.resolution, batch_size=2)
    path = export_onnx(model.spec, variables, str(tmp_path / f"{name}.onnx"), layout=layout, dtype=dtype)
    apply = jax.jit(model.apply)
    tolerance = FLOAT32_TOLERANCE if dtype == "float32" else FLOAT16_TOLERANCE
    for batch in BATCHES:
        r = model.spec.resolution
        images = np.random.default_rng(batch).standard_normal((batch, r, r, 3)).astype(np.float32)
        expected = np.asarray(apply(variables, images))
        assert 0.1 < np.abs(expected).max() < 100  # O(1) logits: the tolerance means something
        actual = onnx_logits(path, images, layout)
        assert actual.shape == expected.shape and actual.dtype == np.float32
        assert relative_error(actual, expected) <= tolerance, (batch, relative_error(actual, expected))


def test_cli_exports_a_checkpoint_with_its_metadata(tmp_path, capsys):
    model = g.create_model("genet_light", num_classes=4, resolution=64)
    variables = calibrated_variables(model, resolution=64)
    save_model_checkpoint(tmp_path / "ckpt", model.spec, variables, metadata={"class_names": list("abcd")})
    out = tmp_path / "net.onnx"
    assert export.main(["onnx", "--checkpoint", str(tmp_path / "ckpt"), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    loaded = onnx.load(str(out))
    onnx.checker.check_model(loaded, full_check=True)
    metadata = {p.key: p.value for p in loaded.metadata_props}
    assert metadata["num_classes"] == "4" and metadata["input_layout"] == "NCHW"
    assert json.loads(metadata["class_names"]) == list("abcd")
    assert g.NetworkSpec.from_json(metadata["genet_jax.spec"]) == model.spec
    assert json.loads(metadata["preprocessing"])["center_crop"] == 64


@pytest.mark.parametrize("hidden,args,extra", [
    ("onnxscript", ["onnx", "--arch", "genet_light", "--out", "x.onnx"], "onnx"),
    ("torch", ["import", "x.pth", "--out", "ckpt"], "torch")])
def test_a_missing_optional_package_is_one_line_naming_the_extra(hidden, args, extra, tmp_path):
    code = (f"import sys; sys.modules[{hidden!r}] = None\n"
            f"from genet_jax.export import main\nsys.exit(main({args!r}))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env={"PYTHONPATH": REPO_ROOT, "PATH": "/usr/bin:/bin"})
    assert done.returncode == 2, done.stderr[-2000:]
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and hidden in line and f"pip install 'genet-jax[{extra}]'" in line
