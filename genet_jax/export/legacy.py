"""The flag forms `python -m genet_jax.export` took before its subcommands, kept for one release:
`--format official|timm|torch` -> `torch --format ...`, `--format hub` -> `hub`, `--format onnx` ->
`onnx` (with `--quantize int8`: `int8`), `--import-from FILE.pth` -> `import FILE.pth`. The old flags
are parsed and checked as they were, then carried onto the subcommand's; those the old form ignored
(--seed of an import, --dtype of a .pth, ...) are dropped, and one deprecation line is printed."""
from __future__ import annotations

import argparse
import sys

from genet_jax.export.command import TOOL
from genet_jax.interop.onnx_export import ONNX_DTYPES, ONNX_LAYOUTS
from genet_jax.interop.onnx_quantize import QUANTIZATIONS
from genet_jax.interop.state_dict import LAYOUTS

HUB, ONNX = "hub", "onnx"
EXPORTS = ("torch", "onnx", "int8", "hub")
# an old flag (its argparse dest) -> the subcommands that take it; for the others the old form ignored it
# (--import-from becomes import's FILE.pth, --quantize picks int8)
CARRIED = {"checkpoint": EXPORTS, "raw_weights": EXPORTS, "seed": EXPORTS, "num_classes": EXPORTS,
           "arch": (*EXPORTS, "import"), "out": (*EXPORTS, "import"), "format": ("torch", "import"),
           "dtype": ("onnx",), "input_layout": ("onnx", "int8"), "crop_fraction": ("onnx", "int8", "hub"),
           "calibration": ("int8",), "calibration_split": ("int8",), "calibration_images": ("int8",),
           "data_dir": ("int8",), "reduce_range": ("int8",)}
OLD_DEFAULTS = {"checkpoint": None, "arch": None, "import_from": None, "format": None, "dtype": "float32",
                "quantize": None, "calibration": None, "crop_fraction": None}


def is_legacy(argv: list[str]) -> bool:
    """Whether `argv` is an old flag form: it starts with a flag, where the new forms start with a command."""
    return bool(argv) and argv[0].startswith("-") and argv[0] not in ("-h", "--help")


def _parser() -> argparse.ArgumentParser:
    """The old flags, each absent from the parsed namespace unless given."""
    parser = argparse.ArgumentParser(prog=TOOL, argument_default=argparse.SUPPRESS, description=(
        f"Deprecated flag forms; `{TOOL} --help` lists the commands that replace them."))
    for flag in ("--checkpoint", "--arch", "--import-from", "--calibration", "--calibration-split", "--data-dir"):
        parser.add_argument(flag)
    for flag in ("--raw-weights", "--reduce-range"):
        parser.add_argument(flag, action="store_true")
    for flag in ("--seed", "--num-classes", "--calibration-images"):
        parser.add_argument(flag, type=int)
    parser.add_argument("--crop-fraction", type=float)
    parser.add_argument("--format", choices=(*LAYOUTS, HUB, ONNX))
    parser.add_argument("--dtype", choices=ONNX_DTYPES)
    parser.add_argument("--input-layout", choices=ONNX_LAYOUTS)
    parser.add_argument("--quantize", choices=QUANTIZATIONS)
    parser.add_argument("--out", required=True)
    return parser


def _check(parser: argparse.ArgumentParser, old: dict) -> None:
    """The old form's checks of its flag combinations, with its messages."""
    if old["import_from"] and old["checkpoint"]:
        parser.error("--import-from and --checkpoint exclude each other")
    if not old["import_from"] and (old["checkpoint"] is None) == (old["arch"] is None):
        parser.error("export needs exactly one of --checkpoint DIR or --arch NAME_OR_JSON")
    if not old["import_from"] and old["format"] is None:
        parser.error("--format is required for export")
    if old["quantize"] and (old["format"] != ONNX or old["dtype"] != "float32"):
        parser.error("--quantize applies to --format onnx with --dtype float32")
    if old["quantize"] and not old["calibration"]:
        parser.error("--quantize int8 needs --calibration SOURCE (e.g. folder:DIR, tfds:NAME, digits)")
    if old["crop_fraction"] is not None and not 0 < old["crop_fraction"] <= 1:
        parser.error(f"--crop-fraction must be in (0, 1], got {old['crop_fraction']}")
    if old["import_from"] and old["format"] in (ONNX, HUB):
        parser.error(f"--import-from reads PyTorch files; {old['format']} is an export format "
                     "(a Hub folder loads with genet_jax.load_pretrained)")


def _command(old: dict) -> tuple[str, str, str]:
    """(the subcommand, the old form's words that pick it, the new form's)."""
    if old["import_from"]:
        return "import", "--import-from FILE.pth", "import FILE.pth"
    if old["quantize"]:
        return "int8", f"--format onnx --quantize {old['quantize']}", "int8"
    if old["format"] in (ONNX, HUB):
        return old["format"], f"--format {old['format']}", old["format"]
    return "torch", f"--format {old['format']}", f"torch --format {old['format']}"


def _flag(dest: str, value) -> list[str]:
    """The command-line words of a flag's parsed value (`--out=-x` keeps a value that starts with a dash)."""
    flag = "--" + dest.replace("_", "-")
    return [flag] if value is True else [f"{flag}={value}"]


def subcommand_argv(argv: list[str]) -> list[str]:
    """The subcommand form of the old flag form `argv`; prints the deprecation line. An old form the
    old tool refused is refused here, with its message (argparse's usage error: exit code 2)."""
    parser = _parser()
    given = vars(parser.parse_args(argv))
    old = {**OLD_DEFAULTS, **given}
    _check(parser, old)
    command, old_words, new_words = _command(old)
    flags = [flag for dest, value in given.items() if command in CARRIED.get(dest, ()) for flag in _flag(dest, value)]
    print(f"warning: `{TOOL} {old_words} ...` is deprecated; use `{TOOL} {new_words} ...`", file=sys.stderr)
    return [command, *flags, "--", old["import_from"]] if command == "import" else [command, *flags]
