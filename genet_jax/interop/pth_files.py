"""PyTorch weight files (.pth) <-> model checkpoints, in the three state_dict layouts of
genet_jax.interop.state_dict, with the sidecar files that carry an architecture timm or the
authors' code cannot name: official -> FILE.txt (structure string), timm -> FILE.timm.json (ByobNet
fields), torch -> FILE.json (the spec). Reading a file infers its layout from the keys and its
architecture from the registry (by shapes) or the sidecar. Needs torch (the torch extra).
"""
from __future__ import annotations

import json
import os
from typing import Any, Optional

from genet_jax.arch.registry import list_models, resolve_spec
from genet_jax.arch.spec import NetworkSpec
from genet_jax.arch.structure_string import to_structure_string
from genet_jax.errors import InputError
from genet_jax.interop.state_dict import (StateDictError, detect_layout, from_state_dict, head_name, state_dict_keys,
                                          timm_config, timm_model_name, to_state_dict)
from genet_jax.optional import require


class ExportError(InputError, RuntimeError):
    """A .pth file that cannot be read, imported or matched to an architecture; names the file."""


def sidecar_paths(out: str) -> dict[str, str]:
    stem = out[:-4] if out.endswith(".pth") else out
    return {"official": stem + ".txt", "timm": stem + ".timm.json", "torch": stem + ".json"}


def export_pth(spec: NetworkSpec, variables: Any, layout: str, out: str, extras: Optional[dict] = None) -> list[str]:
    """Write `out` (and its sidecar file); returns the paths written."""
    torch = require("torch", "writing a PyTorch .pth file")
    state = to_state_dict(spec, variables, layout, extras)
    tensors = {k: torch.from_numpy(v.copy()) for k, v in state.items()}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "wb") as f:  # an unwritable path is Python's OSError naming it, not a torch RuntimeError
        torch.save({"state_dict": tensors} if layout == "official" else tensors, f)
    written, sidecar = [out], sidecar_paths(out)[layout]
    if layout == "official":
        with open(sidecar, "w") as f:
            f.write(to_structure_string(spec) + "\n")
        written.append(sidecar)
    elif layout == "timm" and timm_model_name(spec) is None:
        with open(sidecar, "w") as f:
            json.dump(timm_config(spec), f, indent=2)
        written.append(sidecar)
    elif layout == "torch":
        spec.save(sidecar)
        written.append(sidecar)
    return written


def load_pth(path: str) -> dict:
    """A state_dict of tensors from a .pth, read with weights_only=True (nothing else is unpickled)."""
    torch = require("torch", "reading a PyTorch .pth file")
    if not os.path.isfile(path):
        raise ExportError(f"{path}: no such file")
    with open(path, "rb") as f:
        header = f.read(4)
    if not (header.startswith(b"PK\x03\x04") or header[:1] == b"\x80"):
        raise ExportError(f"{path}: not a PyTorch file (neither torch.save's zip format nor a legacy pickle)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first_line = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise ExportError(f"{path}: cannot read it as a PyTorch weights file "
                          f"({type(e).__name__}: {first_line})") from None
    for wrapper in ("state_dict", "model", "state_dict_ema"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict) or not all(hasattr(v, "shape") for v in obj.values()):
        raise ExportError(f"{path}: holds no state_dict of tensors")
    if obj and all(k.startswith("module.") for k in obj):  # saved from DataParallel
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def _num_classes(state_dict: dict, layout: str) -> int:
    head_key = head_name(layout) + ".weight"
    if head_key not in state_dict:
        raise ExportError(f"a {layout!r} state_dict needs {head_key!r}; it is missing")
    return int(state_dict[head_key].shape[0])


def registered_match(state_dict: dict, layout: str) -> Optional[tuple[str, NetworkSpec]]:
    """(name, spec) of the first registered network whose keys and shapes the state_dict fits."""
    num_classes = _num_classes(state_dict, layout)
    for name in list_models():
        spec = resolve_spec(name, num_classes=num_classes)
        keys = state_dict_keys(spec, layout)
        if len(keys) == len(state_dict) and all(k in state_dict for k in keys):
            try:
                from_state_dict(spec, state_dict, layout)
                return name, spec
            except StateDictError:
                continue
    return None


def infer_spec(state_dict: dict, layout: str, path: str) -> NetworkSpec:
    """The architecture of a state_dict: the registered network it fits (with that network's
    resolution), else the spec in its sidecar file (FILE.json or FILE.txt)."""
    match = registered_match(state_dict, layout)
    if match is not None:
        return match[1]
    num_classes = _num_classes(state_dict, layout)
    sidecar = sidecar_paths(path)[layout]
    if layout in ("official", "torch") and os.path.isfile(sidecar):
        return resolve_spec(sidecar, num_classes=num_classes)
    raise ExportError(f"{path}: matches no registered architecture ({len(state_dict)} keys, {num_classes} "
                      f"classes) and has no {os.path.basename(sidecar)} beside it; pass --arch NAME_OR_JSON")


def read_pth(path: str, layout: Optional[str] = None,
             arch: Optional[str] = None) -> tuple[NetworkSpec, dict, dict, str]:
    """(spec, variables, extras, layout) of a PyTorch weights file in any supported layout."""
    state_dict = load_pth(path)
    try:
        detected = detect_layout(state_dict)
    except StateDictError as e:
        raise ExportError(f"{path}: {e}") from None
    if layout is not None and layout != detected:
        raise ExportError(f"{path}: --format {layout} was given but the file looks like a {detected!r} state_dict")
    if arch is not None:
        spec = resolve_spec(arch, num_classes=_num_classes(state_dict, detected))
    else:
        spec = infer_spec(state_dict, detected, path)
    try:
        variables, extras = from_state_dict(spec, state_dict, detected)
    except StateDictError as e:
        match = registered_match(state_dict, detected)
        hint = f"; the file looks like {match[0]!r}" if match else ""
        raise ExportError(f"{path}: does not fit --arch {arch}: {e}{hint}") from None
    return spec, variables, extras, detected


def import_pth(path: str, out: str, layout: Optional[str] = None, arch: Optional[str] = None) -> str:
    from genet_jax.checkpoint import save_model_checkpoint  # orbax: the train extra
    spec, variables, extras, detected = read_pth(path, layout, arch)
    return save_model_checkpoint(out, spec, variables, extras=extras,
                                 metadata={"imported_from": os.path.abspath(path), "format": detected})
