"""The trainer configs LLR-NAS derives (genet_jax.nas.train_configs): a fresh ConfigDict per run, the
search config never changed, each run evaluated once, at its end, by the trainer's own option for it
(eval_every_epochs = 0: genet_jax.training.bookkeeping.RunPlan), which evaluates and saves at the
steps the evaluation period longer than any run that it replaces did."""
import copy
import os

import pytest

from configs.common import base_config
from genet_jax.arch.registry import resolve_spec
from genet_jax.arch.spec import NetworkSpec
from genet_jax.nas.train_configs import (finetune_train_config, master_train_config, pick_train_config,
                                         search_train_config)
from genet_jax.training.bookkeeping import RunPlan
from genet_jax.training.config import EVALUATE_AT_THE_END, ConfigError, validate_config
from tests.nas_helpers import MASTER, tiny_search_config

EXAMPLES, BATCH = 1000, 64  # 15.6 steps per epoch: epochs end mid-batch
LONGER_THAN_ANY_RUN = 1e9  # the evaluation period LLR-NAS used for "at the end only" before
PICK_RESOLUTION = 24


def planned_steps(config) -> tuple[list[int], list[int]]:
    """(the steps that evaluate, the steps that save) of a run of `config`."""
    plan = RunPlan.from_config(config, num_train_examples=EXAMPLES)
    steps = range(1, plan.total_steps + 1)
    return ([s for s in steps if plan.is_eval_step(s)],
            [s for s in steps if plan.is_save_step(s, stop_requested=False)])


@pytest.mark.parametrize("epochs, num_train_steps", [(3.0, -1), (3.0, 7), (0.01, -1)])
def test_evaluating_at_the_end_only_is_the_steps_of_an_evaluation_period_longer_than_the_run(epochs,
                                                                                             num_train_steps):
    config = base_config()
    config.batch_size = config.data.eval_batch_size = BATCH
    config.num_epochs, config.num_train_steps, config.checkpoint.every_steps = epochs, num_train_steps, 5
    config.eval_every_epochs = EVALUATE_AT_THE_END
    validate_config(config)
    evaluated, saved = planned_steps(config)
    assert evaluated == [RunPlan.from_config(config, EXAMPLES).total_steps]
    old = copy.deepcopy(config)
    old.eval_every_epochs = LONGER_THAN_ANY_RUN
    assert planned_steps(old) == (evaluated, saved)


def test_a_negative_evaluation_period_is_refused_naming_the_field():
    config = base_config()
    config.eval_every_epochs = -1.0
    with pytest.raises(ConfigError, match=r"^config\.eval_every_epochs: must be >= 0"):
        validate_config(config)


def test_each_run_of_the_search_gets_a_fresh_config_and_the_search_config_is_never_changed(tmp_path):
    config = tiny_search_config(tmp_path / "search")
    before = config.to_json_best_effort()
    pick_spec = MASTER.replace(resolution=PICK_RESOLUTION)
    runs = {"masternet": (master_train_config(config), resolve_spec(config.train.model)),
            os.path.join("finetunes", "abc"): (finetune_train_config(config, "abc", MASTER), MASTER),
            os.path.join("final", f"r{PICK_RESOLUTION}"): (pick_train_config(config, PICK_RESOLUTION, pick_spec),
                                                           pick_spec)}
    assert config.to_json_best_effort() == before
    for workdir, (run, spec) in runs.items():
        validate_config(run)
        assert run.workdir == str(tmp_path / "search" / workdir)
        assert NetworkSpec.from_json(run.model) == spec and run.resolution == -1
        assert (run.eval_every_epochs, run.data.eval_split, run.seed) == (EVALUATE_AT_THE_END, "holdout", config.seed)
    master, finetune, pick = (run for run, _ in runs.values())
    assert (master.num_train_steps, master.num_epochs) == (config.train.num_train_steps, config.train.num_epochs)
    assert (finetune.num_train_steps, finetune.optim.lr_per_256, finetune.optim.warmup_epochs, finetune.progress_bar) \
        == (config.finetune.num_train_steps, config.finetune.lr_per_256, config.finetune.warmup_epochs, False)
    assert pick.num_train_steps == config.final.num_train_steps
    finetune.optim.lr_per_256 = 123.0
    assert finetune_train_config(config, "abc", MASTER).optim.lr_per_256 == config.finetune.lr_per_256
    assert config.to_json_best_effort() == before and search_train_config(config).optim.lr_per_256 != 123.0
