"""Fold every inference-mode BatchNorm into the conv before it.

    y = gamma * (conv(x, W) - mean) / sqrt(var + eps) + beta
      = conv(x, W * s) + (beta - mean * s),   s = gamma / sqrt(var + eps)

The scale applies per output channel, the last axis of a Flax HWIO kernel (also for depthwise
kernels, whose shape is (k, k, 1, C)). The result runs on `create_model(..., fold_bn=True)`.
"""
from __future__ import annotations

from typing import Mapping

import jax.numpy as jnp
from flax import traverse_util

from genet_jax.models.layers import BN_EPSILON


def fold_batch_norm(variables: Mapping, epsilon: float = BN_EPSILON) -> dict:
    """{'params', 'batch_stats'} of an unfolded model -> {'params'} of the folded model."""
    if "batch_stats" not in variables:
        raise ValueError("fold_batch_norm needs 'batch_stats' (the variables of an unfolded model); "
                         f"got collections {sorted(variables)}")
    params = traverse_util.flatten_dict(dict(variables["params"]))
    stats = traverse_util.flatten_dict(dict(variables["batch_stats"]))
    folded = {}
    for path, value in params.items():
        if "bn" in path:
            continue
        prefix, leaf = path[:-2], path[-1]
        if path[-2] == "conv" and leaf == "kernel" and prefix + ("bn", "scale") in params:
            scale = params[prefix + ("bn", "scale")] * jnp.reciprocal(
                jnp.sqrt(stats[prefix + ("bn", "var")] + epsilon))
            folded[path] = value * scale
            folded[prefix + ("conv", "bias")] = params[prefix + ("bn", "bias")] - stats[prefix + ("bn", "mean")] * scale
        else:
            folded[path] = value
    return {"params": traverse_util.unflatten_dict(folded)}
