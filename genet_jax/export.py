"""PyTorch export and import.

Export a checkpoint (or a freshly initialised architecture) to a .pth file:
    python -m genet_jax.export --checkpoint DIR --format official|timm|torch --out FILE.pth
    python -m genet_jax.export --arch NAME_OR_JSON --seed N --format ... --out FILE.pth
Import a .pth file (the authors', timm's, or this project's) into a checkpoint:
    python -m genet_jax.export --import-from FILE.pth [--format F] [--arch NAME_OR_JSON] --out CKPT_DIR

Files beside the .pth: official -> FILE.txt (the authors' structure string); timm -> FILE.timm.json
(ByobNet fields) for networks timm does not name; torch -> FILE.json (the spec). Import reads them
back when --arch is not given; otherwise the architecture is matched against the registry by shapes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Optional

from genet_jax import interop
from genet_jax.interop.model_checkpoint import CheckpointError, load_model_checkpoint, save_model_checkpoint
from genet_jax.arch.registry import list_models, resolve_spec
from genet_jax.arch.spec import NetworkSpec, SpecError


class ExportError(RuntimeError):
    """A user-facing failure of export or import; printed without a traceback by the CLI."""


def sidecar_paths(out: str) -> dict[str, str]:
    stem = out[:-4] if out.endswith(".pth") else out
    return {"official": stem + ".txt", "timm": stem + ".timm.json", "torch": stem + ".json"}


def export_pth(spec: NetworkSpec, variables: Any, layout: str, out: str, extras: Optional[dict] = None) -> list[str]:
    """Write `out` (and its sidecar file); returns the paths written."""
    import torch

    state = interop.to_state_dict(spec, variables, layout, extras)
    tensors = {k: torch.from_numpy(v.copy()) for k, v in state.items()}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    torch.save({"state_dict": tensors} if layout == "official" else tensors, out)
    written, sidecar = [out], sidecar_paths(out)[layout]
    if layout == "official":
        from genet_jax.arch.structure_string import to_structure_string
        with open(sidecar, "w") as f:
            f.write(to_structure_string(spec) + "\n")
        written.append(sidecar)
    elif layout == "timm" and interop.timm_model_name(spec) is None:
        with open(sidecar, "w") as f:
            json.dump(interop.timm_config(spec), f, indent=2)
        written.append(sidecar)
    elif layout == "torch":
        spec.save(sidecar)
        written.append(sidecar)
    return written


def load_pth(path: str) -> dict:
    """A state_dict of tensors from a .pth, read with weights_only=True (nothing else is unpickled)."""
    import torch

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
    head_key = interop.head_name(layout) + ".weight"
    if head_key not in state_dict:
        raise ExportError(f"a {layout!r} state_dict needs {head_key!r}; it is missing")
    return int(state_dict[head_key].shape[0])


def registered_match(state_dict: dict, layout: str) -> Optional[tuple[str, NetworkSpec]]:
    """(name, spec) of the first registered network whose keys and shapes the state_dict fits."""
    num_classes = _num_classes(state_dict, layout)
    for name in list_models():
        spec = resolve_spec(name, num_classes=num_classes)
        keys = interop.state_dict_keys(spec, layout)
        if len(keys) == len(state_dict) and all(k in state_dict for k in keys):
            try:
                interop.from_state_dict(spec, state_dict, layout)
                return name, spec
            except interop.StateDictError:
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
        detected = interop.detect_layout(state_dict)
    except interop.StateDictError as e:
        raise ExportError(f"{path}: {e}") from None
    if layout is not None and layout != detected:
        raise ExportError(f"{path}: --format {layout} was given but the file looks like a {detected!r} state_dict")
    if arch is not None:
        spec = resolve_spec(arch, num_classes=_num_classes(state_dict, detected))
    else:
        spec = infer_spec(state_dict, detected, path)
    try:
        variables, extras = interop.from_state_dict(spec, state_dict, detected)
    except interop.StateDictError as e:
        match = registered_match(state_dict, detected)
        hint = f"; the file looks like {match[0]!r}" if match else ""
        raise ExportError(f"{path}: does not fit --arch {arch}: {e}{hint}") from None
    return spec, variables, extras, detected


def import_pth(path: str, out: str, layout: Optional[str] = None, arch: Optional[str] = None) -> str:
    spec, variables, extras, detected = read_pth(path, layout, arch)
    return save_model_checkpoint(out, spec, variables, extras=extras,
                                 metadata={"imported_from": os.path.abspath(path), "format": detected})


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genet_jax.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="export: model checkpoint or trainer workdir")
    parser.add_argument("--arch", help="export: a freshly initialised NAME_OR_JSON (with --seed); "
                                       "import: the file's architecture (default: inferred)")
    parser.add_argument("--import-from", metavar="FILE.pth", help="import this PyTorch file")
    parser.add_argument("--format", choices=interop.LAYOUTS, help="key layout (export: required; "
                                                                 "import: checked against the file)")
    parser.add_argument("--seed", type=int, default=0, help="export with --arch: initialisation seed")
    parser.add_argument("--num-classes", type=int, help="export with --arch: classes of the head")
    parser.add_argument("--out", required=True, help="FILE.pth to write (export) or CKPT_DIR (import)")
    args = parser.parse_args(argv)
    if args.import_from and args.checkpoint:
        parser.error("--import-from and --checkpoint exclude each other")
    if not args.import_from and (args.checkpoint is None) == (args.arch is None):
        parser.error("export needs exactly one of --checkpoint DIR or --arch NAME_OR_JSON")
    try:
        if args.import_from:
            where = import_pth(args.import_from, args.out, args.format, args.arch)
            print(f"imported {args.import_from} -> checkpoint {where}")
            return 0
        if args.format is None:
            parser.error("--format is required for export")
        if args.checkpoint:
            ckpt = load_model_checkpoint(args.checkpoint)
            spec, variables, extras = ckpt.spec, ckpt.variables, ckpt.extras
        else:
            from genet_jax.models.network import create_model, init_variables
            model = create_model(args.arch, num_classes=args.num_classes)
            spec, variables, extras = model.spec, init_variables(model, args.seed), None
        for path in export_pth(spec, variables, args.format, args.out, extras):
            print(f"wrote {path}")
        return 0
    except (ExportError, CheckpointError, SpecError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
