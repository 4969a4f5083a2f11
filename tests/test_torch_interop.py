"""The standalone PyTorch module and the state_dict layouts, against real PyTorch (CPU wheel)."""
import copy
import functools

import jax
import numpy as np
import pytest

import genet_jax as g
from genet_jax import interop
from tests.helpers import calibrated_variables

torch = pytest.importorskip("torch", reason="torch: an optional dependency (requirements-dev.txt installs it)")
from genet_jax.interop.torch_model import TorchGENet  # noqa: E402

pytestmark = pytest.mark.usefixtures("full_float32_products")  # tolerances of full float32 (no TF32)

EQUIVALENCE_NETS = ["genet_light", "genet_normal", "genet_large", "table6_net5", "table6_net12"]
TOLERANCE = 1e-4  # max |logit difference|, float32, logits O(1)


@functools.lru_cache(maxsize=None)
def _jax_model_and_variables(name):
    model = g.create_model(name)
    return model, calibrated_variables(model, seed=3, resolution=192, batch_size=8)


def _torch_model(spec, state_dict):
    module = TorchGENet(spec)
    module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()}, strict=True)
    return module.eval()


def _nchw(x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


@pytest.mark.parametrize("name", EQUIVALENCE_NETS)
def test_jax_and_torch_logits_agree(name):
    model, variables = _jax_model_and_variables(name)
    module = _torch_model(model.spec, interop.to_state_dict(model.spec, variables))
    folded_jax = g.create_model(name, fold_bn=True)
    folded_torch = copy.deepcopy(module).fold_bn()
    for resolution in (192, 193):
        x = np.random.default_rng(resolution).standard_normal((2, resolution, resolution, 3)).astype(np.float32)
        expected = np.asarray(jax.jit(model.apply)(variables, x))
        assert 0.1 < np.abs(expected).max() < 100  # O(1) logits: the absolute tolerance is meaningful
        with torch.no_grad():
            got = module(_nchw(x)).numpy()
            got_folded = folded_torch(_nchw(x)).numpy()
        assert np.abs(got - expected).max() <= TOLERANCE, (resolution, np.abs(got - expected).max())
        assert np.abs(got_folded - expected).max() <= TOLERANCE
        folded_logits = np.asarray(jax.jit(folded_jax.apply)(g.fold_batch_norm(variables), x))
        assert np.abs(folded_logits - got_folded).max() <= TOLERANCE


@pytest.mark.parametrize("layout", interop.LAYOUTS)
def test_jax_torch_jax_is_bit_identical(layout):
    model, variables = _jax_model_and_variables("genet_light")
    state_dict = interop.to_state_dict(model.spec, variables, layout)
    tensors = {k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()}
    back, extras = interop.from_state_dict(model.spec, tensors, layout)
    flat = lambda tree: jax.tree_util.tree_leaves_with_path(tree)  # noqa: E731
    for (path_a, a), (path_b, b) in zip(flat(variables), flat(back)):
        assert path_a == path_b and a.dtype == b.dtype and np.array_equal(np.asarray(a), np.asarray(b)), path_a
    assert set(extras["num_batches_tracked"].values()) == {0}


def _random_torch_state(spec, seed=0):
    torch.manual_seed(seed)
    module = TorchGENet(spec)
    generator = np.random.default_rng(seed)
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, torch.nn.BatchNorm2d):
                layer.weight.uniform_(0.5, 1.5)
                layer.bias.normal_(0, 0.1)
                layer.running_mean.normal_(0, 0.1)
                layer.running_var.uniform_(0.5, 2.0)
                layer.num_batches_tracked.fill_(int(generator.integers(0, 10**6)))
    return module.state_dict()


@pytest.mark.parametrize("layout", interop.LAYOUTS)
@pytest.mark.parametrize("name", ["genet_normal", "table6_net8"])
def test_torch_jax_torch_is_bit_identical(name, layout):
    spec = g.resolve_spec(name)
    original = interop.convert_state_dict(_random_torch_state(spec), spec, "torch", layout)
    variables, extras = interop.from_state_dict(spec, original, layout)
    again = interop.to_state_dict(spec, variables, layout, extras)
    assert list(again) == list(original)
    for key, value in original.items():
        restored = torch.from_numpy(np.array(again[key]))
        assert restored.dtype == value.dtype and torch.equal(restored, value), key


@pytest.mark.parametrize("name,count", [("genet_light", 272), ("genet_normal", 272), ("genet_large", 344)])
def test_official_and_timm_differ_only_in_key_names(name, count):
    spec = g.resolve_spec(name)
    _, variables = _jax_model_and_variables("genet_light") if name == "genet_light" else (None, None)
    state = _random_torch_state(spec) if variables is None else interop.to_state_dict(spec, variables)
    official = interop.convert_state_dict(state, spec, "torch", "official")
    timm = interop.convert_state_dict(state, spec, "torch", "timm")
    assert len(official) == len(timm) == len(state) == count
    assert not set(official) & set(timm)
    assert all(a is b for a, b in zip(official.values(), timm.values()))  # same tensors, renamed
    assert interop.convert_state_dict(official, spec, "official", "timm").keys() == timm.keys()
    assert interop.detect_layout(official) == "official" and interop.detect_layout(timm) == "timm"
    assert interop.detect_layout(state) == "torch"


def test_known_keys_of_each_layout():
    keys = {layout: interop.state_dict_keys(g.resolve_spec("genet_normal"), layout) for layout in interop.LAYOUTS}
    assert keys["official"][0] == "module_list.0.netblock.weight"
    assert "module_list.1.netblock.running_var" in keys["official"]
    assert "module_list.3.conv_list.0.3.weight" in keys["official"]  # stage 1, XX second conv
    assert "module_list.5.conv_list.0.6.weight" in keys["official"]  # BL third conv
    assert "module_list.5.shortcut_list.0.1.num_batches_tracked" in keys["official"]
    assert "module_list.8.netblock.weight" in keys["official"] and "module_list.9.netblock.bias" in keys["official"]
    assert keys["official"][-2:] == ["fc_linear.weight", "fc_linear.bias"]
    assert "stages.0.0.conv1_kxk.conv.weight" in keys["timm"] and "stages.0.0.conv2_kxk.bn.weight" in keys["timm"]
    assert "stages.3.0.conv1_1x1.conv.weight" in keys["timm"] and "stages.3.3.conv3_1x1.bn.bias" in keys["timm"]
    assert "stages.2.0.shortcut.conv.weight" in keys["timm"] and "final_conv.bn.running_mean" in keys["timm"]
    assert keys["timm"][-2:] == ["head.fc.weight", "head.fc.bias"]
    assert keys["torch"] == list(TorchGENet(g.resolve_spec("genet_normal")).state_dict())


def test_mismatches_name_the_key():
    spec = g.resolve_spec("genet_light")
    state = _random_torch_state(spec)
    wrong = dict(state)
    wrong["stage2.unit0.conv2.conv.weight"] = torch.zeros(96, 96, 5, 5)
    with pytest.raises(interop.StateDictError,
                       match=r"stage2\.unit0\.conv2\.conv\.weight: the checkpoint holds shape \(96, 96, 5, 5\), "
                             r"the architecture needs \(96, 96, 3, 3\)"):
        interop.from_state_dict(spec, wrong)
    missing = {k: v for k, v in state.items() if k != "head.bias"}
    with pytest.raises(interop.StateDictError, match=r"1 missing key\(s\) \['head.bias'\]"):
        interop.from_state_dict(spec, missing)
    with pytest.raises(interop.StateDictError, match="missing key"):  # right format, wrong architecture
        interop.from_state_dict(g.resolve_spec("genet_large"), interop.convert_state_dict(
            _random_torch_state(g.resolve_spec("genet_normal")), g.resolve_spec("genet_normal"), "torch", "timm"),
            "timm")
    with pytest.raises(interop.StateDictError, match="not a GENet state_dict"):
        interop.detect_layout({"conv1.weight": torch.zeros(1)})
