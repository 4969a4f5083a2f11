"""Weight EMA (optim.ema_decay) and gradient accumulation (optim.accumulate_steps): the update and
its warm-up, the train step, what export / predict / evaluate read, and accumulated steps equal
to one step over the whole batch."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import genet_jax as g
from configs.common import base_config
from genet_jax import export
from genet_jax.checkpoint import EMA_WEIGHTS, RAW_WEIGHTS, load_model_checkpoint
from genet_jax.predict import predict_images
from genet_jax.training import augment_device, ema, optim, steps
from tests.conftest import REPO_ROOT
from tests.helpers import TINY, tiny_args
from tests.processes import devices_env

DECAY, POWER = 0.99, 0.75
STEP_TOLERANCE = 1e-6  # float32 arithmetic done in a different order (scan vs by hand)
LOSS_DROP = 0.1  # of the 4x accumulated run's training loss over 20 steps (measured: about 0.3)


def test_the_ema_decay_warms_up_from_a_copy_to_the_configured_decay():
    assert float(ema.decay_at(DECAY, POWER, 0)) == 0.0  # the first update copies the weights
    assert float(ema.decay_at(DECAY, POWER, 1)) == pytest.approx(1 - 2 ** -POWER)
    warm = [float(ema.decay_at(DECAY, POWER, t)) for t in range(0, 2000, 50)]
    assert warm == sorted(warm) and warm[-1] == pytest.approx(DECAY)
    assert float(ema.decay_at(DECAY, 0.0, 0)) == pytest.approx(DECAY)  # power 0: no warm-up


def test_the_ema_update_is_the_moving_average_of_every_leaf():
    average = {"params": {"w": jnp.array([1.0, 2.0])}, "batch_stats": {"mean": jnp.array([0.0])}}
    weights = {"params": {"w": jnp.array([3.0, 6.0])}, "batch_stats": {"mean": jnp.array([10.0])}}
    new = ema.update(average, weights, jnp.float32(0.75))
    np.testing.assert_allclose(new["params"]["w"], [1.5, 3.0])
    np.testing.assert_allclose(new["batch_stats"]["mean"], [2.5])


def tiny_setup(accumulate_steps=1, ema_decay=0.0, batch=8):
    config = base_config()
    config.optim.accumulate_steps, config.optim.ema_decay, config.optim.ema_warmup_power = \
        accumulate_steps, ema_decay, POWER
    config.optim.warmup_epochs = 0.0
    model = g.create_model(TINY)
    schedule = optim.learning_rate_schedule(config.optim, batch, 100, 10)
    tx = optim.make_optimizer(config.optim, schedule)
    state = steps.init_state(g.init_variables(model), tx, with_ema=ema_decay > 0)
    rng = np.random.default_rng(0)
    batch = {"image": rng.integers(0, 256, (batch, 16, 16, 3), dtype=np.uint8),
             "label": rng.integers(0, 10, (batch,), dtype=np.int32)}
    return config, model, tx, schedule, state, batch


def leaves_close(a, b, tolerance=STEP_TOLERANCE):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(x, y, rtol=tolerance, atol=tolerance)


def test_a_train_step_averages_the_weights_and_bn_statistics():
    config, model, tx, schedule, state, batch = tiny_setup(ema_decay=DECAY)
    step = jax.jit(steps.make_train_step(model, tx, config, schedule))
    state = jax.device_put(state, jax.devices()[0])  # committed, as the step returns it: one compilation
    first, _ = step(state, batch, jax.random.PRNGKey(0), None)
    leaves_close(first.ema, first.variables, 0.0)  # update 0: decay 0, a copy
    second, _ = step(first, batch, jax.random.PRNGKey(0), None)
    decay = 1 - 2 ** -POWER
    expected = jax.tree_util.tree_map(lambda e, w: decay * e + (1 - decay) * w, first.ema, second.variables)
    leaves_close(second.ema, expected)  # parameters and BN running statistics alike
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(second.ema["batch_stats"]),
                                                        jax.tree_util.tree_leaves(state.batch_stats)))


def test_accumulated_gradients_equal_one_batch_without_bn():
    """A BN-free model: the mean gradient of k micro-batches of b rows equals that of one batch of k*b."""
    rng = np.random.default_rng(1)
    images, labels = rng.standard_normal((32, 12)).astype(np.float32), rng.integers(0, 5, 32).astype(np.int32)
    targets = jax.nn.one_hot(labels, 5)
    params = {"w": jnp.asarray(rng.standard_normal((12, 5)), jnp.float32)}

    def loss_fn(params, batch_stats, images, targets, loss_scale, teacher_variables):
        logits = images @ params["w"]
        loss = optax.softmax_cross_entropy(logits, targets).mean()
        return loss * loss_scale, (loss, logits, batch_stats)

    whole = steps.make_gradient_fn(loss_fn, 1)(params, {}, images, targets, labels, 1.0, None)
    accumulated = jax.jit(steps.make_gradient_fn(loss_fn, 4))(params, {}, images, targets, labels, 1.0, None)
    leaves_close(accumulated[0], whole[0])
    assert float(accumulated[1]) == pytest.approx(float(whole[1]), rel=STEP_TOLERANCE)
    assert float(accumulated[2]) == pytest.approx(float(whole[2]))


def test_an_accumulated_step_is_one_update_with_the_mean_micro_batch_gradient():
    """The real network, BN in training mode: 4 micro-batches (rows i, i+4, ...) each normalised by
    its own statistics, the running statistics updated 4 times in turn, and one optimizer update
    with the mean gradient at the schedule's first value."""
    k = 4
    config, model, tx, schedule, state, batch = tiny_setup(accumulate_steps=k, batch=16)
    new, metrics = jax.jit(steps.make_train_step(model, tx, config, schedule))(state, batch, jax.random.PRNGKey(0),
                                                                               None)
    loss_fn = steps.make_loss_fn(model, config)
    images = augment_device.normalize_images(jnp.asarray(batch["image"]), model.dtype)
    targets = augment_device.smooth_labels(jnp.asarray(batch["label"]), 10, config.augment.label_smoothing)
    grads, losses, stats = [], [], state.batch_stats
    value_and_grad = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    for i in range(k):
        (_, (loss, _, stats)), grad = value_and_grad(state.params, stats, images[i::k], targets[i::k], 1.0, None)
        grads.append(grad)
        losses.append(float(loss))
    mean_grad = jax.tree_util.tree_map(lambda *gs: sum(gs) / k, *grads)
    updates, _ = tx.update(mean_grad, state.opt_state, state.params)
    leaves_close(new.params, optax.apply_updates(state.params, updates))
    leaves_close(new.batch_stats, stats)
    assert int(new.step) == 1 and float(metrics["lr"]) == float(schedule(0))
    assert float(metrics["loss"]) == pytest.approx(np.mean(losses), rel=STEP_TOLERANCE)


def tensorboard_events(workdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # dev-only dependency
    events = EventAccumulator(str(workdir / "tensorboard"))
    events.Reload()
    return events


def test_four_times_accumulated_run_on_eight_devices_trains(tmp_path):
    """A global batch of 64 as 4 micro-batches of 16 over 8 devices (2 rows per device each, so BN's
    statistics are the micro-batch's over every device: per device, 2 rows are too few to learn)."""
    args = tiny_args(tmp_path, steps=20, **{"batch_size": 64, "optim.accumulate_steps": 4, "log_every_steps": 5,
                                            "checkpoint.every_steps": 100, "optim.lr_per_256": 2.0,
                                            "bn_statistics": "global"})
    done = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "train.py"), *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, env=devices_env(8))
    assert done.returncode == 0, done.stderr[-3000:]
    losses = [e.value for e in tensorboard_events(tmp_path).Scalars("train/loss")]
    assert len(losses) == 4 and losses[-1] < losses[0] - LOSS_DROP, losses
    bad = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "train.py"),
                          *tiny_args(tmp_path / "bad", **{"optim.accumulate_steps": 3})], cwd=REPO_ROOT,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "config.optim.accumulate_steps: batch_size 16 does not split into 3" in bad.stderr


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ema") / "run"
    done = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "train.py"),
                           *tiny_args(workdir, steps=12, **{"optim.ema_decay": 0.9})], cwd=REPO_ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "EMA weights" in done.stdout
    return workdir


def test_checkpoints_hold_both_weights_and_the_ema_is_the_default(ema_run):
    default, raw = load_model_checkpoint(ema_run), load_model_checkpoint(ema_run, raw=True)
    assert (default.weights, raw.weights) == (EMA_WEIGHTS, RAW_WEIGHTS)
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(default.variables),
                                                        jax.tree_util.tree_leaves(raw.variables)))
    metrics = json.loads((ema_run / "metrics.json").read_text())
    assert metrics["eval_ema"]["count"] == metrics["eval"]["count"] == 359
    assert {"eval/top1", "eval_ema/top1", "eval_ema/loss"} <= set(tensorboard_events(ema_run).Tags()["scalars"])


def test_predict_and_export_use_the_ema_weights_unless_told(ema_run, sample_jpegs, tmp_path):
    images = [str(p) for p in sample_jpegs[:3]]
    default, _ = predict_images(str(ema_run), images)
    raw, _ = predict_images(str(ema_run), images, raw_weights=True)
    assert [r["top_k"][0]["probability"] for r in default] != [r["top_k"][0]["probability"] for r in raw]
    for flag, expected in (([], load_model_checkpoint(ema_run)), (["--raw-weights"], load_model_checkpoint(
            ema_run, raw=True))):
        pth, back = tmp_path / f"model{len(flag)}.pth", tmp_path / f"back{len(flag)}"
        assert export.main(["torch", "--checkpoint", str(ema_run), "--format", "official", "--out", str(pth),
                            *flag]) == 0
        assert export.main(["import", str(pth), "--format", "official", "--out", str(back)]) == 0
        leaves_close(load_model_checkpoint(back).variables, expected.variables, 0.0)


def test_evaluate_reports_the_ema_weights_the_trainer_measured(ema_run):
    done = subprocess.run([sys.executable, "-m", "genet_jax.evaluate", f"--checkpoint={ema_run}"], cwd=REPO_ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    metrics = json.loads((ema_run / "metrics.json").read_text())
    assert report["weights"] == EMA_WEIGHTS and report["top1"] == pytest.approx(metrics["eval_ema"]["top1"])
