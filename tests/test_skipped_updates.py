"""A step whose update is skipped (a float16 gradient overflow) changes nothing the next steps read:
the optimizer's count, the learning rate logged, the EMA's warm-up and the weights all count applied
updates, so a run with skipped steps equals the run that never had them."""
import jax
import numpy as np
import pytest

import genet_jax as g
from configs.common import base_config
from genet_jax.training import optim, steps
from tests.helpers import TINY

OVERFLOWING_LOSS_SCALE = 2.0 ** 100  # finite in float32, inf once the loss's cotangent is cast to float16
TOTAL_STEPS, STEPS_PER_EPOCH = 50, 10


def setup():
    config = base_config()
    config.dtype = "float16"
    config.optim.ema_decay, config.optim.warmup_epochs = 0.9, 0.5
    model = g.create_model(TINY, dtype="float16", conv_impl="lax")
    schedule = optim.learning_rate_schedule(config.optim, 256, TOTAL_STEPS, STEPS_PER_EPOCH)
    tx = optim.make_optimizer(config.optim, schedule)
    mesh = steps.create_mesh(jax.devices()[:1])
    step = steps.jit_train_step(steps.make_train_step(model, tx, config, schedule, mesh=mesh), mesh)
    replicated = steps.shardings(mesh)[0]  # as the step returns it: one compilation for every call
    state = steps.init_state(g.init_variables(model), tx, steps.initial_loss_scale(config), with_ema=True)
    state = jax.device_put(state, replicated)
    rng = np.random.default_rng(0)
    batches = [{"image": rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8),
                "label": rng.integers(0, 10, 8).astype(np.int32)} for _ in range(3)]
    return step, jax.tree_util.tree_map(np.array, jax.device_get(state)), batches, replicated


def run(step, host_state, replicated, batches, overflow_at=()):
    """The state after the batches and each step's metrics; the steps in `overflow_at` overflow."""
    key, logged = jax.random.PRNGKey(0), []
    state = jax.device_put(host_state, replicated)  # the step donates it
    for index, batch in enumerate(batches):
        if index in overflow_at:
            scale, streak = jax.device_get((state.loss_scale, state.finite_streak))  # the step donates them
            overflowing = jax.device_put(np.float32(OVERFLOWING_LOSS_SCALE), replicated)
            state, metrics = step(state.replace(loss_scale=overflowing), batch, key, None)
            state = state.replace(loss_scale=jax.device_put(scale, replicated),
                                  finite_streak=jax.device_put(streak, replicated))
        else:
            state, metrics = step(state, batch, key, None)
        logged.append(jax.device_get(metrics))
    return state, logged


def test_a_run_with_overflowed_steps_equals_the_run_without_them():
    step, state, (first, skipped, last), replicated = setup()
    overflowed, overflowed_metrics = run(step, state, replicated, [first, skipped, skipped, last], overflow_at=(1, 2))
    clean, clean_metrics = run(step, state, replicated, [first, last])
    assert int(overflowed.step) == 4 and int(steps.applied_updates(overflowed.opt_state)) == 2
    assert int(overflowed.nonfinite) == 0  # an overflow is not a divergence
    assert [float(m["lr"]) for m in overflowed_metrics] == pytest.approx(
        [float(clean_metrics[0]["lr"])] + [float(clean_metrics[1]["lr"])] * 3)
    for name in ("params", "batch_stats", "opt_state", "ema"):
        for a, b in zip(jax.tree_util.tree_leaves(getattr(overflowed, name)),
                        jax.tree_util.tree_leaves(getattr(clean, name))):
            np.testing.assert_array_equal(a, b, err_msg=name)
