"""The paper's optimiser: SGD with Nesterov momentum, linear warm-up then cosine decay, the
learning rate scaled by global batch / 256, weight decay only on conv and dense kernels."""
from __future__ import annotations

import jax
import optax


def learning_rate_schedule(optim, global_batch: int, total_steps: int, steps_per_epoch: float) -> optax.Schedule:
    peak = optim.lr_per_256 * global_batch / 256.0
    warmup = min(int(round(optim.warmup_epochs * steps_per_epoch)), max(total_steps - 1, 0))
    return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(total_steps, warmup + 1), end_value=0.0)


def decay_mask(params):
    """True for kernels (ndim > 1); BN scale/bias and biases are not decayed."""
    return jax.tree_util.tree_map(lambda p: p.ndim > 1, params)


def make_optimizer(optim, schedule: optax.Schedule) -> optax.GradientTransformation:
    parts = []
    if optim.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(optim.grad_clip_norm))
    parts.append(optax.add_decayed_weights(optim.weight_decay, mask=decay_mask))  # PyTorch-style coupled decay
    parts.append(optax.sgd(schedule, momentum=optim.momentum or None, nesterov=optim.nesterov and optim.momentum > 0))
    return optax.chain(*parts)
