"""CI's main leg installs requirements-lock.txt (.ci/run, the README's test command): the lock must pin
every package and satisfy every range the project declares, or a range was changed without `bash .ci/lock`."""
import os
import re

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.conftest import REPO_ROOT
from tests.test_versions import pyproject

LOCK = os.path.join(REPO_ROOT, "requirements-lock.txt")


def read_requirements(path: str) -> list[Requirement]:
    """The requirements of a pip requirements file, following its `-r` includes."""
    requirements = []
    with open(path) as f:
        for line in f:
            line = line.split("#")[0].strip()
            if line.startswith("-r "):
                requirements += read_requirements(os.path.join(os.path.dirname(path), line[3:].strip()))
            elif line and not line.startswith("-"):
                requirements.append(Requirement(line))
    return requirements


def locked_versions() -> dict[str, Version]:
    pins = read_requirements(LOCK)
    for pin in pins:
        assert len(pin.specifier) == 1 and next(iter(pin.specifier)).operator == "==", f"not pinned: {pin}"
    return {canonicalize_name(pin.name): Version(next(iter(pin.specifier)).version) for pin in pins}


LOCKED_EXTRAS = ("train", "tfds", "torch", "onnx", "dev")  # requirements-dev.txt: .[all,dev]


def declared_requirements() -> list[Requirement]:
    """What the main leg's environment must satisfy: pyproject.toml's dependencies and the extras
    requirements-dev.txt installs, and requirements-dev.txt's own lines."""
    project = pyproject()
    declared = [Requirement(r) for r in project["dependencies"]]
    for extra in LOCKED_EXTRAS:
        declared += [Requirement(r) for r in project["optional-dependencies"][extra]]
    declared += read_requirements(os.path.join(REPO_ROOT, "requirements-dev.txt"))
    return [r for r in declared if canonicalize_name(r.name) != "genet-jax"
            and (r.marker is None or r.marker.evaluate({"python_version": "3.11"}))]


def test_the_lock_pins_a_version_inside_every_declared_range():
    locked = locked_versions()
    for requirement in declared_requirements():
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement} is not in requirements-lock.txt: run bash .ci/lock"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"requirements-lock.txt pins {name}=={locked[name]}, outside {requirement}: run bash .ci/lock")


def test_the_readme_test_command_is_the_one_ci_runs():
    with open(os.path.join(REPO_ROOT, ".ci", "run")) as f:
        ci_script = f.read().replace("\\\n", " ")
    with open(os.path.join(REPO_ROOT, "README.md")) as f:
        readme = f.read()
    (ci_command,) = [re.sub(r"\s+", " ", line).strip() for line in ci_script.splitlines()
                     if line.startswith("python3 -m venv .venv ")]
    assert "-r requirements-lock.txt" in ci_command
    assert ci_command in readme, f"README.md does not show CI's test command: {ci_command}"
