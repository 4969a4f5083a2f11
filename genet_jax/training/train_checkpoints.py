"""Training checkpoints in WORKDIR/checkpoints (orbax CheckpointManager, asynchronous saves): the
last N steps plus the best by eval top-1 (of the EMA weights when there are some). Each step holds
the model checkpoint items (`variables`, `model` and, with optim.ema_decay > 0, `ema_variables`,
readable by genet_jax.interop.model_checkpoint) plus `train_state` (optimizer, step, counters) and
`data_position`: every host's training data iterator position, saved and restored by grain's orbax
checkpoint handler (one file per process, `process_<i>-of-<n>.json`). Checkpoints written before kept
the positions beside the steps, in WORKDIR/data_state/<step>/process_<i>.json; they still resume."""
from __future__ import annotations

import json
import logging
import os
import shutil
from typing import Any, Optional

import grain
import grain.checkpoint
import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from genet_jax.interop.model_checkpoint import EMA_ITEM, MODEL_ITEM, VARIABLES_ITEM, CheckpointError, has_ema_weights
from genet_jax.training import ema
from genet_jax.training.steps import TrainState

log = logging.getLogger("genet_jax.train")

TRAIN_ITEM = "train_state"
DATA_ITEM = "data_position"
LEGACY_DATA_DIR = "data_state"  # WORKDIR/data_state/<step>/process_<i>.json of older checkpoints
ERROR_TEXT_CHARS = 300  # of an orbax error's first line, quoted in a CheckpointError


class DataPosition(grain.DatasetIterator):
    """A training data iterator position (its grain get_state) as grain's checkpoint handler saves
    and restores it. The trainer checkpoints the position of the batches it has trained on
    (`pipeline.DevicePrefetcher.state`), not its live iterator, which has read ahead; the iterator
    is built after the restore (`inputs.train_batches`: its set_state)."""

    def __init__(self, state: Optional[dict] = None):
        super().__init__()
        self.state = state

    def __next__(self):
        raise TypeError("a saved data position has no batches: set_state of the training iterator resumes it")

    def get_state(self) -> Optional[dict]:
        return self.state

    def set_state(self, state: dict) -> None:
        self.state = state


class TrainCheckpointer:
    def __init__(self, workdir: str, keep: int, async_save: bool = True):
        self.root = os.path.join(os.path.abspath(workdir), "checkpoints")
        self.legacy_data_root = os.path.join(os.path.abspath(workdir), LEGACY_DATA_DIR)
        policy = checkpoint_managers.AnyPreservationPolicy([
            checkpoint_managers.LatestN(n=keep),
            checkpoint_managers.BestN(get_metric_fn=lambda m: m["top1"], reverse=False, n=1,
                                      keep_checkpoints_without_metrics=False)])
        self.manager = ocp.CheckpointManager(
            self.root, item_names=(VARIABLES_ITEM, MODEL_ITEM, TRAIN_ITEM, EMA_ITEM, DATA_ITEM),
            options=ocp.CheckpointManagerOptions(create=True, preservation_policy=policy,
                                                 enable_async_checkpointing=async_save))

    def latest_step(self) -> Optional[int]:
        return self.manager.latest_step()

    def save(self, state: TrainState, model_json: dict, data_state: Optional[dict],
             metrics: Optional[dict] = None, wait: bool = False) -> int:
        """`data_state`: this host's data iterator position after `state`'s step (each host saves its own)."""
        step = int(jax.device_get(state.step))
        items = {VARIABLES_ITEM: ocp.args.StandardSave(state.variables), MODEL_ITEM: ocp.args.JsonSave(model_json),
                 TRAIN_ITEM: ocp.args.StandardSave(state.train_fields())}
        if state.ema is not None:
            items[EMA_ITEM] = ocp.args.StandardSave(state.ema)
        if data_state is not None:
            items[DATA_ITEM] = grain.checkpoint.CheckpointSave(DataPosition(data_state))
        self.manager.save(step, args=ocp.args.Composite(**items), metrics=metrics, force=True)
        if wait:
            self.wait()
        self._prune_legacy_data_states()
        return step

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def restore(self, abstract_state: TrainState, step: Optional[int] = None) -> tuple[TrainState, Optional[dict]]:
        """The state saved at `step` (default: the latest) and this host's data position, or None when
        saved by another number of hosts. An EMA the run asks for but the checkpoint lacks (EMA
        switched on mid-run) starts from the weights."""
        step = self.latest_step() if step is None else step
        with_ema = abstract_state.ema is not None and has_ema_weights(os.path.join(self.root, str(step)))
        with_position = os.path.isfile(os.path.join(self.root, str(step), DATA_ITEM, _grain_position_file()))
        items = {VARIABLES_ITEM: ocp.args.StandardRestore(abstract_state.variables),
                 TRAIN_ITEM: ocp.args.StandardRestore(abstract_state.train_fields())}
        if with_ema:
            items[EMA_ITEM] = ocp.args.StandardRestore(abstract_state.ema)
        if with_position:
            items[DATA_ITEM] = grain.checkpoint.CheckpointRestore(DataPosition())
        try:
            restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as e:
            text = str(e).strip().splitlines()[0][:ERROR_TEXT_CHARS] if str(e).strip() else ""
            raise CheckpointError(f"cannot resume from {self.root}/{step} (truncated or written by a different "
                                  f"model or optimizer?): {type(e).__name__}: {text}") from None
        variables, train = restored[VARIABLES_ITEM], restored[TRAIN_ITEM]
        averaged = restored[EMA_ITEM] if with_ema else None
        if abstract_state.ema is not None and not with_ema:
            log.info("%s/%d has no EMA weights: the EMA starts from the weights of that step", self.root, step)
            averaged = ema.copy_of(variables)
        state = TrainState(params=variables["params"], batch_stats=variables["batch_stats"], ema=averaged, **train)
        position = restored[DATA_ITEM].state if with_position else _read_legacy_data_state(self.legacy_data_root, step)
        return state, position

    def _prune_legacy_data_states(self) -> None:
        """Removes the data positions of older checkpoints once orbax has removed their steps."""
        if jax.process_index() != 0 or not os.path.isdir(self.legacy_data_root):
            return
        kept = {str(s) for s in self.manager.all_steps()}
        for name in os.listdir(self.legacy_data_root):
            if name not in kept and name.isdigit() and int(name) < (self.latest_step() or 0):
                shutil.rmtree(os.path.join(self.legacy_data_root, name), ignore_errors=True)
        if not os.listdir(self.legacy_data_root):
            os.rmdir(self.legacy_data_root)

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _grain_position_file() -> str:
    """This process's file in the data position item (grain's CheckpointHandler names it so)."""
    return f"process_{jax.process_index()}-of-{jax.process_count()}.json"


def _read_legacy_data_state(data_root: str, step: int) -> Optional[dict]:
    """This host's data position in an older checkpoint (WORKDIR/data_state/<step>/process_<i>.json),
    or None: none there, or saved by another number of hosts (the caller then derives it from the
    step: `pipeline.train_data_state`)."""
    path = os.path.join(data_root, str(step), f"process_{jax.process_index()}.json")
    saved_by = os.listdir(os.path.dirname(path)) if os.path.isfile(path) else []
    if len([name for name in saved_by if name.startswith("process_")]) != jax.process_count():
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable data position: {e}") from None


def abstract_like(tree: Any, sharding) -> Any:
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
