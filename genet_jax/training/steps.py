"""Train and eval steps: pure functions of (state, batch), jit-compiled over a device mesh with the
batch sharded along 'data' and the state replicated. BN statistics are computed over the global
batch (the sharded batch axis is one array to XLA). With a teacher, its logits come from the same
augmented images."""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from genet_jax.models.network import MasterNet, canonical_dtype
from genet_jax.training import augment_device


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    nonfinite: jax.Array  # steps whose loss was NaN/inf; those updates were not applied
    loss_scale: jax.Array  # float16 compute: dynamic loss scale; 1 otherwise
    finite_streak: jax.Array  # steps since the loss scale last changed

    def train_fields(self) -> dict:
        """Everything but the model variables (checkpointed as its own item)."""
        return {"step": self.step, "opt_state": self.opt_state, "nonfinite": self.nonfinite,
                "loss_scale": self.loss_scale, "finite_streak": self.finite_streak}

    @property
    def variables(self) -> dict:
        return {"params": self.params, "batch_stats": self.batch_stats}


def create_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
    """A 1-D data-parallel mesh over `devices` (default: every device of every host)."""
    return Mesh(np.asarray(jax.devices() if devices is None else list(devices)), ("data",))


def shardings(mesh: Mesh) -> tuple[NamedSharding, NamedSharding]:
    """(replicated, batch-sharded)."""
    return NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec("data"))


def init_state(variables: dict, tx: optax.GradientTransformation, loss_scale: float = 1.0) -> TrainState:
    return TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                      batch_stats=variables["batch_stats"], opt_state=tx.init(variables["params"]),
                      nonfinite=jnp.zeros((), jnp.int32), loss_scale=jnp.asarray(loss_scale, jnp.float32),
                      finite_streak=jnp.zeros((), jnp.int32))


def initial_loss_scale(config) -> float:
    """float16 gradients underflow without loss scaling; bfloat16 and float32 need none."""
    return float(config.optim.fp16_initial_loss_scale) if canonical_dtype(config.dtype) == jnp.float16 else 1.0


def make_train_step(model: MasterNet, tx: optax.GradientTransformation, config, schedule: optax.Schedule,
                    teacher_model: Optional[MasterNet] = None) -> Callable:
    """train_step(state, batch, base_key, teacher_variables) -> (state, metrics). The teacher's
    variables are an argument, not a closure, so they are not baked into the compiled program.

    With float16 compute the loss is multiplied by a dynamic scale before differentiation: a step
    whose gradients overflow is skipped and halves the scale (it is not a divergence); every
    `optim.fp16_scale_growth_steps` finite steps double it.
    """
    aug, num_classes = config.augment, model.spec.num_classes
    dynamic_scale = jnp.dtype(model.dtype) == jnp.float16
    growth_steps = config.optim.fp16_scale_growth_steps

    def train_step(state: TrainState, batch: dict, base_key: jax.Array, teacher_variables: Any = None):
        key = jax.random.fold_in(base_key, state.step)
        k_erase, k_mix = jax.random.split(key)
        images = augment_device.normalize_images(batch["image"], model.dtype)
        targets = augment_device.smooth_labels(batch["label"], num_classes, aug.label_smoothing)
        if aug.random_erase_prob > 0:
            images = augment_device.random_erasing(k_erase, images, aug.random_erase_prob)
        images, targets = augment_device.mix_batch(k_mix, images, targets, aug.mixup_alpha, aug.cutmix_alpha)

        def loss_fn(params):
            logits, updates = model.apply({"params": params, "batch_stats": state.batch_stats}, images,
                                          train=True, mutable=["batch_stats"])
            loss = optax.softmax_cross_entropy(logits, targets).mean()
            if teacher_model is not None:
                temperature = config.teacher.temperature
                soft = jax.nn.softmax(jax.lax.stop_gradient(
                    teacher_model.apply(teacher_variables, images)) / temperature, axis=-1)
                soft_loss = optax.softmax_cross_entropy(logits / temperature, soft).mean() * temperature ** 2
                loss = config.teacher.true_label_weight * loss + config.teacher.soft_label_weight * soft_loss
            return loss * state.loss_scale, (loss, logits, updates["batch_stats"])

        (_, (loss, logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        grads = jax.tree_util.tree_map(lambda g: g / state.loss_scale, grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)  # any NaN/inf gradient makes the norm non-finite
        keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
        diverged = ~jnp.isfinite(loss) if dynamic_scale else ~finite  # fp16 gradient overflow: rescale, go on
        loss_scale, streak = state.loss_scale, state.finite_streak + 1
        if dynamic_scale:
            grow = finite & (streak >= growth_steps)
            loss_scale = jnp.where(finite, jnp.where(grow, loss_scale * 2, loss_scale), loss_scale / 2)
            streak = jnp.where(finite & ~grow, streak, 0)
        new_state = TrainState(step=state.step + 1, params=keep(params, state.params),
                               batch_stats=keep(batch_stats, state.batch_stats),
                               opt_state=keep(opt_state, state.opt_state),
                               nonfinite=state.nonfinite + diverged.astype(jnp.int32),
                               loss_scale=loss_scale, finite_streak=streak)
        metrics = {"loss": loss, "top1": jnp.mean(jnp.argmax(logits, -1) == batch["label"]),
                   "lr": schedule(state.step), "grad_norm": grad_norm}
        if dynamic_scale:
            metrics["loss_scale"] = state.loss_scale
        return new_state, metrics

    return train_step


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
