"""Exponential moving average of the weights (timm's model EMA, `optim.ema_decay`).

After every optimizer update, ema <- decay * ema + (1 - decay) * weights, over the parameters and
the BN running statistics alike (as timm's ModelEmaV2/V3 average every float entry of the state
dict), so the averaged model evaluates with statistics that match its averaged weights. The decay
warms up as in timm's ModelEmaV3: update t (0-based) uses min(ema_decay, 1 - (1 + t)^-power), so
the first update copies the weights and a short run is not dominated by its initialisation.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax


def decay_at(ema_decay: float, warmup_power: float, update: jax.Array) -> jax.Array:
    """The decay of optimizer update `update` (0-based); `warmup_power` 0: no warm-up."""
    if warmup_power <= 0:
        return jnp.asarray(ema_decay, jnp.float32)
    warm = 1.0 - (1.0 + jnp.asarray(update, jnp.float32)) ** (-warmup_power)
    return jnp.minimum(jnp.float32(ema_decay), warm)


def update(ema: Any, variables: Any, decay: jax.Array) -> Any:
    """decay * ema + (1 - decay) * variables, leaf by leaf."""
    return optax.incremental_update(variables, ema, 1.0 - decay)


def copy_of(variables: Any) -> Any:
    """A copy that shares no buffer with `variables` (the train state is donated to each step)."""
    return jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), variables)
