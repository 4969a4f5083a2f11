"""The MasterNet stage from a given checkpoint: its record names the checkpoint step and weights A*
measured, and the fine-tunes inherit exactly those."""
import jax
import numpy as np

from genet_jax import create_model
from genet_jax.checkpoint import save_model_checkpoint
from genet_jax.nas.context import open_context
from genet_jax.nas.master import load_master, master_variables, run_master
from tests.helpers import random_variables
from tests.nas_helpers import tiny_search_config

GIVEN_STEP = 7  # any step but the first: the record must name the step A* measured


def test_a_given_masternet_checkpoint_is_measured_and_inherited_alike(tmp_path):
    config = tiny_search_config(tmp_path / "search")
    spec = open_context(config).master_spec
    variables = random_variables(create_model(spec))  # host-filled: no initialiser to compile
    save_model_checkpoint(tmp_path / "given", spec, variables, step=GIVEN_STEP)
    config.master_checkpoint = str(tmp_path / "given")
    ctx = open_context(config)
    record = run_master(ctx)
    assert (record.weights, record.checkpoint_step) == ("raw", GIVEN_STEP)  # the checkpoint keeps no EMA
    inherited = master_variables(load_master(ctx))
    jax.tree_util.tree_map(np.testing.assert_array_equal, inherited, variables)
    assert 0 <= record.accuracy <= 1 and load_master(ctx) == record
