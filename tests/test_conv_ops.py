"""The per-backend conv kernels (genet_jax.models.conv_ops) agree with lax.conv_general_dilated, in value
and gradient, and a network gives the same logits and parameters whichever is used. Every float32
product runs at full float32 precision here, on any platform: the kernel sets are compared, not the
hardware's reduced-precision modes."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import genet_jax as g
from genet_jax.models import conv_ops
from tests.helpers import calibrated_variables, variable_shapes

NHWC = ("NHWC", "HWIO", "NHWC")
pytestmark = pytest.mark.usefixtures("full_float32_products")


def lax_conv(x, w, stride, pad, groups=1):
    return lax.conv_general_dilated(x, w, (stride, stride), ((pad, pad), (pad, pad)), dimension_numbers=NHWC,
                                    feature_group_count=groups)


def taps_conv(x, w, stride, pad, groups=1):
    dn = lax.conv_dimension_numbers(x.shape, w.shape, NHWC)
    return conv_ops.taps_conv_general_dilated(x, w, (stride, stride), ((pad, pad), (pad, pad)),
                                              dimension_numbers=dn, feature_group_count=groups)


@pytest.mark.parametrize("kernel,stride,size", [(3, 1, 7), (3, 2, 7), (3, 2, 8), (5, 1, 9), (5, 2, 10)])
def test_depthwise_taps_match_lax_values_and_gradients(kernel, stride, size):
    channels, pad = 12, (kernel - 1) // 2
    x = jax.random.normal(jax.random.key(0), (3, size, size, channels))
    w = jax.random.normal(jax.random.key(1), (kernel, kernel, 1, channels))
    expected = lax_conv(x, w, stride, pad, channels)
    got = taps_conv(x, w, stride, pad, channels)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)  # float32 summation order only

    def loss(conv):
        return lambda x, w: jnp.sum(jnp.sin(conv(x, w, stride, pad, channels)))

    grads_lax = jax.grad(loss(lax_conv), argnums=(0, 1))(x, w)
    grads_taps = jax.grad(loss(taps_conv), argnums=(0, 1))(x, w)
    for a, b in zip(grads_taps, grads_lax):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


def test_depthwise_taps_bfloat16_accumulates_in_float32():
    x = jax.random.normal(jax.random.key(0), (2, 6, 6, 16))
    w = jax.random.normal(jax.random.key(1), (5, 5, 1, 16))
    expected = lax_conv(x, w, 1, 2, 16)
    got = taps_conv(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), 1, 2, 16)
    assert got.dtype == jnp.bfloat16
    # bfloat16 inputs carry ~3 significant digits; 25 taps summed in float32 stay within that.
    np.testing.assert_allclose(got.astype(jnp.float32), expected, atol=0.1, rtol=0.03)


@pytest.mark.parametrize("stride,size", [(1, 6), (2, 6), (2, 7)])
def test_pointwise_matmul_matches_lax(stride, size):
    x = jax.random.normal(jax.random.key(0), (2, size, size, 8))
    w = jax.random.normal(jax.random.key(1), (1, 1, 8, 24))
    expected = lax_conv(x, w, stride, 0)
    np.testing.assert_allclose(taps_conv(x, w, stride, 0), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kernel,stride,size", [(5, 1, 4), (5, 2, 4), (3, 1, 2), (3, 2, 1), (5, 1, 3)])
def test_dense_taps_on_inputs_smaller_than_the_kernel_match_lax(kernel, stride, size):
    x = jax.random.normal(jax.random.key(0), (3, size, size, 6))
    w = jax.random.normal(jax.random.key(1), (kernel, kernel, 6, 10))
    pad = (kernel - 1) // 2
    np.testing.assert_allclose(taps_conv(x, w, stride, pad), lax_conv(x, w, stride, pad), atol=1e-5, rtol=1e-5)

    def loss(conv):
        return lambda x, w: jnp.sum(jnp.sin(conv(x, w, stride, pad)))

    for a, b in zip(jax.grad(loss(taps_conv), argnums=(0, 1))(x, w), jax.grad(loss(lax_conv), argnums=(0, 1))(x, w)):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)
    half = taps_conv(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), stride, pad)
    assert half.dtype == jnp.bfloat16


def test_other_convolutions_go_to_lax():
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 6))
    dense = jax.random.normal(jax.random.key(1), (3, 3, 6, 10))
    grouped = jax.random.normal(jax.random.key(2), (3, 3, 3, 10))  # 2 groups: not depthwise
    np.testing.assert_array_equal(taps_conv(x, dense, 2, 1), lax_conv(x, dense, 2, 1))
    np.testing.assert_array_equal(taps_conv(x, grouped, 1, 1, 2), lax_conv(x, grouped, 1, 1, 2))
    dn = lax.conv_dimension_numbers(x.shape, dense.shape, NHWC)
    same = conv_ops.taps_conv_general_dilated(x, dense, (1, 1), "SAME", dimension_numbers=dn)
    np.testing.assert_array_equal(same, lax.conv_general_dilated(x, dense, (1, 1), "SAME", dimension_numbers=dn))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.compat
def test_global_average_pool_as_a_matmul_matches_the_mean(dtype):
    x = jax.random.normal(jax.random.key(0), (3, 5, 6, 7)).astype(dtype)
    expected = jnp.mean(x, axis=(1, 2), dtype=jnp.float32)
    for impl in ("taps", "lax"):
        got = conv_ops.global_average_pool(x, impl)
        assert got.dtype == jnp.float32 and got.shape == (3, 7)
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)  # both accumulate in float32
    grad = lambda impl: jax.grad(lambda x: jnp.sum(conv_ops.global_average_pool(x, impl) ** 2))(  # noqa: E731
        x.astype(jnp.float32))
    np.testing.assert_allclose(grad("taps"), grad("lax"), rtol=1e-6, atol=1e-7)


def test_conv_impl_names():
    assert conv_ops.resolve_conv_impl("lax") == "lax"
    assert conv_ops.resolve_conv_impl("auto") == ("taps" if jax.default_backend() == "cpu" else "lax")
    with pytest.raises(ValueError, match="conv_impl"):
        conv_ops.resolve_conv_impl("cudnn")
    with pytest.raises(ValueError, match="conv_impl"):
        g.create_model("genet_light", conv_impl="fast")


@pytest.mark.parametrize("name", ["genet_light", "table6_net12"])
def test_network_is_the_same_with_either_kernel_set(name):
    spec = g.resolve_spec(name, resolution=64)
    taps, reference = g.create_model(spec, conv_impl="taps"), g.create_model(spec, conv_impl="lax")
    variables = calibrated_variables(reference, seed=3)
    assert variable_shapes(taps, 64) == variable_shapes(reference, 64)
    x = jax.random.normal(jax.random.key(4), (2, 64, 64, 3))
    expected = reference.apply(variables, x)
    np.testing.assert_allclose(taps.apply(variables, x), expected, atol=1e-4, rtol=1e-4)
    train_taps, _ = taps.apply(variables, x, train=True, mutable=["batch_stats"])
    train_lax, _ = reference.apply(variables, x, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(train_taps, train_lax, atol=1e-4, rtol=1e-4)
