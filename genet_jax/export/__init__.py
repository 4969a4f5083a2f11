"""`python -m genet_jax.export COMMAND ...`: PyTorch and ONNX export, PyTorch import.

The commands, torch, import, onnx, int8 and hub, are genet_jax.export.command (its DESCRIPTION,
`--help`, lists their command lines); what they call, with typed arguments, is
genet_jax.export.formats. The flag forms before the commands (`--format onnx ...`,
`--import-from FILE.pth ...`) still run, with a deprecation line, for one release
(genet_jax.export.legacy).
"""
from __future__ import annotations

import sys
from typing import Optional

from genet_jax.export import legacy
from genet_jax.export.command import build_parser, run_command
from genet_jax.export.formats import (Int8Options, ModelSource, ModelToExport, OnnxOptions, export_hub,
                                      export_onnx_float, export_onnx_int8, export_torch, load_model,
                                      open_int8_calibration)

__all__ = ["Int8Options", "ModelSource", "ModelToExport", "OnnxOptions", "build_parser", "export_hub",
           "export_onnx_float", "export_onnx_int8", "export_torch", "load_model", "main", "open_int8_calibration"]


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if legacy.is_legacy(argv):
        argv = legacy.subcommand_argv(argv)
    return run_command(argv)
