"""One line where there is one cause (genet_jax.cli): a config file that cannot be loaded, a config
field given a value of the wrong type and an OSError about a path are one line naming the file,
exit code 2; a trainer checkpoint is read by predict / evaluate / export without orbax's warnings
about the trainer's own items."""
import logging
import os
import subprocess
import sys

import optax
import pytest

import genet_jax as g
from genet_jax import cli, predict
from genet_jax.errors import INPUT_ERROR_EXIT_CODE
from genet_jax.checkpoint import EMA_WEIGHTS, RAW_WEIGHTS, load_model_checkpoint, model_description
from genet_jax.training import steps
from genet_jax.training.train_checkpoints import TrainCheckpointer
from tests.conftest import REPO_ROOT
from tests.helpers import TINY, random_variables

NO_FILE, A_FOLDER = None, "<a folder>"
# file name -> (its text, the error after "config file '<path>'")
BAD_CONFIG_FILES = {
    "unclosed.py": ("def get_config():\n    return {\n", ", line 2: '{' was never closed"),
    "no_function.py": ("workdir = 'x'\n", " defines no get_config() (the function that returns the config)"),
    "bad_import.py": ("import genet_jax_no_such_module\n",
                      ", line 1: ModuleNotFoundError: No module named 'genet_jax_no_such_module'"),
    "raising.py": ("def get_config():\n    raise ValueError('no such preset')\n",
                   ", line 2: get_config() raised ValueError: no such preset"),
    "a_dict.py": ("def get_config():\n    return {'workdir': 'x'}\n",
                  ": get_config() returned dict, not an ml_collections.ConfigDict"),
    "missing.py": (NO_FILE, ": No such file or directory"),
    "a_folder.py": (A_FOLDER, ": Is a directory"),
}


@pytest.mark.parametrize("name", BAD_CONFIG_FILES)
def test_a_config_file_that_cannot_be_loaded_is_one_error_naming_it(name, tmp_path):
    text, error = BAD_CONFIG_FILES[name]
    path = tmp_path / name
    if text == A_FOLDER:
        path.mkdir()
    elif text is not NO_FILE:
        path.write_text(text)
    with pytest.raises(cli.ConfigFileError) as raised:
        cli.load_config_file(str(path), "config_config")
    assert str(raised.value) == f"config file {str(path)!r}{error}"


@pytest.mark.parametrize("case", ["a file that does not compile", "a field value of the wrong type"])
def test_the_config_file_tools_report_a_bad_file_or_field_value_in_one_line(case, tmp_path):
    unclosed = tmp_path / "unclosed.py"
    unclosed.write_text(BAD_CONFIG_FILES["unclosed.py"][0])
    command, expected = {
        "a file that does not compile": (
            ["train.py", "--config", str(unclosed)], f"config file {str(unclosed)!r}, line 2: '{{' was never closed"),
        "a field value of the wrong type": (
            ["-m", "genet_jax.evaluate", "--config", "configs/cifar10.py", "--config.data.eval_batch_size=many"],
            "flag --config.data.eval_batch_size=many: invalid literal for int() with base 10: 'many' "
            "(a field of config file 'configs/cifar10.py')"),
    }[case]
    done = subprocess.run([sys.executable, *command], capture_output=True, text=True, cwd=REPO_ROOT)
    assert (done.returncode, done.stderr.splitlines()) == (INPUT_ERROR_EXIT_CODE, [f"error: {expected}"])


def test_an_os_error_about_a_path_is_one_line_and_any_other_keeps_its_traceback(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    for command, message in ((lambda: open(tmp_path, "w"), f"{tmp_path}: Is a directory"),
                             (lambda: os.makedirs(a_file / "workdir"), f"{a_file / 'workdir'}: Not a directory")):
        assert cli.exit_code_of(command) == INPUT_ERROR_EXIT_CODE
        assert capsys.readouterr().err == f"error: {message}\n"
    with pytest.raises(OSError):  # no path of the user's in it: a bug
        cli.exit_code_of(lambda: os.close(-1))


def trainer_workdir(workdir) -> str:
    """A workdir with one checkpoint as train.py writes it: variables, model, train_state, EMA weights
    and the data position."""
    model = g.create_model(TINY)
    state = steps.init_state(random_variables(model), optax.sgd(0.1), with_ema=True)
    checkpointer = TrainCheckpointer(str(workdir), keep=1)
    try:
        checkpointer.save(state, model_description(model.spec), {"stand-in": "a data iterator position"}, wait=True)
    finally:
        checkpointer.close()
    return str(workdir)


def test_a_trainer_checkpoint_is_read_without_orbax_warnings(tmp_path, sample_jpegs, caplog, capsys):
    workdir = trainer_workdir(tmp_path / "run")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert predict.main(["--checkpoint", workdir, sample_jpegs[0]]) == 0
        weights = [load_model_checkpoint(workdir).weights, load_model_checkpoint(workdir, raw=True).weights]
    assert weights == [EMA_WEIGHTS, RAW_WEIGHTS]
    assert [record.getMessage() for record in caplog.records] == []
    assert capsys.readouterr().err == ""
