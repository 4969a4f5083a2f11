"""Training checkpoints in WORKDIR/checkpoints (orbax CheckpointManager, asynchronous saves): the
last N steps plus the best by eval top-1 (of the EMA weights when there are some). Each step holds
the model checkpoint items (`variables`, `model` and, with optim.ema_decay > 0, `ema_variables`,
readable by genet_jax.checkpoint) plus `train_state` (optimizer, step, counters) and
`data_position`: every host's training data iterator position, saved and restored by grain's orbax
checkpoint handler (one file per process, `process_<i>-of-<n>.json`). Checkpoints written before kept
the positions beside the steps, in WORKDIR/data_state/<step>/process_<i>.json; they still resume.

Faults cost at most the damaged step: a resume skips steps that do not restore (truncated, emptied)
for the newest that does and moves them to WORKDIR/unrestorable_checkpoints (nothing is deleted);
a data position that does not read is derived from its step; a step that cannot be written (a full
disk) is a CheckpointWriteError naming the last good step."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from typing import Any, Iterator, Optional

import grain
import grain.checkpoint
import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers

from genet_jax.checkpoint import EMA_ITEM, MODEL_ITEM, VARIABLES_ITEM, CheckpointError, has_ema_weights
from genet_jax import checkpoint_faults
from genet_jax.training import ema
from genet_jax.training.steps import TrainState

log = logging.getLogger("genet_jax.train")

TRAIN_ITEM = "train_state"
DATA_ITEM = "data_position"
LEGACY_DATA_DIR = "data_state"  # WORKDIR/data_state/<step>/process_<i>.json of older checkpoints
UNRESTORABLE_DIR = "unrestorable_checkpoints"  # WORKDIR/unrestorable_checkpoints/<step>: set aside on resume
EMPTY_STEP = "an empty directory"



class CheckpointWriteError(CheckpointError):
    """A checkpoint step that could not be written (a full disk, no permission); the steps before it are kept."""


class DataPosition(grain.DatasetIterator):
    """A training data iterator position (its grain get_state: `{"next_index": i}`) as grain's
    checkpoint handler saves and restores it. The trainer checkpoints the position of the batches it
    has trained on (`pipeline.DevicePrefetcher.state`), not its live iterator, which has read ahead;
    the iterator is built after the restore (`inputs.train_batches`: its set_state)."""

    def __init__(self, state: Optional[dict] = None):
        super().__init__()
        self.state = state

    def __next__(self):
        raise TypeError("a saved data position has no batches: set_state of the training iterator resumes it")

    def get_state(self) -> Optional[dict]:
        return self.state

    def set_state(self, state: dict) -> None:
        index = state.get("next_index") if isinstance(state, dict) else None
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise ValueError(f"{str(state)[:80]!r} is not {{'next_index': a non-negative integer}}")
        self.state = state


class TrainCheckpointer:
    def __init__(self, workdir: str, keep: int, async_save: bool = True):
        self.root = os.path.join(os.path.abspath(workdir), "checkpoints")
        self.legacy_data_root = os.path.join(os.path.abspath(workdir), LEGACY_DATA_DIR)
        self.unrestorable_root = os.path.join(os.path.abspath(workdir), UNRESTORABLE_DIR)
        self._saving: Optional[int] = None  # the step being written in the background
        self._write_failed = False  # a CheckpointWriteError was raised: close() raises none
        self._orbax_log = checkpoint_faults.OrbaxLogFilter()
        self._orbax_log.install()
        self._restore_unraisable_hook = checkpoint_faults.drop_orbax_leftovers()
        self._left_orbax_leftovers = False  # a failed read or write: the hook stays, they are collected later
        policy = checkpoint_managers.AnyPreservationPolicy([
            checkpoint_managers.LatestN(n=keep),
            checkpoint_managers.BestN(get_metric_fn=lambda m: m["top1"], reverse=False, n=1,
                                      keep_checkpoints_without_metrics=False)])
        # orbax warns of the steps whose metadata does not read; restore() skips them with a warning of its own
        with self._orbax_log.quiet_from(logging.WARNING):
            self.manager = ocp.CheckpointManager(
                self.root, item_names=(VARIABLES_ITEM, MODEL_ITEM, TRAIN_ITEM, EMA_ITEM, DATA_ITEM),
                options=ocp.CheckpointManagerOptions(create=True, preservation_policy=policy,
                                                     enable_async_checkpointing=async_save))

    def step_dir(self, step: int) -> str:
        return os.path.join(self.root, str(step))

    def latest_step(self) -> Optional[int]:
        return self.manager.latest_step()

    def save(self, state: TrainState, model_json: dict, data_state: Optional[dict],
             metrics: Optional[dict] = None, wait: bool = False) -> int:
        """`data_state`: this host's data iterator position after `state`'s step (each host saves its own).
        A CheckpointWriteError when this step, or the one before it (written in the background), fails."""
        step = int(jax.device_get(state.step))
        items = {VARIABLES_ITEM: ocp.args.StandardSave(state.variables), MODEL_ITEM: ocp.args.JsonSave(model_json),
                 TRAIN_ITEM: ocp.args.StandardSave(state.train_fields())}
        if state.ema is not None:
            items[EMA_ITEM] = ocp.args.StandardSave(state.ema)
        if data_state is not None:
            items[DATA_ITEM] = grain.checkpoint.CheckpointSave(DataPosition(data_state))
        self.wait()
        with self._writing(step):
            self.manager.save(step, args=ocp.args.Composite(**items), metrics=metrics, force=True)
        self._saving = step
        if wait:
            self.wait()
        self._prune_legacy_data_states()
        return step

    def wait(self) -> None:
        """Until the step being written in the background is (a CheckpointWriteError if it fails)."""
        step, self._saving = self._saving, None
        if step is not None:
            with self._writing(step):
                self.manager.wait_until_finished()

    @contextlib.contextmanager
    def _writing(self, step: int) -> Iterator[None]:
        """Storage errors (orbax: an OSError, or TensorStore's ValueError) as a CheckpointWriteError."""
        try:
            yield
        except (OSError, ValueError) as e:
            if not checkpoint_faults.is_storage_error(e):
                raise
            self._write_failed = True
            self._left_orbax_leftovers = True
            checkpoint_faults.ignore_unawaited_coroutines()
            written = [s for s in self.manager.all_steps() if s != step]
            kept = (f"the last good checkpoint is {self.step_dir(max(written))}" if written
                    else "no checkpoint was written before it")
            raise CheckpointWriteError(f"cannot write the checkpoint {self.step_dir(step)}: "
                                       f"{checkpoint_faults.storage_cause(e)}; {kept}") from None

    def restore(self, abstract_state: TrainState) -> Optional[tuple[TrainState, Optional[dict]]]:
        """(state, this host's data position) of the newest step that restores into `abstract_state`,
        or None when every step directory is empty. The position is None when saved by another number
        of hosts or unreadable: the caller derives it from the step (`pipeline.train_data_state`).
        Steps newer than the one restored are moved to WORKDIR/unrestorable_checkpoints (a later save
        of their step number would meet them); a CheckpointError when none restores."""
        failed: dict[int, str] = {}
        for step in sorted(self.manager.all_steps(), reverse=True):
            state, reason = None, EMPTY_STEP
            if _holds_files(self.step_dir(step)):
                try:
                    with self._orbax_log.quiet_from(logging.WARNING):
                        state = self._restore_step(abstract_state, step)
                except Exception as e:  # orbax and TensorStore raise many types for a damaged step
                    self._left_orbax_leftovers = True
                    checkpoint_faults.drop_leftovers_of_failed_read(self.step_dir(step))
                    if not checkpoint_faults.is_damage(e):  # a transient storage error, out of memory, a bug
                        raise
                    reason = f"{type(e).__name__}: {checkpoint_faults.first_line(e)}"
            if _on_every_process(state is not None):
                self._set_aside(failed, resumed_from=step)
                return state, self._data_position(step)
            failed[step] = reason if state is None else "another process cannot restore it"
        if failed and set(failed.values()) != {EMPTY_STEP}:
            raise CheckpointError(checkpoint_faults.none_restores(self.root, failed))
        self._set_aside(failed, resumed_from=None)
        return None

    def _restore_step(self, abstract_state: TrainState, step: int) -> TrainState:
        """The model and optimizer state of `step`. An EMA the run asks for but the checkpoint lacks
        (EMA switched on mid-run) starts from the weights."""
        with_ema = abstract_state.ema is not None and has_ema_weights(self.step_dir(step))
        items = {VARIABLES_ITEM: ocp.args.StandardRestore(abstract_state.variables),
                 TRAIN_ITEM: ocp.args.StandardRestore(abstract_state.train_fields())}
        if with_ema:
            items[EMA_ITEM] = ocp.args.StandardRestore(abstract_state.ema)
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        variables, train = restored[VARIABLES_ITEM], restored[TRAIN_ITEM]
        averaged = restored[EMA_ITEM] if with_ema else None
        if abstract_state.ema is not None and not with_ema:
            log.info("%s has no EMA weights: the EMA starts from the weights of that step", self.step_dir(step))
            averaged = ema.copy_of(variables)
        return TrainState(params=variables["params"], batch_stats=variables["batch_stats"], ema=averaged, **train)

    def _data_position(self, step: int) -> Optional[dict]:
        """This host's data position saved with `step` (grain's handler reads it); None when saved by
        another number of hosts, or unreadable (a warning names the file)."""
        item = os.path.join(self.step_dir(step), DATA_ITEM)
        path = os.path.join(item, _grain_position_file())
        try:
            if os.path.isfile(path):
                return grain.checkpoint.CheckpointHandler().restore(
                    epath.Path(item), args=grain.checkpoint.CheckpointRestore(DataPosition())).state
            path = os.path.join(self.legacy_data_root, str(step), f"process_{jax.process_index()}.json")
            return _read_legacy_data_state(path)
        except Exception as e:  # a damaged or foreign file: any parse error, any content
            log.warning("%s is no data position (%s: %s): training resumes at the position of step %d instead",
                        path, type(e).__name__, checkpoint_faults.first_line(e), step)
            return None

    def _set_aside(self, failed: dict[int, str], resumed_from: Optional[int]) -> None:
        """Moves the steps of `failed` ({step: why it does not restore}) to WORKDIR/unrestorable_checkpoints
        (process 0; every process then rereads the steps)."""
        if not failed:
            return
        if jax.process_index() == 0:
            os.makedirs(self.unrestorable_root, exist_ok=True)
            for step, reason in failed.items():
                moved_to = _free_name(os.path.join(self.unrestorable_root, str(step)))
                shutil.move(self.step_dir(step), moved_to)
                resuming = f"resuming from step {resumed_from}" if resumed_from is not None else "starting afresh"
                log.warning("skipped checkpoint %s (%s), %s; moved it to %s", self.step_dir(step), reason,
                            resuming, moved_to)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("genet_jax: unrestorable checkpoints set aside")
        self.manager.reload()

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
        """Waits for the step being written (a CheckpointWriteError if it fails, unless one was raised
        already: the error is reported once) and closes the manager."""
        try:
            if not self._write_failed:
                self.wait()
        finally:
            if self._write_failed:
                with contextlib.suppress(OSError, ValueError):
                    self.manager.close()
            else:
                self.manager.close()
                self._orbax_log.remove()
            if not self._left_orbax_leftovers:
                self._restore_unraisable_hook()


def _on_every_process(ok: bool) -> bool:
    """Whether `ok` holds on every process (all take part: each restores the same files, so all pick
    the same step)."""
    if jax.process_count() == 1:
        return ok
    return bool(np.min(multihost_utils.process_allgather(np.int32(ok))))


def _holds_files(directory: str) -> bool:
    return any(files for _, _, files in os.walk(directory))


def _free_name(path: str) -> str:
    """`path`, or `path-2`, `path-3`, ... whichever does not exist."""
    candidate, number = path, 1
    while os.path.exists(candidate):
        number += 1
        candidate = f"{path}-{number}"
    return candidate


def _grain_position_file() -> str:
    """This process's file in the data position item (grain's CheckpointHandler names it so)."""
    return f"process_{jax.process_index()}-of-{jax.process_count()}.json"


def _read_legacy_data_state(path: str) -> Optional[dict]:
    """This host's data position in an older checkpoint (WORKDIR/data_state/<step>/process_<i>.json),
    or None: none there, or saved by another number of hosts."""
    saved_by = os.listdir(os.path.dirname(path)) if os.path.isfile(path) else []
    if len([name for name in saved_by if name.startswith("process_")]) != jax.process_count():
        return None
    position = DataPosition()
    with open(path) as f:
        position.set_state(json.load(f))
    return position.state


def abstract_like(tree: Any, sharding) -> Any:
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
