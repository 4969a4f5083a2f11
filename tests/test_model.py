"""Flax modules: exact counts, forward passes of every registered network, dtypes, BN folding."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

import genet_jax as g
from genet_jax.arch import paths
from genet_jax.arch.spec import NetworkSpec, SpecError, SuperBlockSpec
from genet_jax.models.layers import build_layers
from tests.helpers import random_variables, variable_shapes

PAPER_COUNTS = {  # name: (parameters with 1000 classes, multiply-adds, resolution)
    "genet_light": (8_173_761, 0.547e9, 192),
    "genet_normal": (21_142_920, 2.208e9, 192),
    "genet_large": (31_078_280, 4.557e9, 256),
}


@pytest.mark.parametrize("name", sorted(PAPER_COUNTS))
def test_paper_counts_from_spec_and_module(name):
    params, macs, resolution = PAPER_COUNTS[name]
    spec = g.resolve_spec(name)
    assert spec.resolution == resolution
    assert g.spec_params(spec) == params
    assert g.spec_macs(spec) == pytest.approx(macs, rel=0.005)
    module_params, module_macs = g.module_counts(g.create_model(name))
    assert module_params == params
    assert module_macs == g.spec_macs(spec)


@pytest.mark.parametrize("name", g.list_models())
@pytest.mark.parametrize("resolution", [64, 97])
def test_spec_and_module_counts_agree(name, resolution):
    model = g.create_model(name, num_classes=17, resolution=resolution)
    assert g.module_counts(model) == (g.spec_params(model.spec), g.spec_macs(model.spec))


@pytest.mark.parametrize("name", g.list_models())
def test_every_network_runs(name):
    model = g.create_model(name, num_classes=7, resolution=32)
    variables = random_variables(model)
    assert set(variables) == {"params", "batch_stats"}
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 32, 32, 3))
    logits = jax.jit(model.apply)(variables, x)
    assert logits.shape == (2, 7) and logits.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(logits)))


def test_parameter_tree_layout():
    model = g.create_model("genet_light", num_classes=10, resolution=32)
    flat = traverse_util.flatten_dict(variable_shapes(model)["params"], sep="/")
    shapes = {k: v.shape for k, v in flat.items()}
    assert shapes["stem/conv/kernel"] == (3, 3, 3, 13)
    assert shapes["stage0/unit0/conv1/conv/kernel"] == (3, 3, 13, 48)
    assert shapes["stage0/unit0/shortcut/conv/kernel"] == (1, 1, 13, 48)
    assert "stage1/unit1/shortcut/conv/kernel" not in shapes  # identity shortcut
    assert shapes["stage2/unit0/conv2/conv/kernel"] == (3, 3, 96, 96)  # BL: full kxk at mid width
    assert shapes["stage3/unit0/conv2/conv/kernel"] == (3, 3, 1, 1680)  # DW: depthwise at mid width
    assert shapes["stage4/unit0/shortcut/conv/kernel"] == (1, 1, 560, 256)  # projection, stride 1
    assert "stage2/unit0/conv1/conv/bias" not in shapes  # convs have no bias
    assert shapes["final/bn/scale"] == (1920,)
    assert shapes["head/kernel"] == (1920, 10) and shapes["head/bias"] == (10,)


@pytest.mark.parametrize("name", ["genet_light", "masternet"])
def test_units_are_wired_from_conv_layers(name):
    # one residual unit for every block type: its convs are UnitConfig.conv_layers(), by name and shape
    model = g.create_model(name, num_classes=10, resolution=32)
    params = variable_shapes(model)["params"]
    for i in range(len(model.spec.blocks)):
        for j, unit in enumerate(model.spec.units(i)):
            built = params[paths.stage_name(i)][paths.unit_name(j)]
            layers = unit.conv_layers()
            assert sorted(built) == sorted(c.name for c in layers)
            for c in layers:
                kernel = built[c.name]["conv"]["kernel"].shape
                assert (kernel[3], kernel[2], kernel[0], kernel[1]) == c.torch_weight_shape
                assert set(built[c.name]) == {"conv", "bn"}


def test_layer_factories_fold_and_train_mode():
    x = jnp.ones((2, 8, 8, 4))
    folded = build_layers(jnp.float32, "lax", fold_bn=True).conv_bn(6, 3, 2)
    assert jax.tree_util.tree_map(jnp.shape, folded.init(jax.random.PRNGKey(0), x)) == {
        "params": {"conv": {"kernel": (3, 3, 4, 6), "bias": (6,)}}}
    train = build_layers(jnp.float32, "taps", train=True).conv_bn(6, 3, relu=False)
    variables = train.init(jax.random.PRNGKey(0), x)
    y, updates = train.apply(variables, x, mutable=["batch_stats"])
    assert np.allclose(jnp.mean(y, axis=(0, 1, 2)), 0, atol=1e-5)  # normalised with batch statistics
    assert not np.allclose(updates["batch_stats"]["bn"]["mean"], 0)


def test_output_size_follows_symmetric_padding():
    # PyTorch: floor((H + 2p - k) / s) + 1 with p = (k-1)//2, i.e. ceil(H/2) at every stride-2 layer.
    spec = NetworkSpec(8, (SuperBlockSpec("XX", 1, 8, 2, 5), SuperBlockSpec("DW", 1, 8, 2, 3, 3.0)), 16,
                       num_classes=3, resolution=37)
    model = g.MasterNet(spec)
    feature = jax.eval_shape(lambda x: model.init_with_output(
        jax.random.PRNGKey(0), x, capture_intermediates=True)[1]["intermediates"]["stage1"]["__call__"][0],
        jax.ShapeDtypeStruct((1, 37, 37, 3), jnp.float32))
    assert feature.shape == (1, 5, 5, 8)  # 37 -> 19 -> 10 -> 5


@pytest.mark.parametrize("name", ["genet_light", "genet_normal", "table6_net5"])
@pytest.mark.usefixtures("full_float32_products")
def test_folded_model_matches(name):
    model = g.create_model(name, num_classes=10, resolution=64)
    variables = random_variables(model)
    x = jax.random.normal(jax.random.PRNGKey(2), (4, 64, 64, 3))
    reference = jax.jit(model.apply)(variables, x)
    folded_model = g.create_model(name, num_classes=10, resolution=64, fold_bn=True)
    folded = g.fold_batch_norm(variables)
    assert set(folded) == {"params"}
    flat = traverse_util.flatten_dict(folded["params"], sep="/")
    assert not any("/bn/" in k for k in flat) and "stage0/unit0/conv1/conv/bias" in flat
    expected = variable_shapes(folded_model)
    assert jax.tree_util.tree_structure(folded) == jax.tree_util.tree_structure(expected)
    assert jax.tree_util.tree_map(lambda a: a.shape, folded) == jax.tree_util.tree_map(lambda a: a.shape, expected)
    logits = jax.jit(folded_model.apply)(folded, x)
    relative = float(jnp.max(jnp.abs(logits - reference)) / jnp.max(jnp.abs(reference)))
    assert relative <= 1e-5, relative


def test_fold_needs_batch_stats():
    with pytest.raises(ValueError, match="batch_stats"):
        g.fold_batch_norm({"params": {}})


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_reduced_precision_keeps_float32_state(dtype):
    model = g.create_model("genet_light", num_classes=10, resolution=64, dtype=dtype)
    variables = random_variables(model)
    assert {a.dtype for a in jax.tree_util.tree_leaves(variables)} == {jnp.dtype(jnp.float32)}
    x = jax.random.normal(jax.random.PRNGKey(3), (2, 64, 64, 3))
    jaxpr = str(jax.make_jaxpr(model.apply)(variables, x))
    short_name = {"bfloat16": "bf16", "float16": "f16"}[dtype]
    assert f"{short_name}[2,32,32,13]" in jaxpr  # the stem runs in the compute dtype
    logits, updates = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
    assert logits.dtype == jnp.float32
    assert {a.dtype for a in jax.tree_util.tree_leaves(updates)} == {jnp.dtype(jnp.float32)}
    full = jax.jit(g.create_model("genet_light", num_classes=10, resolution=64).apply)(variables, x)
    reduced = jax.jit(model.apply)(variables, x)
    assert float(jnp.max(jnp.abs(reduced - full)) / jnp.max(jnp.abs(full))) < 0.05


def test_unknown_dtype_is_an_error():
    with pytest.raises(SpecError, match="dtype"):
        g.create_model("genet_light", dtype="int8")


def test_train_mode_updates_statistics_and_zero_init():
    model = g.create_model("genet_light", num_classes=5, resolution=32, zero_init_last_bn=True)
    variables = g.init_variables(model)  # the real initialiser, once
    flat = traverse_util.flatten_dict(variables["params"], sep="/")
    assert np.all(flat["stage2/unit3/conv3/bn/scale"] == 0) and np.all(flat["stage0/unit0/conv2/bn/scale"] == 0)
    assert np.all(flat["stage2/unit3/conv2/bn/scale"] == 1) and np.all(flat["stage0/unit0/shortcut/bn/scale"] == 1)
    x = jax.random.normal(jax.random.PRNGKey(4), (8, 32, 32, 3))
    _, updates = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
    before = traverse_util.flatten_dict(variables["batch_stats"], sep="/")["stem/bn/mean"]
    after = traverse_util.flatten_dict(updates["batch_stats"], sep="/")["stem/bn/mean"]
    assert not np.allclose(before, after)


def test_zero_init_unit_is_its_shortcut():
    # With the last BN scale at zero a stride-1 identity unit is ReLU(x): the network starts shallow.
    spec = NetworkSpec(8, (SuperBlockSpec("XX", 2, 8, 1), SuperBlockSpec("BL", 2, 16, 2, 3, 0.5)), 16,
                       num_classes=2, resolution=32)
    model = g.MasterNet(spec, zero_init_last_bn=True)
    variables = g.init_variables(model)
    x = jax.random.normal(jax.random.PRNGKey(5), (1, 32, 32, 3))
    _, state = model.apply(variables, x, capture_intermediates=True, mutable=["intermediates"])
    inter = state["intermediates"]
    stem_out = inter["stem"]["__call__"][0]
    assert np.allclose(inter["stage0"]["unit1"]["__call__"][0], stem_out)


def test_initialisation_scales():
    # He-normal over fan-out per group (timm's byobnet convention): depthwise kernels get 2/(k*k).
    spec = NetworkSpec(32, (SuperBlockSpec("DW", 1, 64, 2, 5, 4.0),), 64, num_classes=10, resolution=32)
    params = traverse_util.flatten_dict(g.init_variables(g.MasterNet(spec))["params"], sep="/")
    depthwise = np.asarray(params["stage0/unit0/conv2/conv/kernel"])  # (5, 5, 1, 256)
    pointwise = np.asarray(params["stage0/unit0/conv1/conv/kernel"])  # (1, 1, 32, 256)
    assert depthwise.std() == pytest.approx(np.sqrt(2 / 25), rel=0.1)
    assert pointwise.std() == pytest.approx(np.sqrt(2 / 256), rel=0.1)
    assert np.asarray(params["head/kernel"]).std() == pytest.approx(0.01, rel=0.1)
    assert np.all(np.asarray(params["head/bias"]) == 0)
