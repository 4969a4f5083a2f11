"""`python -m genet_jax.export COMMAND ...`: PyTorch and ONNX export, PyTorch import.

The commands, torch, import, onnx, int8 and hub, are genet_jax.export.command (its DESCRIPTION,
`--help`, lists their command lines); what they call, with typed arguments, is
genet_jax.export.formats. The flag forms before the commands (`--format onnx ...`,
`--import-from FILE.pth ...`) still run, with a deprecation line, for one release
(genet_jax.export.legacy).
"""
from __future__ import annotations

import importlib
import sys
from typing import Optional

# Loaded on first use, so that `python -m genet_jax.export` can name a missing extra in one line
# (genet_jax.export.__main__) before formats imports orbax and grain.
_LAZY = {"Int8Options": "formats", "ModelSource": "formats", "ModelToExport": "formats", "OnnxOptions": "formats",
         "export_hub": "formats", "export_onnx_float": "formats", "export_onnx_int8": "formats",
         "export_torch": "formats", "load_model": "formats", "open_int8_calibration": "formats",
         "build_parser": "command"}

__all__ = ["Int8Options", "ModelSource", "ModelToExport", "OnnxOptions", "build_parser", "export_hub",
           "export_onnx_float", "export_onnx_int8", "export_torch", "load_model", "main", "open_int8_calibration"]


def main(argv: Optional[list[str]] = None) -> int:
    from genet_jax.export import legacy
    from genet_jax.export.command import run_command
    argv = sys.argv[1:] if argv is None else list(argv)
    if legacy.is_legacy(argv):
        argv = legacy.subcommand_argv(argv)
    return run_command(argv)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"genet_jax.export.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'genet_jax.export' has no attribute {name!r}")
