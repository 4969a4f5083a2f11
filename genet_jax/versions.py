"""The releases of JAX and its libraries this project is tested with.

Nothing here runs at import. A library user gets an `UnsupportedVersionWarning` naming the package, the
version found and the range when a model is created under an untested release (an untested JAX is more
likely to be silently wrong, through changed numerics or a renamed sharding API, than to fail on its
own). The command-line tools refuse to start instead: one line and exit code 2 (genet_jax.cli), unless
`GENET_JAX_IGNORE_VERSIONS=1`, which lets them run with the warning.

pyproject.toml and requirements.txt carry the same ranges (tests/test_versions.py checks).
"""
from __future__ import annotations

import os
import warnings
from functools import lru_cache
from importlib import metadata

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from genet_jax.errors import InputError

# jax 0.10.2 is the newest release for Python 3.11; 0.11.x is what GPU images carry (CUDA 13);
# 0.12.x is current. flax 0.12.11 was yanked (a traverse_util bug; this project uses traverse_util).
SUPPORTED = {
    "jax": ">=0.10.2,<0.13",
    "jaxlib": ">=0.10.2,<0.13",
    "flax": ">=0.12.8,!=0.12.11,<0.13",
    "optax": ">=0.2.8,<0.3",
    "orbax-checkpoint": ">=0.12.8,<0.13",
}
IGNORE_ENV = "GENET_JAX_IGNORE_VERSIONS"


class UnsupportedVersionError(InputError):
    """An installed package outside the range this project supports (raised by the CLIs)."""


class UnsupportedVersionWarning(RuntimeWarning):
    """An installed package outside the range this project supports (warned by the library)."""


def installed_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def check(distribution: str, version: str | None = None) -> str | None:
    """The problem with `distribution` at `version` (default: the installed one), or None."""
    version = installed_version(distribution) if version is None else version
    if version is None:
        return None  # not installed: an optional part (the train extra's optax, orbax), or its import fails
    if Version(version) not in SpecifierSet(SUPPORTED[distribution]):
        return (f"genet_jax supports {distribution}{SUPPORTED[distribution]}, found {version}: "
                f"pip install \"{distribution}{SUPPORTED[distribution]}\" (or set {IGNORE_ENV}=1 to try it anyway)")
    return None


@lru_cache(maxsize=1)
def installed_problems() -> tuple[str, ...]:
    """The problem of every installed package of SUPPORTED outside its range."""
    return tuple(problem for problem in map(check, SUPPORTED) if problem)


def warn_if_unsupported() -> None:
    """An UnsupportedVersionWarning per installed package outside its range (Python shows each once)."""
    for problem in installed_problems():
        warnings.warn(problem, UnsupportedVersionWarning, stacklevel=3)


def require_supported() -> None:
    """For the CLIs: UnsupportedVersionError for the first installed package outside its range, unless
    IGNORE_ENV=1."""
    problems = installed_problems()
    if problems and os.environ.get(IGNORE_ENV) != "1":
        raise UnsupportedVersionError(problems[0])
    warn_if_unsupported()
