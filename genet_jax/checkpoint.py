"""Model checkpoints: an orbax CheckpointManager directory whose steps hold two items,

    variables      {'params', 'batch_stats'} (orbax StandardSave; float32 NumPy/JAX arrays)
    model          JSON: {'spec': NetworkSpec dict, 'extras': {...}, 'metadata': {...}}

and, from a run with optim.ema_decay > 0, a third:

    ema_variables  the exponential moving average of `variables` (same layout)

The trainer saves these items (plus its own train state) in `WORKDIR/checkpoints`, so export,
prediction, evaluation and fine-tuning read any of them the same way: the EMA weights where a step
has them (`raw=True`: the trained weights themselves).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Mapping, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

from genet_jax.arch.spec import NetworkSpec, SpecError
from genet_jax.errors import InputError
from genet_jax import checkpoint_faults

VARIABLES_ITEM = "variables"
MODEL_ITEM = "model"
EMA_ITEM = "ema_variables"
RAW_WEIGHTS, EMA_WEIGHTS = "raw", "ema"


class CheckpointError(InputError, RuntimeError):
    """A checkpoint that is missing, empty or unreadable; the message names the path."""


@dataclasses.dataclass
class ModelCheckpoint:
    spec: NetworkSpec
    variables: dict
    step: int
    path: str
    extras: dict = dataclasses.field(default_factory=dict)
    metadata: dict = dataclasses.field(default_factory=dict)
    weights: str = RAW_WEIGHTS  # which of the step's weights `variables` holds: raw or ema


def has_ema_weights(step_dir: str) -> bool:
    """Whether a checkpoint step directory holds the EMA of its weights."""
    return os.path.isdir(os.path.join(step_dir, EMA_ITEM))


def checkpoint_root(path: str | os.PathLike) -> str:
    """A trainer workdir's `checkpoints/` folder, or `path` itself."""
    path = os.path.abspath(os.fspath(path))
    nested = os.path.join(path, "checkpoints")
    return nested if os.path.isdir(nested) else path


def model_description(spec: NetworkSpec, extras: Optional[dict] = None, metadata: Optional[dict] = None) -> dict:
    """The JSON of a checkpoint's `model` item: {'spec': ..., 'extras': {...}, 'metadata': {...}}."""
    return {"spec": spec.to_dict(), "extras": extras or {}, "metadata": metadata or {}}


def save_model_checkpoint(directory: str | os.PathLike, spec: NetworkSpec, variables: Mapping, *, step: int = 0,
                          extras: Optional[dict] = None, metadata: Optional[dict] = None) -> str:
    """Write a one-step model checkpoint; returns the step directory."""
    directory = os.path.abspath(os.fspath(directory))
    state = {"params": variables["params"], "batch_stats": variables["batch_stats"]}
    state = jax.tree_util.tree_map(np.asarray, state)
    model = model_description(spec, extras, metadata)
    with ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(create=True)) as manager:
        manager.save(step, args=ocp.args.Composite(**{VARIABLES_ITEM: ocp.args.StandardSave(state),
                                                     MODEL_ITEM: ocp.args.JsonSave(model)}), force=True)
        manager.wait_until_finished()
    return os.path.join(directory, str(step))


def load_model_checkpoint(path: str | os.PathLike, step: Optional[int] = None, raw: bool = False) -> ModelCheckpoint:
    """Read spec and variables from a model checkpoint or a trainer workdir (latest step by default):
    the EMA weights where the step has them, unless `raw`."""
    root = checkpoint_root(path)
    if not os.path.isdir(root):
        raise CheckpointError(f"no checkpoint at {os.fspath(path)!r}: the directory does not exist")
    try:
        manager = ocp.CheckpointManager(
            root, options=ocp.CheckpointManagerOptions(create=False),
            item_handlers={VARIABLES_ITEM: ocp.StandardCheckpointHandler(), EMA_ITEM: ocp.StandardCheckpointHandler(),
                           MODEL_ITEM: ocp.JsonCheckpointHandler()})
    except Exception as e:  # orbax raises several types for a directory it cannot use
        raise CheckpointError(f"{root!r} is not an orbax checkpoint directory ({type(e).__name__}: {e})") from None
    with manager:
        steps = manager.all_steps()
        if not steps:
            raise CheckpointError(f"{root!r} holds no finished checkpoint step")
        if step is None:
            step = manager.latest_step()
        elif step not in steps:
            raise CheckpointError(f"{root!r} has no step {step}; it has {sorted(steps)}")
        where = os.path.join(root, str(step))
        weights = EMA_WEIGHTS if not raw and has_ema_weights(where) else RAW_WEIGHTS
        item = EMA_ITEM if weights == EMA_WEIGHTS else VARIABLES_ITEM
        put_back_unraisable_hook = checkpoint_faults.drop_orbax_leftovers()
        try:
            model = manager.restore(step, args=ocp.args.Composite(**{MODEL_ITEM: ocp.args.JsonRestore()}))[MODEL_ITEM]
            # A target on this process's first device makes the restore independent of the
            # device topology the checkpoint was written from (e.g. 8 devices -> 1). Only this item's
            # metadata: the manager's item_metadata reads every item of the step and warns about each
            # it has no handler for (a trainer step's train_state and data_position).
            metadata = ocp.StandardCheckpointHandler().metadata(manager.directory / str(step) / item)
            device = jax.sharding.make_single_device_sharding(jax.local_devices()[0])  # SingleDeviceSharding: deprecated in jax 0.12.1
            target = jax.tree_util.tree_map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                                            metadata, is_leaf=lambda m: hasattr(m, "shape") and hasattr(m, "dtype"))
            state = manager.restore(step, args=ocp.args.Composite(**{item: ocp.args.StandardRestore(target)}))[item]
            state = jax.tree_util.tree_map(np.asarray, state)
        except Exception as e:  # the hook stays: the failed read's leftovers are collected later
            checkpoint_faults.drop_leftovers_of_failed_read(where)
            raise CheckpointError(f"cannot read checkpoint {where!r} (truncated or corrupt?): "
                                  f"{type(e).__name__}: {checkpoint_faults.first_line(e)}") from None
        put_back_unraisable_hook()
    try:
        spec = NetworkSpec.from_dict(model["spec"])
    except (SpecError, KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint {where!r} holds no valid architecture spec: {e}") from None
    variables = {"params": state["params"], "batch_stats": state["batch_stats"]}
    return ModelCheckpoint(spec, variables, int(step), where, model.get("extras", {}), model.get("metadata", {}),
                           weights)

