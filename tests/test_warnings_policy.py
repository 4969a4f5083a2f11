"""The suite's warnings policy (pyproject.toml's filterwarnings), run for real: pytest in a subprocess
with this project's configuration, on test files written here. A DeprecationWarning or FutureWarning
attributed to this project's code fails; one a dependency raises about its own calls (as orbax-checkpoint
does at import under jax 0.12.1) is reported in the warnings summary and fails nothing."""
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.compat  # the newest-JAX leg is where a dependency's deprecations appear first

# a library that deprecates one of its attributes the way jax does (module __getattr__, stacklevel=2),
# so the warning is attributed to whoever reads the attribute
OLD_LIBRARY = '''
import warnings

def __getattr__(name):
    if name == "OldSharding":
        warnings.warn("old_library.OldSharding is deprecated", DeprecationWarning, stacklevel=2)
        return object
    if name == "old_default":
        warnings.warn("old_library.old_default will change", FutureWarning, stacklevel=2)
        return 0
    raise AttributeError(name)
'''
# a dependency that reads the deprecated attribute when it is imported, as orbax-checkpoint does
DEPENDENCY = '''
import old_library

TRANSPORT = old_library.OldSharding
'''
TESTS = '''
import types

import dependency  # imported while pytest collects this file: the dependency's warning fires here


def run_as_module(module_name, source):
    """Run `source` as the code of module `module_name`: warnings are attributed by the module name
    of the frame that raises them (or of its caller, for stacklevel=2)."""
    module = types.ModuleType(module_name)
    exec(compile(source, module_name.replace(".", "/") + ".py", "exec"), module.__dict__)


def test_a_dependency_reading_a_deprecated_api():
    run_as_module("third_party.transport", "import old_library\\nold_library.OldSharding")


def test_genet_jax_reading_a_deprecated_api():
    run_as_module("genet_jax.sharding_probe", "import old_library\\nold_library.OldSharding")


def test_genet_jax_reading_a_value_whose_default_will_change():
    run_as_module("genet_jax.default_probe", "import old_library\\nold_library.old_default")


def test_a_test_module_reading_a_deprecated_api():
    run_as_module("tests.test_probe", "import old_library\\nold_library.OldSharding")
'''
EXPECTED = {
    "test_a_dependency_reading_a_deprecated_api": "PASSED",
    "test_genet_jax_reading_a_deprecated_api": "FAILED",
    "test_genet_jax_reading_a_value_whose_default_will_change": "FAILED",
    "test_a_test_module_reading_a_deprecated_api": "FAILED",
}


def test_own_deprecations_fail_and_dependencies_deprecations_are_reported(tmp_path):
    for name, source in {"old_library.py": OLD_LIBRARY, "dependency.py": DEPENDENCY, "test_policy.py": TESTS}.items():
        (tmp_path / name).write_text(textwrap.dedent(source))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", os.path.join(REPO_ROOT, "pyproject.toml"), "--rootdir", str(tmp_path),
         "-o", "addopts=", "-p", "no:cacheprovider", "-v", str(tmp_path / "test_policy.py")],
        capture_output=True, text=True, cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    output = done.stdout + done.stderr
    assert "ERROR" not in done.stdout, output  # the dependency's import-time warning broke no collection
    verbose_lines = [line.split() for line in done.stdout.splitlines() if line.startswith("test_policy.py::")]
    outcomes = {words[0].split("::")[1]: words[1]  # -v prints "test_policy.py::name PASSED [ 25%]"
                for words in verbose_lines if len(words) > 1 and words[1] in ("PASSED", "FAILED")}
    assert outcomes == EXPECTED, output
    assert done.returncode == 1, output
    assert "DeprecationWarning: old_library.OldSharding is deprecated" in done.stdout, output  # why they failed
    assert "FutureWarning: old_library.old_default will change" in done.stdout, output
    summary = done.stdout.split("warnings summary")[1]
    assert "dependency.py" in summary and "old_library.OldSharding is deprecated" in summary, output
