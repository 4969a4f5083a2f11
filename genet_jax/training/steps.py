"""Train and eval steps: pure functions of (state, batch), jit-compiled over a 1-D device mesh with
the batch sharded along 'data' and the state replicated.

The train step is data-parallel as PyTorch's DistributedDataParallel: under `shard_map` each device
runs the forward and backward pass on its own rows, and what crosses devices is explicit: the
gradients, the step's metrics and, with `bn_statistics` "per_device" (the authors' setting), one
average of the BN running statistics; with "global" BN's batch statistics are also averaged over
every device, in every BN layer, forward and backward (SyncBatchNorm). Mixup / CutMix partners are
rows of the same device, and each device draws its own lambda (as each of timm's processes does).
With a teacher, its logits come from the same augmented images.

With `optim.accumulate_steps` k > 1, one step still takes the whole global batch but runs it as k
micro-batches in sequence (a `lax.scan`: the activations of one micro-batch live at a time), sums
their gradients and makes one optimizer update. Micro-batch i holds rows i, i + k, ... of each
device's rows; BN normalises each micro-batch with its own statistics (as k separate batches would)
and updates its running statistics k times per step.

The learning-rate schedule and the EMA warm-up count applied optimizer updates (optax's count): a
step skipped for a non-finite loss or a float16 overflow changes neither."""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from genet_jax.models.network import MasterNet, canonical_dtype
from genet_jax.training import augment_device, ema

DATA_AXIS = "data"
BN_PER_DEVICE, BN_GLOBAL = "per_device", "global"
BN_STATISTICS = (BN_PER_DEVICE, BN_GLOBAL)  # config.bn_statistics


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    nonfinite: jax.Array  # steps whose loss was NaN/inf; those updates were not applied
    loss_scale: jax.Array  # float16 compute: dynamic loss scale; 1 otherwise
    finite_streak: jax.Array  # steps since the loss scale last changed
    ema: Any = None  # {'params', 'batch_stats'} averaged (optim.ema_decay > 0); checkpointed as its own item

    def train_fields(self) -> dict:
        """Everything but the model variables and their EMA (checkpointed as items of their own)."""
        return {"step": self.step, "opt_state": self.opt_state, "nonfinite": self.nonfinite,
                "loss_scale": self.loss_scale, "finite_streak": self.finite_streak}

    @property
    def variables(self) -> dict:
        return {"params": self.params, "batch_stats": self.batch_stats}


def create_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
    """A 1-D data-parallel mesh over `devices` (default: every device of every host)."""
    return Mesh(np.asarray(jax.devices() if devices is None else list(devices)), (DATA_AXIS,))


def shardings(mesh: Mesh) -> tuple[NamedSharding, NamedSharding]:
    """(replicated, batch-sharded)."""
    return NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def applied_updates(opt_state: Any) -> jax.Array:
    """How many optimizer updates were applied: optax's own step count, which a skipped step keeps."""
    return optax.tree.get(opt_state, "count")


def init_state(variables: dict, tx: optax.GradientTransformation, loss_scale: float = 1.0,
               with_ema: bool = False) -> TrainState:
    """The state before step 0; `with_ema`: the EMA starts as a copy of `variables`."""
    variables = {"params": variables["params"], "batch_stats": variables["batch_stats"]}
    return TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                      batch_stats=variables["batch_stats"], opt_state=tx.init(variables["params"]),
                      nonfinite=jnp.zeros((), jnp.int32), loss_scale=jnp.asarray(loss_scale, jnp.float32),
                      finite_streak=jnp.zeros((), jnp.int32), ema=ema.copy_of(variables) if with_ema else None)


def initial_loss_scale(config) -> float:
    """float16 gradients underflow without loss scaling; bfloat16 and float32 need none."""
    return float(config.optim.fp16_initial_loss_scale) if canonical_dtype(config.dtype) == jnp.float16 else 1.0


def make_loss_fn(model: MasterNet, config, teacher_model: Optional[MasterNet] = None) -> Callable:
    """loss_fn(params, batch_stats, images, targets, loss_scale, teacher_variables) ->
    (scaled loss, (loss, logits, new batch_stats)), to differentiate with respect to params."""

    def loss_fn(params, batch_stats, images, targets, loss_scale, teacher_variables):
        logits, updates = model.apply({"params": params, "batch_stats": batch_stats}, images,
                                      train=True, mutable=["batch_stats"])
        loss = optax.softmax_cross_entropy(logits, targets).mean()
        if teacher_model is not None:
            temperature = config.teacher.temperature
            soft = jax.nn.softmax(jax.lax.stop_gradient(
                teacher_model.apply(teacher_variables, images)) / temperature, axis=-1)
            soft_loss = optax.softmax_cross_entropy(logits / temperature, soft).mean() * temperature ** 2
            loss = config.teacher.true_label_weight * loss + config.teacher.soft_label_weight * soft_loss
        return loss * loss_scale, (loss, logits, updates["batch_stats"])

    return loss_fn


def micro_batches(x: jax.Array, count: int) -> jax.Array:
    """(B, ...) -> (count, B / count, ...): micro-batch i holds rows i, i + count, ..."""
    return x.reshape(x.shape[0] // count, count, *x.shape[1:]).swapaxes(0, 1)


def make_gradient_fn(loss_fn: Callable, accumulate_steps: int) -> Callable:
    """gradients(params, batch_stats, images, targets, labels, loss_scale, teacher_variables) ->
    (mean gradients of the scaled loss, mean loss, top-1, new batch_stats) over `accumulate_steps`
    micro-batches run in sequence (one batch when 1)."""
    value_and_grad = jax.value_and_grad(loss_fn, has_aux=True)

    def one_batch(params, batch_stats, images, targets, labels, loss_scale, teacher_variables):
        (_, (loss, logits, batch_stats)), grads = value_and_grad(params, batch_stats, images, targets, loss_scale,
                                                                 teacher_variables)
        return grads, loss, jnp.mean(jnp.argmax(logits, -1) == labels), batch_stats

    if accumulate_steps == 1:
        return one_batch

    def accumulated(params, batch_stats, images, targets, labels, loss_scale, teacher_variables):
        def micro_step(carry, micro):
            grad_sum, stats = carry
            grads, loss, top1, stats = one_batch(params, stats, *micro, loss_scale, teacher_variables)
            return (jax.tree_util.tree_map(jnp.add, grad_sum, grads), stats), (loss, top1)

        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        split = tuple(micro_batches(x, accumulate_steps) for x in (images, targets, labels))
        (grad_sum, batch_stats), (losses, top1s) = jax.lax.scan(micro_step, (zeros, batch_stats), split)
        grads = jax.tree_util.tree_map(lambda g: g / accumulate_steps, grad_sum)
        return grads, losses.mean(), top1s.mean(), batch_stats

    return accumulated


def make_train_step(model: MasterNet, tx: optax.GradientTransformation, config, schedule: optax.Schedule,
                    teacher_model: Optional[MasterNet] = None, mesh: Optional[Mesh] = None) -> Callable:
    """train_step(state, batch, base_key, teacher_variables) -> (state, metrics), data-parallel over
    `mesh` (default: every device). The teacher's variables are an argument, not a closure, so they
    are not baked into the compiled program.

    With float16 compute the loss is multiplied by a dynamic scale before differentiation: a step
    whose gradients overflow is skipped and halves the scale (it is not a divergence); every
    `optim.fp16_scale_growth_steps` finite steps double it.
    """
    aug, num_classes, optim = config.augment, model.spec.num_classes, config.optim
    dynamic_scale = jnp.dtype(model.dtype) == jnp.float16
    device_gradients = _sharded_gradients(model, config, teacher_model, create_mesh() if mesh is None else mesh)

    def train_step(state: TrainState, batch: dict, base_key: jax.Array, teacher_variables: Any = None):
        key = jax.random.fold_in(base_key, state.step)
        k_erase, k_mix = jax.random.split(key)
        images = augment_device.normalize_images(batch["image"], model.dtype)
        targets = augment_device.smooth_labels(batch["label"], num_classes, aug.label_smoothing)
        if aug.random_erase_prob > 0:
            images = augment_device.random_erasing(k_erase, images, aug.random_erase_prob)

        grads, loss, top1, batch_stats = device_gradients(state.params, state.batch_stats, images, targets,
                                                          batch["label"], state.loss_scale, k_mix, teacher_variables)
        grads = jax.tree_util.tree_map(lambda g: g / state.loss_scale, grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)  # any NaN/inf gradient makes the norm non-finite
        keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
        diverged = ~jnp.isfinite(loss) if dynamic_scale else ~finite  # fp16 gradient overflow: rescale, go on
        loss_scale, streak = _next_loss_scale(state, finite, dynamic_scale, optim.fp16_scale_growth_steps)
        params, batch_stats = keep(params, state.params), keep(batch_stats, state.batch_stats)
        update_index = applied_updates(state.opt_state)  # the index of this step's update, if it is applied
        averaged = state.ema
        if optim.ema_decay > 0:  # a step not applied leaves the EMA as it is: decay 1
            decay = jnp.where(finite, ema.decay_at(optim.ema_decay, optim.ema_warmup_power, update_index), 1.0)
            averaged = ema.update(state.ema, {"params": params, "batch_stats": batch_stats}, decay)
        new_state = TrainState(step=state.step + 1, params=params, batch_stats=batch_stats,
                               opt_state=keep(opt_state, state.opt_state),
                               nonfinite=state.nonfinite + diverged.astype(jnp.int32),
                               loss_scale=loss_scale, finite_streak=streak, ema=averaged)
        metrics = {"loss": loss, "top1": top1, "lr": schedule(update_index), "grad_norm": grad_norm}
        if dynamic_scale:
            metrics["loss_scale"] = state.loss_scale
        return new_state, metrics

    return train_step


def _sharded_gradients(model: MasterNet, config, teacher_model: Optional[MasterNet], mesh: Mesh) -> Callable:
    """gradients(params, batch_stats, images, targets, labels, loss_scale, mix_key, teacher_variables)
    -> (gradients of the mean scaled loss, mean loss, top-1, BN statistics), replicated, each device
    computing on its own rows of the batch-sharded images, targets and labels."""
    global_bn = config.bn_statistics == BN_GLOBAL
    model = model.clone(bn_axis_name=DATA_AXIS if global_bn else None)
    gradients = make_gradient_fn(make_loss_fn(model, config, teacher_model), config.optim.accumulate_steps)
    aug = config.augment

    def one_device(params, batch_stats, images, targets, labels, loss_scale, mix_key, teacher_variables):
        # As this device's own copies, the weights get this device's gradients (not yet summed over
        # devices), so accumulated micro-batches make one all-reduce, and the BN statistics this
        # device's (per_device) or already the global ones (global; averaging them changes nothing).
        params, batch_stats = jax.lax.pcast((params, batch_stats), DATA_AXIS, to="varying")
        mix_key = jax.random.fold_in(mix_key, jax.lax.axis_index(DATA_AXIS))  # a lambda per device, as timm's ranks
        images, targets = augment_device.mix_batch(mix_key, images, targets, aug.mixup_alpha, aug.cutmix_alpha)
        grads, loss, top1, batch_stats = gradients(params, batch_stats, images, targets, labels, loss_scale,
                                                   teacher_variables)
        return jax.lax.pmean((grads, loss, top1, batch_stats), DATA_AXIS)

    replicated, rows = PartitionSpec(), PartitionSpec(DATA_AXIS)
    return jax.shard_map(one_device, mesh=mesh, out_specs=replicated,
                         in_specs=(replicated, replicated, rows, rows, rows, replicated, replicated, replicated))


def _next_loss_scale(state: TrainState, finite: jax.Array, dynamic: bool, growth_steps: int):
    """(loss scale, finite streak) after a step: halve on overflow, double after `growth_steps`."""
    loss_scale, streak = state.loss_scale, state.finite_streak + 1
    if dynamic:
        grow = finite & (streak >= growth_steps)
        loss_scale = jnp.where(finite, jnp.where(grow, loss_scale * 2, loss_scale), loss_scale / 2)
        streak = jnp.where(finite & ~grow, streak, 0)
    return loss_scale, streak


def make_eval_step(model: MasterNet, flip_tta: bool = False) -> Callable:
    """With `flip_tta` the logits are the mean over each image and its horizontal mirror."""

    def eval_step(variables: dict, batch: dict) -> dict:
        images = augment_device.normalize_images(batch["image"], model.dtype)
        logits = model.apply(variables, images)
        if flip_tta:
            logits = 0.5 * (logits + model.apply(variables, images[:, :, ::-1]))
        mask = batch["mask"]
        labels = batch["label"]
        top5 = jax.lax.top_k(logits, min(5, logits.shape[-1]))[1]
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        return {"count": mask.sum(), "loss": (loss * mask).sum(),
                "top1": ((jnp.argmax(logits, -1) == labels) * mask).sum(),
                "top5": (jnp.any(top5 == labels[:, None], axis=-1) * mask).sum()}

    return eval_step


def jit_train_step(train_step, mesh: Mesh):
    replicated, batch_sharded = shardings(mesh)
    return jax.jit(train_step, in_shardings=(replicated, batch_sharded, replicated, replicated),
                   out_shardings=(replicated, replicated), donate_argnums=(0,))


def jit_eval_step(eval_step, mesh: Mesh):
    replicated, batch_sharded = shardings(mesh)
    return jax.jit(eval_step, in_shardings=(replicated, batch_sharded), out_shardings=replicated)
