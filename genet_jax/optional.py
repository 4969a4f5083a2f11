"""Optional packages, imported where a feature needs them: a missing one is an InputError naming
the extra that installs it (one line, exit code 2 from the tools), not a ModuleNotFoundError."""
from __future__ import annotations

import importlib
from types import ModuleType

from genet_jax.errors import InputError

# import name -> the extra of genet-jax that installs it
EXTRAS = {"torch": "torch", "onnx": "onnx", "onnxruntime": "onnx", "onnxscript": "onnx"}


class MissingDependency(InputError):
    """An optional package a requested feature needs is not installed."""


def require(module: str, feature: str) -> ModuleType:
    """`import module`, or MissingDependency saying that `feature` needs it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        extra = EXTRAS[module.split(".")[0]]
        raise MissingDependency(f"{feature} needs {module.split('.')[0]}, which is not installed "
                                f"({type(e).__name__}): pip install 'genet-jax[{extra}]' "
                                f"(from a checkout: pip install -e '.[{extra}]')") from None
