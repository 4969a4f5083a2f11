"""`python -m genet_jax.export`, `python -m genet_jax.predict` and model checkpoints, end to end
with real torch.save/torch.load files, orbax checkpoints and JPEG decoding."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

import genet_jax as g
from genet_jax import export, interop, predict
from genet_jax.data.images import eval_preprocess, load_rgb
from genet_jax.export import ModelSource, legacy
from genet_jax.checkpoint import CheckpointError, load_model_checkpoint, save_model_checkpoint
from tests.helpers import calibrated_variables, tiny

torch = pytest.importorskip("torch", reason="torch: an optional dependency (requirements-dev.txt installs it)")
from genet_jax.interop.torch_model import TorchGENet  # noqa: E402


def _leaves_equal(a, b):
    la, lb = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
    return len(la) == len(lb) and all(pa == pb and np.array_equal(np.asarray(x), np.asarray(y))
                                      for (pa, x), (pb, y) in zip(la, lb))


def test_export_official_then_import(tmp_path, capsys):
    out = str(tmp_path / "light.pth")
    assert export.main(["torch", "--arch", "genet_light", "--seed", "3", "--format", "official", "--out", out]) == 0
    assert os.path.isfile(tmp_path / "light.txt")
    saved = torch.load(out, weights_only=True)
    assert list(saved) == ["state_dict"] and len(saved["state_dict"]) == 272
    emitted = (tmp_path / "light.txt").read_text()
    assert g.parse_structure_string(emitted, resolution=192) == g.resolve_spec("genet_light")
    assert export.main(["import", out, "--out", str(tmp_path / "ckpt")]) == 0
    ckpt = load_model_checkpoint(tmp_path / "ckpt")
    assert ckpt.spec == g.resolve_spec("genet_light")  # matched in the registry: resolution 192 kept
    assert ckpt.metadata["format"] == "official"
    assert _leaves_equal(ckpt.variables, g.init_variables(g.create_model("genet_light"), 3))


def test_checkpoint_export_to_timm_and_back_is_exact(tmp_path):
    model = g.create_model("genet_normal", num_classes=10)
    variables = calibrated_variables(model, resolution=32)
    save_model_checkpoint(tmp_path / "ckpt", model.spec, variables)
    out = str(tmp_path / "m.pth")
    assert export.main(["torch", "--checkpoint", str(tmp_path / "ckpt"), "--format", "timm", "--out", out]) == 0
    assert not os.path.exists(tmp_path / "m.timm.json")  # gernet_m: timm names it
    assert list(torch.load(out, weights_only=True)) == interop.state_dict_keys(model.spec, "timm")
    assert export.main(["import", out, "--format", "timm", "--out", str(tmp_path / "back")]) == 0
    back = load_model_checkpoint(tmp_path / "back")
    assert back.spec == model.spec and _leaves_equal(back.variables, variables)


def test_timm_config_for_other_networks(tmp_path):
    out = str(tmp_path / "n3.pth")
    assert export.main(["torch", "--arch", "table6_net3", "--format", "timm", "--out", out]) == 0
    config = json.loads((tmp_path / "n3.timm.json").read_text())
    assert [b["type"] for b in config["blocks"]] == ["basic", "basic", "bottle", "bottle"]
    assert [b["gs"] for b in config["blocks"]] == [0, 0, 1, 1]
    assert config["blocks"][0]["block_kwargs"] == {"kernel_size": 5}
    assert (config["stem_chs"], config["num_features"], config["exact"]) == (32, 1280, True)
    odd = g.NetworkSpec(16, (g.SuperBlockSpec("BL", 1, 36, 2, 3, 0.25),), 64)  # round(9) vs timm's 16
    assert interop.timm_config(odd)["exact"] is False


def test_torch_format_carries_any_spec(tmp_path):
    spec = g.NetworkSpec(24, (g.SuperBlockSpec("XX", 2, 40, 2, 5), g.SuperBlockSpec("DW", 3, 72, 2, 3, 9.0)),
                         256, num_classes=5, resolution=96)
    model = g.MasterNet(spec)
    variables = calibrated_variables(model, resolution=32)
    save_model_checkpoint(tmp_path / "ckpt", spec, variables)
    out = str(tmp_path / "nas.pth")
    assert export.main(["torch", "--checkpoint", str(tmp_path / "ckpt"), "--format", "torch", "--out", out]) == 0
    assert g.NetworkSpec.load(tmp_path / "nas.json") == spec
    module = TorchGENet(spec)
    module.load_state_dict(torch.load(out, weights_only=True), strict=True)
    assert export.main(["import", out, "--out", str(tmp_path / "back")]) == 0
    back = load_model_checkpoint(tmp_path / "back")
    assert back.spec == spec and _leaves_equal(back.variables, variables)


def test_import_errors_are_clear(tmp_path, capsys):
    good = str(tmp_path / "light.pth")
    export.main(["torch", "--arch", "genet_light", "--format", "official", "--out", good])
    capsys.readouterr()
    truncated = tmp_path / "truncated.pth"
    with open(good, "rb") as f:
        truncated.write_bytes(f.read()[:50_000])
    (tmp_path / "garbage.pth").write_text("not a model")
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pth")
    os.remove(tmp_path / "light.txt")
    cases = [
        (["import", good, "--format", "timm"], "looks like a 'official' state_dict"),
        (["import", good, "--arch", "genet_normal"], "the file looks like 'genet_light'"),
        (["import", str(tmp_path / "missing.pth")], "no such file"),
        (["import", str(truncated)], "cannot read it as a PyTorch weights file"),
        (["import", str(tmp_path / "garbage.pth")], "not a PyTorch file"),
        (["import", str(tmp_path / "other.pth")], "not a GENet state_dict"),
        (["torch", "--checkpoint", str(tmp_path / "nowhere"), "--format", "torch"], "no checkpoint at"),
        (["torch", "--arch", "genet_nope", "--format", "torch"], "unknown architecture 'genet_nope'"),
    ]
    for argv, message in cases:
        assert export.main(argv + ["--out", str(tmp_path / "out")]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model_checkpoint(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="holds no finished checkpoint step"):
        load_model_checkpoint(tmp_path / "empty")
    model = g.create_model("genet_light", num_classes=3)
    where = save_model_checkpoint(tmp_path / "ckpt", model.spec, calibrated_variables(model, resolution=32))
    with pytest.raises(CheckpointError, match="has no step 7"):
        load_model_checkpoint(tmp_path / "ckpt", step=7)
    for root, _, files in os.walk(os.path.join(where, "variables")):
        for name in files:
            path = os.path.join(root, name)
            if os.path.getsize(path) > 4096:
                with open(path, "r+b") as f:
                    f.truncate(os.path.getsize(path) // 2)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model_checkpoint(tmp_path / "ckpt")


@pytest.fixture(scope="module")
def imported_light(tmp_path_factory):
    """A torch GENet-light with calibrated random weights, saved in the authors' format and imported."""
    tmp = tmp_path_factory.mktemp("imported")
    model = g.create_model("genet_light")
    variables = calibrated_variables(model, seed=11, resolution=192, batch_size=8)
    module = TorchGENet(model.spec)
    module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in
                            interop.to_state_dict(model.spec, variables).items()})
    official = interop.convert_state_dict(module.state_dict(), model.spec, "torch", "official")
    torch.save({"state_dict": official}, tmp / "GENet_small.pth")
    assert export.main(["import", str(tmp / "GENet_small.pth"), "--format", "official",
                        "--out", str(tmp / "ckpt")]) == 0
    return module.eval(), str(tmp / "ckpt")


def test_predictions_match_torch_on_real_jpegs(imported_light, sample_jpegs, capsys):
    module, ckpt = imported_light
    assert predict.main(["--checkpoint", ckpt, *sample_jpegs, "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["predictions"]
    batch = np.stack([eval_preprocess(load_rgb(p), 192) for p in sample_jpegs])
    with torch.no_grad():
        probs = torch.softmax(module(torch.from_numpy(batch.transpose(0, 3, 1, 2).copy())), -1).numpy()
    for result, p in zip(results, probs):
        expected = np.argsort(-p, kind="stable")[:5]
        assert [e["class"] for e in result["top_k"]] == expected.tolist()
        assert np.allclose([e["probability"] for e in result["top_k"]], p[expected], atol=1e-5)


def test_predict_handles_unusual_and_corrupt_images(imported_light, tmp_path, capsys):
    _, ckpt = imported_light
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)
    Image.fromarray(pixels[..., 0]).save(tmp_path / "gray.jpg")
    Image.fromarray(pixels).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(np.dstack([pixels, pixels[..., :1]])).save(tmp_path / "alpha.png")
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    files = [str(tmp_path / n) for n in ("gray.jpg", "cmyk.jpg", "corrupt.jpg", "alpha.png")]
    assert predict.main(["--checkpoint", ckpt, *files, "--json"]) == 1
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert [r["image"] for r in data["predictions"]] == [files[0], files[1], files[3]]
    assert len(data["errors"]) == 1 and "corrupt.jpg: cannot decode image" in data["errors"][0]
    assert all(abs(sum(e["probability"] for e in r["top_k"])) <= 1 + 1e-6 for r in data["predictions"])


def test_eval_preprocessing_geometry():
    image = Image.fromarray(np.zeros((300, 400, 3), np.uint8))
    assert eval_preprocess(image, 192).shape == (192, 192, 3)  # 300x400 -> 220x293 -> 192x192
    tall = Image.fromarray(np.full((500, 100, 3), 255, np.uint8))
    out = eval_preprocess(tall, 64)
    assert out.shape == (64, 64, 3)
    assert np.allclose(out[0, 0], (1 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225]), atol=1e-5)


def test_export_runs_as_module(tmp_path):
    out = tmp_path / "l.pth"
    result = subprocess.run([sys.executable, "-m", "genet_jax.export", "torch", "--arch", "genet_light",
                             "--format", "torch", "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert out.is_file() and (tmp_path / "l.json").is_file()


@pytest.mark.parametrize("argv,unknown", [
    (["torch", "--arch", "A", "--format", "torch", "--dtype", "float16"], "--dtype"),
    (["import", "m.pth", "--checkpoint", "C"], "--checkpoint"),
    (["onnx", "--arch", "A", "--calibration", "digits"], "--calibration"),
    (["int8", "--arch", "A", "--calibration", "digits", "--dtype", "float16"], "--dtype"),
    (["hub", "--arch", "A", "--input-layout", "NHWC"], "--input-layout")])
def test_each_command_takes_only_its_own_flags(argv, unknown, tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        export.main(argv + ["--out", str(tmp_path / "out")])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert exited.value.code == 2 and last.startswith("python -m genet_jax.export: error: unrecognized arguments: "
                                                      + unknown), last


def test_a_model_source_names_a_checkpoint_or_an_architecture():
    for both_or_neither in ({"checkpoint": "run", "arch": "genet_light"}, {}):
        with pytest.raises(ValueError, match="exactly one of checkpoint or arch"):
            ModelSource(**both_or_neither)


@pytest.mark.parametrize("old,new,old_words,new_words", [
    (["--arch", "A", "--seed", "3", "--format", "official", "--dtype", "float16", "--out", "m.pth"],
     ["torch", "--arch=A", "--seed=3", "--format=official", "--out=m.pth"], "--format official",
     "torch --format official"),
    (["--import-from=-m.pth", "--format", "timm", "--seed", "1", "--out", "ckpt"],
     ["import", "--format=timm", "--out=ckpt", "--", "-m.pth"], "--import-from FILE.pth", "import FILE.pth"),
    (["--checkpoint", "C", "--format", "onnx", "--dtype", "float16", "--input-layout", "NHWC", "--calibration",
      "digits", "--out", "m.onnx"],
     ["onnx", "--checkpoint=C", "--dtype=float16", "--input-layout=NHWC", "--out=m.onnx"], "--format onnx", "onnx"),
    (["--checkpoint", "C", "--format", "onnx", "--quantize", "int8", "--calibration", "digits", "--reduce-range",
      "--dtype", "float32", "--out", "q.onnx"], ["int8", "--checkpoint=C", "--calibration=digits", "--reduce-range",
                                                 "--out=q.onnx"], "--format onnx --quantize int8", "int8"),
    (["--checkpoint", "C", "--format", "hub", "--crop-fraction", "1", "--raw-weights", "--out", "F"],
     ["hub", "--checkpoint=C", "--crop-fraction=1.0", "--raw-weights", "--out=F"], "--format hub", "hub")])
def test_old_flag_forms_map_onto_the_commands(old, new, old_words, new_words, capsys):
    """The old form's flags that its command takes, the others dropped (the old form ignored them)."""
    assert legacy.subcommand_argv(old) == new
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (f"warning: `python -m genet_jax.export {old_words} ...` is deprecated; "
                    f"use `python -m genet_jax.export {new_words} ...`")
    export.build_parser().parse_args(new)


def test_old_flag_forms_still_export_and_import_with_one_deprecation_line(tmp_path, capsys):
    out = str(tmp_path / "tiny.pth")
    assert export.main(["--arch", tiny(), "--seed", "2", "--format", "torch", "--out", out]) == 0
    assert export.main(["--import-from", out, "--out", str(tmp_path / "ckpt")]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "deprecated" in line]
    assert warnings == ["warning: `python -m genet_jax.export --format torch ...` is deprecated; "
                        "use `python -m genet_jax.export torch --format torch ...`",
                        "warning: `python -m genet_jax.export --import-from FILE.pth ...` is deprecated; "
                        "use `python -m genet_jax.export import FILE.pth ...`"]
    model = g.create_model(tiny())
    assert _leaves_equal(load_model_checkpoint(tmp_path / "ckpt").variables, g.init_variables(model, 2))
    for argv, message in ((["--arch", "A", "--format", "onnx", "--quantize", "int8", "--calibration", "digits",
                            "--dtype", "float16"], "--quantize applies to --format onnx with --dtype float32"),
                          (["--import-from", out, "--format", "hub"], "hub is an export format")):
        with pytest.raises(SystemExit) as exited:
            export.main(argv + ["--out", str(tmp_path / "refused")])
        err = capsys.readouterr().err
        assert exited.value.code == 2 and message in err.splitlines()[-1] and "deprecated" not in err
