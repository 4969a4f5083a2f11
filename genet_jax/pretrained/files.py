"""Weights files on disk: safetensors read and written with NumPy (no torch), `.pth` through the torch
extra, and Hub-style folders (`model.safetensors` + `config.json`, as timm writes them, plus this
project's spec and preprocessing under the `genet_jax` key)."""
from __future__ import annotations

import json
import os
from typing import Any, Mapping, Optional

import numpy as np

from genet_jax.arch.registry import resolve_spec
from genet_jax.arch.spec import NetworkSpec, SpecError
from genet_jax.errors import InputError
from genet_jax.interop.state_dict import (StateDictError, TIMM_NAMES, detect_layout, from_state_dict, head_name,
                                          timm_model_name, to_state_dict)
from genet_jax.optional import require
from genet_jax.pretrained.catalog import HUB_WEIGHTS_FILE, EvalPreprocessing
from genet_jax.pretrained.hub import CorruptWeightsError

CONFIG_FILE = "config.json"
OWN_CONFIG_KEY = "genet_jax"
TRACKED_SUFFIX = ".num_batches_tracked"  # PyTorch BN bookkeeping: absent from some exports, 0 when missing
PTH_SUFFIXES = (".pth", ".pt", ".bin")


class WeightsMismatchError(InputError, ValueError):
    """Weights whose tensors do not fit the architecture; names the file and the first mismatching key."""


def read_safetensors(path: str) -> dict[str, np.ndarray]:
    safetensors_numpy = require("safetensors.numpy", "reading .safetensors weights")
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    try:
        return safetensors_numpy.load_file(path)
    except Exception as e:  # safetensors raises its own SafetensorError (not an OSError) for a bad file
        first_line = (str(e).strip().splitlines() or [""])[0][:200]
        raise CorruptWeightsError(f"{path}: not a readable safetensors file ({type(e).__name__}: {first_line})") from None


def read_state_dict(path: str) -> dict[str, Any]:
    """The tensors of a weights file: .safetensors (NumPy) or a PyTorch file (the torch extra)."""
    if path.endswith(PTH_SUFFIXES):
        from genet_jax.interop.pth_files import load_pth  # torch is imported there, only when needed
        return load_pth(path)
    return read_safetensors(path)


def variables_from_state_dict(spec: NetworkSpec, state_dict: Mapping[str, Any], where: str) -> tuple[dict, dict]:
    """(Flax variables, extras) of a state_dict in any of the three layouts, checked key by key and
    shape by shape against `spec`."""
    layout = detect_layout_or_error(state_dict, where)
    filled = dict(state_dict)
    for key in state_dict:
        if key.endswith(".running_mean"):
            filled.setdefault(key[:-len(".running_mean")] + TRACKED_SUFFIX, np.zeros((), np.int64))
    try:
        return from_state_dict(spec, filled, layout)
    except StateDictError as e:
        raise WeightsMismatchError(f"{where}: does not fit {describe(spec)}: {e}") from None


def detect_layout_or_error(state_dict: Mapping[str, Any], where: str) -> str:
    try:
        return detect_layout(state_dict)
    except StateDictError as e:
        raise WeightsMismatchError(f"{where}: {e}") from None


def describe(spec: NetworkSpec) -> str:
    name = timm_model_name(spec)
    return f"{name} ({spec.num_classes} classes)" if name else f"this architecture ({spec.num_classes} classes)"


def head_classes(state_dict: Mapping[str, Any], layout: str) -> Optional[int]:
    """Classes of the classifier a state_dict in `layout` holds, or None when it has none."""
    key = f"{head_name(layout)}.weight"
    return int(np.shape(state_dict[key])[0]) if key in state_dict else None


# ---- Hub-style folders ------------------------------------------------------------------------

def timm_pretrained_cfg(spec: NetworkSpec, preprocessing: EvalPreprocessing) -> dict:
    """timm's `pretrained_cfg` for these weights (so timm's loaders read the folder too)."""
    return {"input_size": [spec.in_channels, preprocessing.resolution, preprocessing.resolution],
            "crop_pct": preprocessing.crop_fraction, "interpolation": preprocessing.interpolation,
            "mean": list(preprocessing.mean), "std": list(preprocessing.std), "num_classes": spec.num_classes,
            "first_conv": "stem.conv", "classifier": "head.fc"}


def folder_config(spec: NetworkSpec, preprocessing: EvalPreprocessing, class_names: Optional[list[str]],
                  metadata: Optional[dict] = None) -> dict:
    """config.json of a weights folder: timm's fields (architecture, num_classes, pretrained_cfg,
    label_names) and this project's (spec, preprocessing, metadata) under OWN_CONFIG_KEY."""
    from genet_jax import __version__
    config: dict[str, Any] = {}
    timm_name = timm_model_name(spec)
    if timm_name:
        config["architecture"] = timm_name
    config.update(num_classes=spec.num_classes, num_features=spec.final_width, global_pool="avg",
                  pretrained_cfg=timm_pretrained_cfg(spec, preprocessing))
    if class_names:
        config["label_names"] = list(class_names)
    config[OWN_CONFIG_KEY] = {"version": __version__, "layout": "timm", "spec": spec.to_dict(),
                              "preprocessing": preprocessing.to_json(), "metadata": metadata or {}}
    return config


READABLE_FILE_MODE = 0o644  # safetensors creates its files owner-only


def _write_atomically(path: str, write) -> None:
    partial = path + ".partial"
    try:
        write(partial)
        os.chmod(partial, READABLE_FILE_MODE)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def write_folder(directory: str, spec: NetworkSpec, variables: Mapping, config: dict, card: str,
                 extras: Optional[dict] = None) -> list[str]:
    """model.safetensors (timm layout), config.json and README.md in `directory`; each file appears whole
    or not at all. Returns the paths written."""
    safetensors_numpy = require("safetensors.numpy", "writing .safetensors weights")
    os.makedirs(directory, exist_ok=True)
    tensors = {k: np.array(v, order="C") for k, v in to_state_dict(spec, variables, "timm", extras).items()}  # 0-d stays 0-d
    paths = [os.path.join(directory, name) for name in (HUB_WEIGHTS_FILE, CONFIG_FILE, "README.md")]
    _write_atomically(paths[0], lambda p: safetensors_numpy.save_file(tensors, p, metadata={"format": "pt"}))
    _write_atomically(paths[1], lambda p: _write_text(p, json.dumps(config, indent=2) + "\n"))
    _write_atomically(paths[2], lambda p: _write_text(p, card))
    return paths


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def read_folder_config(directory: str) -> tuple[Optional[NetworkSpec], Optional[EvalPreprocessing],
                                                Optional[list[str]], dict]:
    """(spec, preprocessing, class names, metadata) from a folder's config.json: this project's
    fields where present, else timm's (architecture gernet_s/m/l, pretrained_cfg, label_names)."""
    path = os.path.join(directory, CONFIG_FILE)
    if not os.path.isfile(path):
        return None, None, None, {}
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
        own = config.get(OWN_CONFIG_KEY) or {}
        spec = NetworkSpec.from_dict(own["spec"]) if "spec" in own else _timm_spec(config)
        if "preprocessing" in own:
            preprocessing = EvalPreprocessing.from_json(own["preprocessing"])
        else:
            preprocessing = _timm_preprocessing(config.get("pretrained_cfg") or {})
    except (ValueError, KeyError, TypeError, SpecError) as e:
        raise InputError(f"{path}: not a weights folder's config ({type(e).__name__}: {e})") from None
    labels = config.get("label_names")
    class_names = list(labels) if isinstance(labels, list) else None
    return spec, preprocessing, class_names, own.get("metadata", {})


def _timm_spec(config: dict) -> Optional[NetworkSpec]:
    ours = {theirs: ours for ours, theirs in TIMM_NAMES.items()}.get(config.get("architecture", ""))
    return resolve_spec(ours, num_classes=int(config.get("num_classes", 1000))) if ours else None


def _timm_preprocessing(pretrained_cfg: dict) -> Optional[EvalPreprocessing]:
    if "input_size" not in pretrained_cfg:
        return None
    defaults = EvalPreprocessing(int(pretrained_cfg["input_size"][-1]))
    return EvalPreprocessing(defaults.resolution, float(pretrained_cfg.get("crop_pct", defaults.crop_fraction)),
                             tuple(pretrained_cfg.get("mean", defaults.mean)),
                             tuple(pretrained_cfg.get("std", defaults.std)),
                             str(pretrained_cfg.get("interpolation", defaults.interpolation)))
