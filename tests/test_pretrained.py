"""Pretrained weights in process: the catalog, local files and folders (`pretrained=` a path), the
Hub-convention folder `save_pretrained` writes (and `export hub`), a new head for fine-tuning,
`init_from.pretrained`, one-line errors, and parity with timm where timm is installed."""
import hashlib
import json
import os
import sys

import jax
import numpy as np
import pytest
import safetensors.numpy

import genet_jax
from genet_jax import export, predict
from genet_jax.arch.counting import spec_params
from genet_jax.arch.spec import NetworkSpec, SuperBlockSpec
from genet_jax.checkpoint import save_model_checkpoint
from genet_jax.optional import MissingDependency
from genet_jax.pretrained import hub
from genet_jax.pretrained.catalog import PRETRAINED, imagenet_classes, pretrained_weights
from genet_jax.training.config import ConfigError
from genet_jax.training.initial_state import load_initial_variables
from configs.default import get_config
from tests.pretrained_helpers import safetensors_bytes, sha256

pytestmark = pytest.mark.usefixtures("full_float32_products")  # tolerances of full float32 (no TF32)

# a small GENet-space network with 1000 classes: quick to build, the same code path as the GENets
TINY = NetworkSpec(8, (SuperBlockSpec("XX", 1, 16, 2, 3, 1.0), SuperBlockSpec("BL", 1, 32, 2, 3, 0.25),
                       SuperBlockSpec("DW", 1, 32, 2, 3, 3.0)), 64, num_classes=1000, resolution=32)
INPUTS = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype(np.float32)
PUBLISHED_PARAMS = {"genet_light": 8_173_761, "genet_normal": 21_142_920, "genet_large": 31_078_280}  # FACTS


@pytest.fixture(scope="module")
def tiny():
    model = genet_jax.create_model(TINY)
    return model, genet_jax.init_variables(model, 3)


def logits(model, variables):
    return np.asarray(model.apply(variables, INPUTS))


def test_the_catalog_names_the_three_genets_with_their_published_figures():
    assert {name: spec_params(genet_jax.resolve_spec(name)) for name in PRETRAINED} == PUBLISHED_PARAMS
    for alias, name in {"gernet_s": "genet_light", "gernet_m": "genet_normal", "gernet_l": "genet_large"}.items():
        assert pretrained_weights(alias) is PRETRAINED[name]
        assert PRETRAINED[name].hub_repo == f"timm/{alias}.idstcv_in1k"
    assert [w.preprocessing.resolution for w in PRETRAINED.values()] == [192, 192, 256]
    assert {w.published[0].top1 for w in PRETRAINED.values()} == {75.7, 80.0, 81.3}  # the paper's Table 2
    synsets = [synset for synset, _ in imagenet_classes()]
    assert len(set(synsets)) == 1000 and synsets == sorted(synsets) and imagenet_classes()[0][1].startswith("tench")


def test_a_safetensors_file_loads_exactly_and_unpacks(tiny, tmp_path):
    model, variables = tiny
    safetensors_bytes(model.spec, variables, tmp_path / "w.safetensors")
    loaded = genet_jax.create_model(TINY, pretrained=str(tmp_path / "w.safetensors"))
    restored_model, restored = loaded  # model, variables = create_model(..., pretrained=...)
    np.testing.assert_array_equal(logits(restored_model, restored), logits(model, variables))
    assert loaded.class_names is None and loaded.preprocessing.resolution == TINY.resolution


def test_save_pretrained_writes_a_hub_folder_that_loads_back_exactly(tiny, tmp_path):
    model, variables = tiny
    names = [f"class {i}" for i in range(1000)]
    paths = genet_jax.save_pretrained(str(tmp_path / "hub"), model.spec, variables, class_names=names,
                                      preprocessing=genet_jax.EvalPreprocessing(40, 0.9),
                                      metadata={"dataset": "imagenet-1k", "metrics": {"top1": 0.5}})
    assert sorted(os.listdir(tmp_path / "hub")) == ["README.md", "config.json", "model.safetensors"]
    assert [os.path.basename(p) for p in paths] == ["model.safetensors", "config.json", "README.md"]
    loaded = genet_jax.load_pretrained(str(tmp_path / "hub"))  # the folder alone says what it holds
    np.testing.assert_array_equal(logits(loaded.model, loaded.variables), logits(model, variables))
    assert loaded.model.spec == TINY and loaded.class_names == tuple(names)
    assert loaded.preprocessing == genet_jax.EvalPreprocessing(40, 0.9)
    config = json.loads((tmp_path / "hub" / "config.json").read_text())
    assert config["pretrained_cfg"]["input_size"] == [3, 40, 40] and config["pretrained_cfg"]["crop_pct"] == 0.9
    assert config["num_classes"] == 1000 and "architecture" not in config  # timm has no name for TINY
    card = (tmp_path / "hub" / "README.md").read_text()
    assert card.startswith("---\nlicense: apache-2.0\n") and "- imagenet-1k" in card and '"top1": 0.5' in card
    assert f"Parameters: {spec_params(TINY):,}" in card
    tensors = safetensors.numpy.load_file(str(tmp_path / "hub" / "model.safetensors"))
    assert sorted(tensors) == sorted(genet_jax.interop.state_dict_keys(TINY, "timm"))  # timm's layout


def test_export_format_hub_writes_the_folder_of_a_checkpoint(tiny, tmp_path):
    model, variables = tiny
    step_dir = save_model_checkpoint(tmp_path / "run" / "checkpoints", model.spec, variables,
                                     metadata={"class_names": None, "data_source": "digits",
                                               "eval_crop_fraction": 1.0})
    (tmp_path / "run" / "metrics.json").write_text(json.dumps({"eval": {"top1": 0.25}}))
    assert export.main(["hub", "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "hub")]) == 0
    loaded = genet_jax.load_pretrained(str(tmp_path / "hub"))
    np.testing.assert_array_equal(logits(loaded.model, loaded.variables), logits(model, variables))
    assert loaded.preprocessing.crop_fraction == 1.0
    card = (tmp_path / "hub" / "README.md").read_text()
    assert '"dataset": "digits"' in card and '"top1": 0.25' in card and os.path.isdir(step_dir)


def test_another_class_count_gets_a_fresh_head(tiny, tmp_path):
    model, variables = tiny
    safetensors_bytes(model.spec, variables, tmp_path / "w.safetensors")
    loaded = genet_jax.load_pretrained(TINY, pretrained=str(tmp_path / "w.safetensors"), num_classes=10)
    assert loaded.model.spec.num_classes == 10 and loaded.variables["params"]["head"]["kernel"].shape == (64, 10)
    np.testing.assert_array_equal(loaded.variables["params"]["final"]["conv"]["kernel"],
                                  variables["params"]["final"]["conv"]["kernel"])


def test_init_from_pretrained_starts_training_from_the_weights(tiny, tmp_path):
    model, variables = tiny
    genet_jax.save_pretrained(str(tmp_path / "hub"), model.spec, variables)
    config = get_config()
    config.model, config.workdir, config.init_from.pretrained = TINY.to_json(), str(tmp_path / "work"), str(
        tmp_path / "hub")
    student = genet_jax.create_model(TINY.replace(num_classes=10))
    initial = load_initial_variables(config, student, jax.random.PRNGKey(0))
    np.testing.assert_array_equal(initial["params"]["stem"]["conv"]["kernel"], variables["params"]["stem"]["conv"]["kernel"])
    assert initial["params"]["head"]["kernel"].shape == (64, 10)
    config.model = "genet_light"
    with pytest.raises(ConfigError, match="init_from.pretrained.*different architecture"):
        load_initial_variables(config, genet_jax.create_model("genet_light", num_classes=10), jax.random.PRNGKey(0))


@pytest.mark.parametrize("case", ["unknown name", "shape mismatch", "corrupt file", "missing file",
                                  "missing relative file"])
def test_bad_weights_are_one_line_and_exit_code_2(case, tiny, sample_jpegs, tmp_path, capsys):
    model, variables = tiny
    path = tmp_path / "w.safetensors"
    if case == "unknown name":
        path, expected = "genet_lite", "no pretrained weights for 'genet_lite' (did you mean genet_light"
    elif case == "shape mismatch":  # a folder: its config.json names the architecture the tensors must fit
        genet_jax.save_pretrained(str(tmp_path / "hub"), model.spec, variables)
        path = tmp_path / "hub"
        tensors = safetensors.numpy.load_file(str(path / "model.safetensors"))
        tensors["stem.conv.weight"] = np.zeros((8, 3, 5, 5), np.float32)
        safetensors.numpy.save_file(tensors, str(path / "model.safetensors"))
        expected = "stem.conv.weight: the checkpoint holds shape (8, 3, 5, 5), the architecture needs (8, 3, 3, 3)"
    elif case == "corrupt file":
        path.write_bytes(b"not a safetensors file")
        expected = "not a readable safetensors file"
    elif case == "missing file":
        path, expected = tmp_path / "nowhere" / "w.safetensors", "no such file"
    else:  # looks like owner/name but names a weights file: not sent to the Hub
        path, expected = "weights/model.safetensors", "pretrained='weights/model.safetensors': no such file"
    assert predict.main(["--pretrained", str(path), sample_jpegs[0]]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and expected in line, line


def test_timm_weights_saved_by_safetensors_torch_load_and_match_timm(tmp_path):
    """timm's gernet_s, random weights, saved the way the Hub's files are: same logits (<= 1e-5 relative)."""
    torch = pytest.importorskip("torch")
    timm = pytest.importorskip("timm", reason="timm: not a dependency (its torchvision does not install beside "
                                              "this machine's CPU torch); run where timm is installed")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    reference = timm.create_model("gernet_s", pretrained=False).eval()
    safetensors_torch.save_file(reference.state_dict(), str(tmp_path / "model.safetensors"))
    loaded = genet_jax.create_model("gernet_s", pretrained=str(tmp_path / "model.safetensors"))
    images = np.random.default_rng(0).normal(size=(2, 193, 193, 3)).astype(np.float32)
    with torch.no_grad():
        theirs = reference(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
    ours = logits_of(loaded, images)
    assert np.max(np.abs(ours - theirs)) <= 1e-5 * np.max(np.abs(theirs))


def logits_of(loaded, images):
    return np.asarray(loaded.model.apply(loaded.variables, images))


@pytest.mark.parametrize("kind", ["lfs sha256", "git blob sha1"])
def test_a_cached_file_is_checked_against_the_hash_its_blob_is_named_by(kind, tmp_path):
    """The Hub names an LFS blob by its sha256 and any other file by git's blob sha1: both are checked,
    and a file that fails leaves the cache (blob and snapshot link)."""
    data = b'{"architecture": "gernet_s"}'
    name = sha256(data) if kind == "lfs sha256" else hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    (tmp_path / "blobs").mkdir()
    (tmp_path / "snapshots").mkdir()
    (tmp_path / "blobs" / name).write_bytes(data)
    link = tmp_path / "snapshots" / "config.json"
    os.symlink(os.path.join("..", "blobs", name), link)
    assert hub.verify_cached_file(str(link)) == sha256(data)
    (tmp_path / "blobs" / name).write_bytes(data.replace(b"s", b"m"))
    with pytest.raises(hub.CorruptWeightsError, match="corrupt download"):
        hub.verify_cached_file(str(link))
    assert not os.path.lexists(link) and not os.listdir(tmp_path / "blobs")


def test_the_authors_pth_source_without_torch_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(sys.modules, "torch.hub", None)
    with pytest.raises(MissingDependency, match=r"source='pth'.*pip install 'genet-jax\[torch\]'"):
        genet_jax.load_pretrained("genet_light", source="pth", cache_dir=str(tmp_path))
