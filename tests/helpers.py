"""Shared test utilities."""
import csv
import json

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
            if path[0] == "head" and name == "kernel":  # the model's own head init: O(1) logits
                value = rng.normal(0.0, 0.01, shape)
            elif name == "kernel":
                fan_in = int(np.prod(shape[:-1]))
                value = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
            elif name in ("scale", "var"):
                value = rng.uniform(0.5, 1.5 if name == "scale" else 2.0, shape)
            else:  # BN bias, running mean, conv/head bias
                value = rng.normal(0.0, 0.2, shape)
            flat[path] = jnp.asarray(value, jnp.float32)
        out[collection] = traverse_util.unflatten_dict(flat)
    return out


def calibrated_variables(model, seed=0, resolution=64, batch_size=4):
    """random_variables whose BN running statistics are the batch statistics of a random batch,
    then perturbed (mean +- 0.1 std, var x U(0.8, 1.25)): non-trivial statistics that keep every
    activation O(1), so logits are O(1) and absolute tolerances mean something."""
    variables = random_variables(model, seed, resolution)
    zero_stats = jax.tree_util.tree_map(jnp.zeros_like, variables["batch_stats"])
    unit_stats = traverse_util.unflatten_dict({k: (jnp.ones_like(v) if k[-1] == "var" else v) for k, v in
                                               traverse_util.flatten_dict(zero_stats).items()})
    x = jax.random.normal(jax.random.PRNGKey(seed), (batch_size, resolution, resolution, model.spec.in_channels))
    _, updates = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(
        {"params": variables["params"], "batch_stats": unit_stats}, x)
    momentum = 0.9  # running = momentum * running + (1 - momentum) * batch
    rng = np.random.default_rng(seed + 1)
    stats = {}
    for path, value in traverse_util.flatten_dict(updates["batch_stats"]).items():
        value = np.asarray(value, np.float64)
        if path[-1] == "mean":
            batch_mean = value / (1 - momentum)
            var_path = path[:-1] + ("var",)
            running_var = np.asarray(traverse_util.flatten_dict(updates["batch_stats"])[var_path])
            batch_var = (running_var - momentum) / (1 - momentum)
            value = batch_mean + 0.1 * np.sqrt(np.maximum(batch_var, 1e-6)) * rng.standard_normal(value.shape)
        else:
            value = np.maximum((value - momentum) / (1 - momentum), 1e-3) * rng.uniform(0.8, 1.25, value.shape)
        stats[path] = jnp.asarray(value, jnp.float32)
    return {"params": variables["params"], "batch_stats": traverse_util.unflatten_dict(stats)}


def tiny(width=8, resolution=16, blocks=None):
    """Inline JSON of a two-super-block network small enough to time in milliseconds."""
    return json.dumps({"stem_width": width, "stem_stride": 1, "final_width": 2 * width, "num_classes": 10,
                       "resolution": resolution,
                       "blocks": blocks or [{"block_type": "XX", "depth": 1, "width": width, "stride": 2},
                                            {"block_type": "DW", "depth": 1, "width": 2 * width, "stride": 2,
                                             "ratio": 3.0}]})


class FakeTimer:
    """perf_counter stand-in: the k-th timed call lasts durations[k] seconds."""

    def __init__(self, durations):
        self.durations = list(durations)
        self.now, self.calls = 0.0, 0

    def __call__(self):
        if self.calls % 2 == 1:
            self.now += self.durations[self.calls // 2]
        self.calls += 1
        return self.now


def read_csv(path):
    """The rows of a CSV file the measurement tools write, as dicts of strings."""
    with open(path) as f:
        return list(csv.DictReader(f))


# A tiny GENet-shaped network (XX, BL, DW) for end-to-end training runs, and train.py arguments for it.
TINY = json.dumps({"stem_width": 8, "stem_stride": 1, "final_width": 32, "num_classes": 10, "resolution": 16,
                   "blocks": [{"block_type": "XX", "depth": 1, "width": 16, "stride": 2},
                              {"block_type": "BL", "depth": 1, "width": 32, "stride": 2, "ratio": 0.25},
                              {"block_type": "DW", "depth": 1, "width": 32, "stride": 1, "ratio": 3.0}]})


def tiny_args(workdir, steps=12, **overrides):
    """`--config.key=value` arguments of a short train.py run of TINY on the default (digits) config."""
    args = {"workdir": str(workdir), "model": TINY, "resolution": 16, "batch_size": 16, "num_train_steps": steps,
            "checkpoint.every_steps": 4, "log_every_steps": 2, "eval_every_epochs": 1000.0,
            "progress_bar": False, "data.eval_batch_size": 64, "optim.warmup_epochs": 0.1, **overrides}
    return [f"--config.{k}={v}" for k, v in args.items()]
