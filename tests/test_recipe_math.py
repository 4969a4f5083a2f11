"""The training recipe's arithmetic against hand formulas: the distillation loss, weight decay
(which leaves it hits, and the exact move of SGD with momentum / Nesterov), the learning rate per
256 images with its warm-up and cosine decay, and the batch the step counts are measured in."""
import math

import jax
import numpy as np
import optax
import pytest
from flax import traverse_util

import genet_jax as g
from configs.common import base_config
from genet_jax.training import optim, steps
from genet_jax.training.bookkeeping import RunPlan
from tests.helpers import TINY, random_variables, tiny

NUM_CLASSES = 10  # TINY's and tiny()'s
STUDENT_NET = tiny(8, 8, [{"block_type": "XX", "depth": 1, "width": 8, "stride": 2}])  # compiles in 1 s
TEACHER_NET = tiny(16, 8, [{"block_type": "XX", "depth": 1, "width": 16, "stride": 2}])
TEMPERATURE = 2.5  # not 1: a missing T^2 or T changes the loss
TRUE_LABEL_WEIGHT, SOFT_LABEL_WEIGHT = 0.3, 0.7  # unequal: swapped weights change the loss
LOSS_SCALE = 4.0
STUDENT_LOGITS = np.array([1.5, -0.5, 0.25, 2.0, -1.0, 0.0, 0.75, -2.0, 1.0, 0.5])
TEACHER_LOGITS = np.array([3.0, 0.5, -1.0, 1.0, 0.0, -2.5, 2.0, 0.25, -0.5, 1.5])
BATCH = 4
FLOAT32_RELATIVE = 1e-6  # float32 results against float64 hand arithmetic
MOVE_RELATIVE = 1e-5  # a move of a few % of a float32 weight, read back as the difference of two weights


def with_fixed_logits(model, logits, seed):
    """Real variables of `model` whose head maps every image to `logits`: a zero kernel, the logits
    as bias (exact in float32, whatever the features and BN mode)."""
    variables = random_variables(model, seed)
    head = variables["params"]["head"]
    head["kernel"] = np.zeros_like(head["kernel"])
    head["bias"] = np.asarray(logits, np.float32)
    return variables


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def cross_entropy(logits, targets):
    """Mean over the batch of -sum_c targets_c log softmax(logits)_c."""
    return float(np.mean(-(targets * log_softmax(logits)).sum(-1)))


def test_distillation_loss_is_the_weighted_hard_and_temperature_scaled_soft_loss():
    config = base_config()
    config.teacher.temperature = TEMPERATURE
    config.teacher.true_label_weight, config.teacher.soft_label_weight = TRUE_LABEL_WEIGHT, SOFT_LABEL_WEIGHT
    student, teacher = g.create_model(STUDENT_NET), g.create_model(TEACHER_NET)
    variables = with_fixed_logits(student, STUDENT_LOGITS, seed=0)
    rng = np.random.default_rng(0)
    targets = rng.dirichlet(np.ones(NUM_CLASSES), BATCH)  # soft targets, as label smoothing / mixup make
    images = rng.standard_normal(student.input_shape(BATCH)).astype(np.float32)
    loss_fn = jax.jit(steps.make_loss_fn(student, config, teacher))
    scaled, (loss, logits, _) = loss_fn(
        params=variables["params"], batch_stats=variables["batch_stats"], images=images,
        targets=targets.astype(np.float32), loss_scale=LOSS_SCALE,
        teacher_variables=with_fixed_logits(teacher, TEACHER_LOGITS, seed=1))

    np.testing.assert_array_equal(logits, np.broadcast_to(STUDENT_LOGITS.astype(np.float32), logits.shape))
    student_logits = np.broadcast_to(STUDENT_LOGITS, (BATCH, NUM_CLASSES))
    teacher_probabilities = np.exp(log_softmax(np.broadcast_to(TEACHER_LOGITS, (BATCH, NUM_CLASSES)) / TEMPERATURE))
    hard = cross_entropy(student_logits, targets)
    soft = TEMPERATURE ** 2 * cross_entropy(student_logits / TEMPERATURE, teacher_probabilities)
    expected = TRUE_LABEL_WEIGHT * hard + SOFT_LABEL_WEIGHT * soft
    assert float(loss) == pytest.approx(expected, rel=FLOAT32_RELATIVE)
    assert float(scaled) == pytest.approx(LOSS_SCALE * expected, rel=FLOAT32_RELATIVE)


WEIGHT_DECAY = 0.05  # large, so the decay's move is far above float32 rounding
LR_PER_256 = 0.4


def real_params(spec):
    """A real MasterNet's parameter tree, filled on the host."""
    return random_variables(g.create_model(spec))["params"]


def test_weight_decay_applies_to_every_kernel_and_nothing_else():
    # TINY: XX, BL and DW units (dense, 1x1 and depthwise kernels), BN scales and biases, the head
    flat_mask = traverse_util.flatten_dict(optim.decay_mask(real_params(TINY)))
    names = {path[-1] for path in flat_mask}
    assert names == {"kernel", "scale", "bias"}
    assert ("head", "bias") in flat_mask and ("stage2", "unit0", "conv2", "conv", "kernel") in flat_mask  # DW
    for path, decayed in flat_mask.items():
        assert decayed == (path[-1] == "kernel"), path


@pytest.mark.parametrize("momentum,nesterov", [(0.9, True), (0.9, False), (0.0, False)])
def test_zero_gradient_updates_move_only_the_kernels_by_the_decay(momentum, nesterov):
    """PyTorch-style coupled decay: the gradient gains wd * param before SGD. Momentum buffer
    b_t = g_t + m b_{t-1} (b_0 = g_0); the step is b_t, or g_t + m b_t with Nesterov, times the
    learning rate. So the first update moves a kernel by lr * wd * param, (1 + m) times that with
    Nesterov; the second one carries the momentum of the first."""
    config = base_config()
    config.optim.update(weight_decay=WEIGHT_DECAY, lr_per_256=LR_PER_256, warmup_epochs=0.0, momentum=momentum,
                        nesterov=nesterov)
    schedule = optim.learning_rate_schedule(config.optim, 256, total_steps=100, steps_per_epoch=10)
    tx = optim.make_optimizer(config.optim, schedule)
    params = real_params(STUDENT_NET)  # kernels, BN scales and biases, the head's bias: few leaves, quick
    zeros = jax.tree_util.tree_map(np.zeros_like, params)

    @jax.jit  # one compilation: eagerly, every leaf's ops dispatch one by one (3 s)
    def two_updates(params):
        opt_state = tx.init(params)
        updates, opt_state = tx.update(zeros, opt_state, params)
        once = optax.apply_updates(params, updates)
        updates, opt_state = tx.update(zeros, opt_state, once)
        return once, optax.apply_updates(once, updates)

    once, twice = two_updates(params)

    lr = [float(schedule(0)), float(schedule(1))]
    assert lr[0] == pytest.approx(LR_PER_256)  # no warm-up: the peak at once
    first_factor = (1 + momentum) if nesterov else 1.0
    flat = [traverse_util.flatten_dict(tree) for tree in (params, once, twice)]
    for path, p0 in flat[0].items():
        p0, p1, p2 = (np.asarray(f[path], np.float64) for f in (flat[0], flat[1], flat[2]))
        if path[-1] != "kernel":
            assert np.array_equal(p1, p0) and np.array_equal(p2, p0), path
            continue
        np.testing.assert_allclose(p0 - p1, first_factor * lr[0] * WEIGHT_DECAY * p0, rtol=MOVE_RELATIVE,
                                   err_msg=str(path))
        g1 = WEIGHT_DECAY * p1
        b1 = g1 + momentum * WEIGHT_DECAY * p0  # b_0 = g_0 = wd * p0
        step = g1 + momentum * b1 if nesterov else b1
        np.testing.assert_allclose(p2, p1 - lr[1] * step, rtol=FLOAT32_RELATIVE, err_msg=str(path))


def hand_learning_rate(step, peak, warmup, total):
    """Linear from 0 to `peak` over `warmup` steps, then half a cosine down to 0 at `total`."""
    if step < warmup:
        return peak * step / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


@pytest.mark.parametrize("global_batch", [128, 512])
def test_learning_rate_is_per_256_images_with_warmup_in_steps_then_cosine_to_zero(global_batch):
    config = base_config()
    config.optim.update(lr_per_256=LR_PER_256, warmup_epochs=2.0)
    steps_per_epoch, total = 12.3, 125  # warm-up: 2 * 12.3 = 24.6 epochs' steps, rounded to 25
    schedule = optim.learning_rate_schedule(config.optim, global_batch, total, steps_per_epoch)
    peak = LR_PER_256 * global_batch / 256
    for step in (0, 1, 10, 24, 25, 26, 50, 75, 100, 124, 125):
        expected = hand_learning_rate(step, peak, warmup=25, total=total)
        assert float(schedule(step)) == pytest.approx(expected, abs=FLOAT32_RELATIVE * peak), step
    assert float(schedule(75)) == pytest.approx(peak / 2)  # half-way through the decay
    too_long = base_config().optim
    too_long.update(lr_per_256=LR_PER_256, warmup_epochs=100.0)  # longer than the run: peak at its last step
    clamped = optim.learning_rate_schedule(too_long, global_batch, 10, steps_per_epoch)
    assert float(clamped(9)) == pytest.approx(peak) and float(clamped(10)) == 0.0


def test_run_plan_counts_epochs_in_global_batches_of_optimizer_steps():
    """config.batch_size is the global batch: an epoch is examples / batch_size optimizer steps,
    however many micro-batches (accumulate_steps) or hosts a step is split into; each host reads
    its share. (One process here: tests/test_multiprocess.py checks 2 x 4 devices against 1 x 8.)"""
    config = base_config()
    config.batch_size, config.data.eval_batch_size, config.optim.accumulate_steps = 64, 64, 4
    config.num_epochs, config.eval_every_epochs = 3.0, 1.0
    plan = RunPlan.from_config(config, num_train_examples=1000)
    assert plan.steps_per_epoch == pytest.approx(1000 / 64)
    assert plan.total_steps == math.ceil(3 * 1000 / 64) and plan.eval_every == math.ceil(1000 / 64)
    assert plan.per_host_batch * jax.process_count() == config.batch_size


@pytest.mark.parametrize("examples", [40_000, 1_231_167])  # 39.06 and (ImageNet less LLR-NAS's 50k) 1202.3 steps
def test_evaluating_every_num_epochs_evaluates_once_at_the_end(examples):
    """Rounded, the period was one step short of the ceil-ed run: two evaluations and checkpoints."""
    config = base_config()
    config.batch_size, config.data.eval_batch_size = 1024, 1024
    config.num_epochs = config.eval_every_epochs = 1.0
    plan = RunPlan.from_config(config, num_train_examples=examples)
    assert [step for step in range(1, plan.total_steps + 1) if plan.is_eval_step(step)] == [plan.total_steps]
