"""The trainer configs of LLR-NAS, one function per kind of run, each derived from the search config
as a fresh ConfigDict (a deep copy of `config.train` with fields set; the search config is never
changed): what every run trains and evaluates with (`search_train_config`), the MasterNet's training,
a fine-tune and a resolution's pick. Each run is evaluated once, at its end."""
from __future__ import annotations

import copy
import json
import os

import ml_collections

from genet_jax.arch.registry import resolve_spec
from genet_jax.arch.spec import NetworkSpec
from genet_jax.training.config import EVALUATE_AT_THE_END

MASTER_RUN = "masternet"
FINETUNE_RUNS = "finetunes"
PICK_RUNS = "final"
# num_train_steps > 0 overrides num_epochs, which must still be a valid (positive) number.
EPOCHS_OF_A_FIXED_STEP_RUN = 1.0


def search_train_config(search_config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """`config.train` evaluated on the NAS validation split (the test split is never used) and
    seeded by the search seed."""
    c = copy.deepcopy(search_config.train)
    with c.unlocked():
        c.data.eval_split = "holdout"
        c.seed = search_config.seed
    return c


def master_train_config(search_config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The MasterNet's training (workdir masternet/), as long as `config.train` says."""
    train = search_config.train
    return _run_config(search_config, _workdir(search_config, MASTER_RUN), resolve_spec(train.model),
                       train.num_epochs, train.num_train_steps)


def finetune_workdir(search_config: ml_collections.ConfigDict, job_key: str) -> str:
    return _workdir(search_config, FINETUNE_RUNS, job_key)


def finetune_train_config(search_config: ml_collections.ConfigDict, job_key: str,
                          spec: NetworkSpec) -> ml_collections.ConfigDict:
    """The fine-tune of job `job_key` (workdir finetunes/<key>/): `config.finetune`'s length and
    learning rate, no progress bar of its own (the search shows one over the fine-tunes)."""
    ft = search_config.finetune
    c = _run_config(search_config, finetune_workdir(search_config, job_key), spec, ft.epochs, ft.num_train_steps)
    with c.unlocked():
        c.optim.lr_per_256 = ft.lr_per_256
        c.optim.warmup_epochs = ft.warmup_epochs
        c.progress_bar = False
    return c


def pick_train_config(search_config: ml_collections.ConfigDict, resolution: int,
                      spec: NetworkSpec) -> ml_collections.ConfigDict:
    """The training from scratch of the pick at `resolution` (workdir final/r{R}/), as long as
    `config.final` says."""
    final = search_config.final
    return _run_config(search_config, _workdir(search_config, PICK_RUNS, f"r{resolution}"), spec, final.epochs,
                       final.num_train_steps)


def _workdir(search_config: ml_collections.ConfigDict, *parts: str) -> str:
    return os.path.join(os.path.abspath(search_config.workdir), *parts)


def _run_config(search_config: ml_collections.ConfigDict, workdir: str, spec: NetworkSpec, epochs: float,
                steps: int) -> ml_collections.ConfigDict:
    """A run of `spec` (at its own resolution) in `workdir` for `steps` steps if > 0, else `epochs`."""
    c = search_train_config(search_config)
    with c.unlocked():
        c.workdir = workdir
        c.model = json.dumps(spec.to_dict())
        c.resolution = -1
        c.num_train_steps = int(steps)
        c.num_epochs = float(epochs) if steps <= 0 else EPOCHS_OF_A_FIXED_STEP_RUN
        c.eval_every_epochs = EVALUATE_AT_THE_END
    return c
