"""Parameter and multiply-add counts of a built Flax module, by abstract evaluation: the check on
genet_jax.arch.counting's arithmetic (the tests assert both agree for every named network)."""
from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def variables_params(params) -> int:
    """Number of scalars in a parameter tree."""
    return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(params)))


def module_counts(model: nn.Module, resolution: Optional[int] = None) -> tuple[int, int]:
    """(parameters, multiply-adds) of a built model, by abstract evaluation (no FLOPs executed).

    Multiply-adds are read off every nn.Conv / nn.Dense call: kernel size x output positions.
    """
    macs = []

    def record(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        module = context.module
        if context.method_name == "__call__" and isinstance(module, (nn.Conv, nn.Dense)):
            kernel = module.variables["params"]["kernel"]
            positions = int(np.prod(out.shape[1:-1])) if out.ndim > 2 else 1
            macs.append(int(np.prod(kernel.shape)) * positions)
        return out

    x = jax.ShapeDtypeStruct(model.input_shape(1, resolution), jnp.float32)

    def init(x):
        with nn.intercept_methods(record):
            return model.init(jax.random.PRNGKey(0), x)

    variables = jax.eval_shape(init, x)
    return variables_params(variables["params"]), sum(macs)
