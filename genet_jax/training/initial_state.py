"""What a training run starts from: the workdir's latest checkpoint (resume), or variables given by
the caller, config.init_from (a checkpoint, or pretrained weights) or a fresh initialisation; and its
distillation teacher."""
from __future__ import annotations

import logging
from typing import Optional

import jax
import ml_collections
import optax

from genet_jax.arch.paths import HEAD
from genet_jax.arch.spec import NetworkSpec
from genet_jax.errors import InputError
from genet_jax.checkpoint import load_model_checkpoint
from genet_jax.models.network import MasterNet, init_variables
from genet_jax.pretrained.loading import load_pretrained
from genet_jax.training import steps
from genet_jax.training.config import ConfigError, model_from_config
from genet_jax.training.train_checkpoints import TrainCheckpointer, abstract_like

log = logging.getLogger("genet_jax.train")

# Two specs are compared at this resolution (or their total stride, if larger): an architecture
# check that ignores the resolution each was built for.
_COMPARISON_RESOLUTION = 32


def _same_architecture(a: NetworkSpec, b: NetworkSpec) -> bool:
    resolution = max(a.total_stride, _COMPARISON_RESOLUTION)
    return a.replace(num_classes=1, resolution=resolution) == b.replace(num_classes=1, resolution=resolution)


def _initial_weights(config) -> Optional[tuple[str, NetworkSpec, dict, str]]:
    """(config field, spec, variables, where from) of config.init_from, or None for a fresh start."""
    if config.init_from.checkpoint:
        ckpt = load_model_checkpoint(config.init_from.checkpoint)
        return "init_from.checkpoint", ckpt.spec, ckpt.variables, ckpt.path
    wanted = config.init_from.get("pretrained")
    if not wanted:
        return None
    try:
        loaded = load_pretrained(pretrained=wanted)
    except InputError as e:
        raise ConfigError("init_from.pretrained", str(e)) from None
    return "init_from.pretrained", loaded.model.spec, jax.device_get(loaded.variables), loaded.source


def load_initial_variables(config, model: MasterNet, key: jax.Array) -> dict:
    """Fresh variables, or those of config.init_from (a checkpoint or pretrained weights; a new head on
    a class change)."""
    variables = jax.device_get(init_variables(model, key))
    initial = _initial_weights(config)
    if initial is None:
        return variables
    field, spec, loaded, where = initial
    if not _same_architecture(spec, model.spec):
        raise ConfigError(field, f"{where} holds a different architecture than config.model "
                                 f"({spec.to_json(indent=None)})")
    params = dict(loaded["params"])
    if spec.num_classes != model.spec.num_classes:
        log.info("fine-tuning from %s with a new %d-class head (the weights have %d)", where,
                 model.spec.num_classes, spec.num_classes)
        params[HEAD] = variables["params"][HEAD]
    else:
        log.info("initialising from %s", where)
    return {"params": params, "batch_stats": loaded["batch_stats"]}


def create_train_state(config: ml_collections.ConfigDict, model: MasterNet, tx: optax.GradientTransformation,
                       checkpointer: TrainCheckpointer, sharding, key: jax.Array,
                       initial_variables: Optional[dict] = None) -> tuple[steps.TrainState, Optional[dict]]:
    """(train state placed with `sharding`, data iterator state or None). Resumes from the newest
    checkpoint that restores when there is one (`TrainCheckpointer.restore`); otherwise starts from
    `initial_variables`, else from `load_initial_variables(config, model, key)`."""
    loss_scale, with_ema = steps.initial_loss_scale(config), config.optim.ema_decay > 0
    if checkpointer.latest_step() is not None:  # resume: shapes only, no initialisation to compile or run
        abstract = jax.eval_shape(lambda k: steps.init_state(init_variables(model, k), tx, loss_scale, with_ema), key)
        resumed = checkpointer.restore(abstract_like(abstract, sharding))
        if resumed is not None:  # None: the workdir held empty step directories only
            log.info("resuming from %s", checkpointer.step_dir(int(resumed[0].step)))
            return resumed
    if initial_variables is None:
        initial_variables = load_initial_variables(config, model, key)
    return jax.device_put(steps.init_state(initial_variables, tx, loss_scale, with_ema), sharding), None


def load_teacher(config: ml_collections.ConfigDict, spec: NetworkSpec,
                 sharding) -> tuple[Optional[MasterNet], Optional[dict]]:
    """(teacher model, its variables placed with `sharding`) of config.teacher.checkpoint, or (None, None)."""
    if not config.teacher.checkpoint:
        return None, None
    teacher = load_model_checkpoint(config.teacher.checkpoint)
    if teacher.spec.num_classes != spec.num_classes:
        raise ConfigError("teacher.checkpoint", f"the teacher has {teacher.spec.num_classes} classes, the data "
                                                f"{spec.num_classes}")
    return model_from_config(config, teacher.spec), jax.device_put(teacher.variables, sharding)
