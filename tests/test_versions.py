"""Supported versions: one table (genet_jax.versions), the same ranges in pyproject.toml; a version outside them makes the CLIs refuse in one line (exit code 2) and the
library warn, without touching the host process."""
import os
import re
import subprocess
import sys
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from genet_jax import versions
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.compat  # also run by CI's newest-JAX leg

PINNED_IN_FILES = ("jax", "flax", "optax", "orbax-checkpoint")  # jaxlib comes with jax


def pyproject() -> dict:
    with open(os.path.join(REPO_ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]


def test_pyproject_carries_the_supported_ranges():
    project = pyproject()
    declared = {Requirement(r).name: Requirement(r).specifier
                for r in project["dependencies"] + project["optional-dependencies"]["train"]}
    for name in PINNED_IN_FILES:
        assert declared[name] == SpecifierSet(versions.SUPPORTED[name]), name
    for extra in ("cuda12", "cuda13", "tpu"):
        (requirement,) = map(Requirement, project["optional-dependencies"][extra])
        assert requirement.name == "jax" and requirement.extras == {extra}
        assert requirement.specifier == SpecifierSet(versions.SUPPORTED["jax"])


def test_the_version_is_written_once():
    import genet_jax
    assert pyproject()["dynamic"] == ["version"] and "version" not in pyproject()
    with open(os.path.join(REPO_ROOT, "pyproject.toml"), "rb") as f:
        assert tomllib.load(f)["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "genet_jax.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", genet_jax.__version__)


def test_installed_versions_are_supported():
    for name in versions.SUPPORTED:
        assert versions.check(name) is None, versions.check(name)


@pytest.mark.parametrize("name,version", [("jax", "0.13.0"), ("jax", "0.10.1"), ("flax", "0.12.11"),
                                          ("orbax-checkpoint", "0.13.0"), ("optax", "0.3.0")])
def test_versions_outside_the_range_are_named(name, version):
    problem = versions.check(name, version)
    assert problem and name in problem and version in problem and versions.SUPPORTED[name] in problem


@pytest.mark.parametrize("name,version", [("jax", "0.10.2"), ("jax", "0.11.2"), ("jax", "0.12.0.1"),
                                          ("flax", "0.12.12"), ("jaxlib", "0.12.0.1")])
def test_versions_inside_the_range_pass(name, version):
    assert versions.check(name, version) is None


FAKE_JAX = ("import importlib.metadata as m; real = m.version; "
            "m.version = lambda d: '0.13.0' if d == 'jax' else real(d); "
            "import runpy; runpy.run_module('genet_jax.summary', run_name='__main__')")


def test_a_cli_under_an_unsupported_jax_says_so_in_one_line_and_exits_2():
    done = subprocess.run([sys.executable, "-c", FAKE_JAX, "genet_light"], capture_output=True, text=True,
                          cwd=REPO_ROOT, env={k: v for k, v in os.environ.items() if k != versions.IGNORE_ENV})
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == [
        f"error: genet_jax supports jax{versions.SUPPORTED['jax']}, found 0.13.0: "
        f"pip install \"jax{versions.SUPPORTED['jax']}\" (or set {versions.IGNORE_ENV}=1 to try it anyway)"]
    assert done.stdout == ""


def test_the_override_turns_the_error_into_a_warning():
    done = subprocess.run([sys.executable, "-c", FAKE_JAX, "genet_light"], capture_output=True, text=True,
                          cwd=REPO_ROOT, env=dict(os.environ, **{versions.IGNORE_ENV: "1"}))
    assert done.returncode == 0 and re.search(r"UnsupportedVersionWarning: genet_jax supports jax", done.stderr)
    assert "genet_light" in done.stdout


LIBRARY_UNDER_FAKE_JAX = ("import importlib.metadata as m, sys, warnings; real = m.version; "
                          "m.version = lambda d: '0.13.0' if d == 'jax' else real(d); hook = sys.excepthook; "
                          "import genet_jax; assert sys.excepthook is hook, 'the import replaced sys.excepthook'; "
                          "warnings.simplefilter('error', genet_jax.versions.UnsupportedVersionWarning)\n"
                          "try:\n    genet_jax.create_model('genet_light')\n"
                          "except genet_jax.versions.UnsupportedVersionWarning as w:\n    print('warned:', w)")


def test_the_library_warns_and_leaves_the_process_alone():
    """Importing genet_jax under an unsupported JAX neither raises nor touches sys.excepthook; creating a
    model warns (a library reports; only the CLIs refuse)."""
    done = subprocess.run([sys.executable, "-c", LIBRARY_UNDER_FAKE_JAX], capture_output=True, text=True,
                          cwd=REPO_ROOT, env={k: v for k, v in os.environ.items() if k != versions.IGNORE_ENV})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("warned: genet_jax supports jax"), done.stdout
