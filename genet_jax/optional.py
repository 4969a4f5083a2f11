"""Optional packages, imported where a feature needs them: a missing one is an InputError naming the
extra that installs it (one line, exit code 2 from the tools), not a ModuleNotFoundError.

The core install (`pip install genet-jax`) carries what models, pretrained weights and the spec tools
use; pyproject.toml's extras add the rest, and EXTRA_MODULES lists what each of them must make importable.
"""
from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from genet_jax.errors import InputError

CORE = ""  # installed by `pip install genet-jax` itself
# import name -> the extra of genet-jax that installs it
EXTRAS = {"torch": "torch", "onnx": "onnx", "onnxruntime": "onnx", "onnxscript": "onnx",
          "tensorflow_datasets": "tfds", "safetensors": CORE, "huggingface_hub": CORE, "PIL": CORE}
# extra -> (import name, distribution) of each package it installs that the code imports
EXTRA_MODULES = {
    "train": (("optax", "optax"), ("orbax.checkpoint", "orbax-checkpoint"), ("grain", "grain"),
              ("ml_collections", "ml-collections"), ("absl", "absl-py"), ("tqdm", "tqdm"),
              ("tensorboardX", "tensorboardX"), ("matplotlib", "matplotlib"), ("sklearn", "scikit-learn")),
}


class MissingDependency(InputError):
    """An optional package a requested feature needs is not installed."""


def install_hint(extra: str) -> str:
    if extra == CORE:
        return "pip install genet-jax (from a checkout: pip install -e .)"
    return f"pip install 'genet-jax[{extra}]' (from a checkout: pip install -e '.[{extra}]')"


def require(module: str, feature: str) -> ModuleType:
    """`import module`, or MissingDependency saying that `feature` needs it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        extra = EXTRAS[module.split(".")[0]]
        raise MissingDependency(f"{feature} needs {module.split('.')[0]}, which is not installed "
                                f"({type(e).__name__}): {install_hint(extra)}") from None


def require_extra(extra: str, feature: str) -> None:
    """MissingDependency naming `extra` when any package it installs cannot be found."""
    missing = [distribution for module, distribution in EXTRA_MODULES[extra] if not _importable(module)]
    if missing:
        raise MissingDependency(f"{feature} needs the {extra} extra (missing: {', '.join(missing)}): "
                                f"{install_hint(extra)}")


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package is missing
        return False
