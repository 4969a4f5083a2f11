"""Shared test utilities."""
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util


def variable_shapes(model, resolution=None):
    """The model's variable tree as ShapeDtypeStructs, without compiling or running init."""
    x = jax.ShapeDtypeStruct(model.input_shape(1, resolution), jnp.float32)
    return jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), x)


def random_variables(model, seed=0, resolution=None):
    """He-scaled random kernels, random BN affine parameters and non-trivial running statistics.

    Filled with NumPy: a jitted Flax init of a deep net costs several seconds of XLA compile on
    this CPU, and these tests need values, not the initialiser.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for collection, tree in variable_shapes(model, resolution).items():
        flat = traverse_util.flatten_dict(tree)
        for path, leaf in flat.items():
            shape, name = leaf.shape, path[-1]
            if name == "kernel":
                fan_in = int(np.prod(shape[:-1]))
                value = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
            elif name in ("scale", "var"):
                value = rng.uniform(0.5, 1.5 if name == "scale" else 2.0, shape)
            else:  # BN bias, running mean, conv/head bias
                value = rng.normal(0.0, 0.2, shape)
            flat[path] = jnp.asarray(value, jnp.float32)
        out[collection] = traverse_util.unflatten_dict(flat)
    return out
