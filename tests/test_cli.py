"""What every command-line tool shares (genet_jax.cli): bad input is one line and exit code 2, and
importing the package starts no JAX backend, so `--distributed` can initialise JAX after imports."""
import subprocess
import sys

import pytest

from genet_jax import cli
from genet_jax.errors import INPUT_ERROR_EXIT_CODE, InputError
from tests.conftest import REPO_ROOT


def test_an_input_error_is_one_line_and_exit_code_2(capsys):
    def failing() -> int:
        raise InputError("config.batch_size: must be > 0")

    assert cli.exit_code_of(failing) == INPUT_ERROR_EXIT_CODE == 2
    assert capsys.readouterr().err == "error: config.batch_size: must be > 0\n"
    with pytest.raises(RuntimeError):  # a bug is not an input error: its traceback stays
        cli.exit_code_of(lambda: (_ for _ in ()).throw(RuntimeError("bug")))


@pytest.mark.parametrize("modules", [
    "train", "search", "genet_jax.evaluate",  # each defines the absl flag --config: one per process
    "genet_jax.export, genet_jax.predict, genet_jax.summary, genet_jax.latency.cli, genet_jax.measure.batch_sweep, "
    "genet_jax.measure.block_profile, genet_jax.measure.kernel_rank, genet_jax.nas.driver"])
def test_importing_an_entry_point_starts_no_jax_backend(modules):
    code = (f"import {modules}\n"
            "from jax._src import xla_bridge\n"
            "assert not xla_bridge._backends, sorted(xla_bridge._backends)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
