"""The releases of JAX and its libraries this project is tested with, checked where they are imported.

A version outside its range stops the import with one line naming the package, the version found
and the range (the CLIs exit with code 2): an untested JAX is more likely to be silently wrong
(changed numerics, a renamed sharding API behaving differently) than to fail on its own.
`GENET_JAX_IGNORE_VERSIONS=1` turns the error into a warning, for trying a new release.

requirements.txt and pyproject.toml carry the same ranges (tests/test_versions.py checks).
"""
from __future__ import annotations

import os
import sys
import warnings
from importlib import metadata

from packaging.specifiers import SpecifierSet
from packaging.version import Version

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
UNSUPPORTED_EXIT_CODE = 2


class UnsupportedVersionError(ImportError):
    """An installed package outside the range this project supports."""


def installed_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def check(distribution: str, version: str | None = None) -> str | None:
    """The problem with `distribution` at `version` (default: the installed one), or None."""
    version = installed_version(distribution) if version is None else version
    if version is None:
        return None  # not installed: its import fails on its own, naming it
    if Version(version) not in SpecifierSet(SUPPORTED[distribution]):
        return (f"genet_jax supports {distribution}{SUPPORTED[distribution]}, found {version}: "
                f"pip install \"{distribution}{SUPPORTED[distribution]}\" (or set {IGNORE_ENV}=1 to try it anyway)")
    return None


def require(*distributions: str) -> None:
    """Raise UnsupportedVersionError for the first of `distributions` installed outside its range."""
    for distribution in distributions:
        problem = check(distribution)
        if problem is None:
            continue
        if os.environ.get(IGNORE_ENV) == "1":
            warnings.warn(problem, RuntimeWarning, stacklevel=2)
            continue
        _report_uncaught_in_one_line()
        raise UnsupportedVersionError(problem)


def _report_uncaught_in_one_line() -> None:
    """Left uncaught (a CLI run), the error prints as one line and exits with code 2. Set only when
    the import is failing anyway, so nothing else in the process depends on the hook."""
    previous = sys.excepthook

    def hook(kind, value, traceback):
        if issubclass(kind, UnsupportedVersionError):
            print(f"error: {value}", file=sys.stderr, flush=True)
            sys.stdout.flush()
            os._exit(UNSUPPORTED_EXIT_CODE)
        previous(kind, value, traceback)

    sys.excepthook = hook
