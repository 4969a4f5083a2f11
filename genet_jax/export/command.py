"""The subcommands of `python -m genet_jax.export`: an argparse subparser each, with only its own
flags and help, and a runner that turns what it parsed into the typed arguments of
genet_jax.export.formats (and genet_jax.interop.pth_files.import_pth)."""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from genet_jax import cli
from genet_jax.data.images import EVAL_CROP_FRACTION
from genet_jax.errors import INPUT_ERROR_EXIT_CODE
from genet_jax.export.formats import (Int8Options, ModelSource, ModelToExport, OnnxOptions, export_hub,
                                      export_onnx_float, export_onnx_int8, export_torch, load_model,
                                      open_int8_calibration)
from genet_jax.interop.onnx_export import ONNX_DTYPES, ONNX_LAYOUTS
from genet_jax.interop.onnx_quantize import DEFAULT_CALIBRATION_IMAGES
from genet_jax.interop.pth_files import import_pth
from genet_jax.interop.state_dict import LAYOUTS

TOOL = "python -m genet_jax.export"
DESCRIPTION = """PyTorch and ONNX export, PyTorch import; `python -m genet_jax.export COMMAND --help` lists a
command's flags. Export a checkpoint (--checkpoint DIR [--raw-weights]) or a freshly initialised
architecture (--arch NAME_OR_JSON [--seed N] [--num-classes N]):
    python -m genet_jax.export torch --checkpoint DIR --format official|timm|torch --out FILE.pth
    python -m genet_jax.export onnx --checkpoint DIR [--dtype float16] [--input-layout NHWC] --out FILE.onnx
    python -m genet_jax.export int8 --checkpoint DIR --calibration SOURCE [--calibration-split S]
        [--calibration-images 256] --out FILE.onnx     (static QDQ INT8)
    python -m genet_jax.export hub --checkpoint DIR --out FOLDER   (model.safetensors + config.json +
        README.md model card, the Hugging Face Hub's conventions)
Import a .pth file (the authors', timm's, or this project's) into a checkpoint:
    python -m genet_jax.export import FILE.pth [--format F] [--arch NAME_OR_JSON] --out CKPT_DIR"""
SIDECARS = """Files beside the .pth: official -> FILE.txt (the authors' structure string); timm -> FILE.timm.json
(ByobNet fields, for timm) for networks timm does not name; torch -> FILE.json (the spec). Import reads
FILE.txt or FILE.json back when --arch is not given; otherwise the architecture is matched against the registry by shapes
(genet_jax.interop.pth_files)."""
CROP_HELP = (f"the evaluation preprocessing's centre-crop fraction (default: the checkpoint's, "
             f"else {EVAL_CROP_FRACTION})")


class ExportParser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors end in `python -m genet_jax.export: error: ...` in a
    subcommand too (argparse would start that line with the subcommand's own prog), as every tool's do."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(INPUT_ERROR_EXIT_CODE, f"{TOOL}: error: {message}\n")


def crop_fraction(text: str) -> float:
    """--crop-fraction: a fraction in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return value


def _add_model_source(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", metavar="DIR", help="model checkpoint or trainer workdir")
    which.add_argument("--arch", metavar="NAME_OR_JSON", help="a freshly initialised network (with --seed)")
    parser.add_argument("--raw-weights", action="store_true", help=cli.RAW_WEIGHTS_HELP)
    parser.add_argument("--seed", type=int, default=0, help="with --arch: initialisation seed")
    parser.add_argument("--num-classes", type=int, help="with --arch: classes of the head")


def _add_command(commands, name: str, summary: str, details: str = "") -> argparse.ArgumentParser:
    return commands.add_parser(name, help=summary, description=f"{summary}.\n\n{details}".strip(),
                               formatter_class=argparse.RawDescriptionHelpFormatter)


def _add_onnx_input(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input-layout", choices=ONNX_LAYOUTS, default="NCHW", help="the input's layout")
    parser.add_argument("--crop-fraction", type=crop_fraction, help=CROP_HELP + " (recorded in the metadata)")


def _add_int8(commands) -> None:
    parser = _add_command(commands, "int8", "an INT8 ONNX model: static QDQ quantization (per-channel int8 weights, "
                          "uint8 activations) calibrated on --calibration", "See genet_jax.interop.onnx_quantize.")
    _add_model_source(parser)
    _add_onnx_input(parser)
    parser.add_argument("--calibration", metavar="SOURCE", required=True, help="a data source as the trainer "
                        "names it (digits, folder:DIR, tfds:NAME), read through the evaluation preprocessing")
    parser.add_argument("--calibration-split", default="train", help="the split to draw from")
    parser.add_argument("--calibration-images", type=int, default=DEFAULT_CALIBRATION_IMAGES,
                        help="how many images calibrate (a seeded draw)")
    parser.add_argument("--data-dir", help="TFDS data_dir of a tfds: source")
    parser.add_argument("--reduce-range", action="store_true", help="7-bit weights (ONNX Runtime's advice for "
                        "x86 CPUs without VNNI)")
    parser.add_argument("--out", required=True, metavar="FILE.onnx", help="the ONNX file to write")


def _add_torch(commands) -> None:
    parser = _add_command(commands, "torch", "a .pth file: the weights as a PyTorch state_dict", SIDECARS)
    _add_model_source(parser)
    parser.add_argument("--format", choices=LAYOUTS, required=True, help="the state_dict's key layout")
    parser.add_argument("--out", required=True, metavar="FILE.pth", help="the .pth file to write")


def _add_import(commands) -> None:
    parser = _add_command(commands, "import", "a .pth file (the authors', timm's, or this project's) -> "
                          "a model checkpoint", SIDECARS)
    parser.add_argument("pth", metavar="FILE.pth", help="the PyTorch weights file to import")
    parser.add_argument("--format", choices=LAYOUTS, help="the file's state_dict layout, checked (default: "
                        "the layout its keys have)")
    parser.add_argument("--arch", metavar="NAME_OR_JSON", help="the file's architecture (default: inferred)")
    parser.add_argument("--out", required=True, metavar="CKPT_DIR", help="the checkpoint folder to write")


def _add_onnx(commands) -> None:
    parser = _add_command(commands, "onnx", "a float ONNX model", "See genet_jax.interop.onnx_export.")
    _add_model_source(parser)
    parser.add_argument("--dtype", choices=ONNX_DTYPES, default="float32", help="the weights' dtype (input and "
                        "logits stay float32)")
    _add_onnx_input(parser)
    parser.add_argument("--out", required=True, metavar="FILE.onnx", help="the ONNX file to write")


def _add_hub(commands) -> None:
    parser = _add_command(commands, "hub", "a Hugging Face Hub folder: model.safetensors + config.json + "
                          "README.md model card", "See genet_jax.pretrained.saving.")
    _add_model_source(parser)
    parser.add_argument("--crop-fraction", type=crop_fraction, help=CROP_HELP + " (recorded in config.json)")
    parser.add_argument("--out", required=True, metavar="FOLDER", help="the folder to write")


def build_parser() -> ExportParser:
    parser = ExportParser(prog=TOOL, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_torch, _add_import, _add_onnx, _add_int8, _add_hub):
        add(commands)
    return parser


def _model(args: argparse.Namespace) -> ModelToExport:
    model = load_model(ModelSource(checkpoint=args.checkpoint, raw_weights=args.raw_weights, arch=args.arch,
                                   seed=args.seed, num_classes=args.num_classes))
    if model.checkpoint:
        print(f"weights: {model.checkpoint.weights} ({model.checkpoint.path})", file=sys.stderr)
    return model


def _wrote(paths: list[str]) -> int:
    for path in paths:
        print(f"wrote {path}")
    return 0


def _run_import(args: argparse.Namespace) -> int:
    where = import_pth(args.pth, args.out, args.format, args.arch)
    print(f"imported {args.pth} -> checkpoint {where}")
    return 0


def _run_int8(args: argparse.Namespace) -> int:
    int8 = Int8Options(calibration=args.calibration, split=args.calibration_split,
                       calibration_images=args.calibration_images, data_dir=args.data_dir,
                       reduce_range=args.reduce_range)
    calibration = open_int8_calibration(int8)  # first: a bad source fails before any export work
    options = OnnxOptions(input_layout=args.input_layout, crop_fraction=args.crop_fraction)
    return _wrote([export_onnx_int8(_model(args), args.out, int8, calibration, options)])


def _run_torch(args: argparse.Namespace) -> int:
    return _wrote(export_torch(_model(args), args.format, args.out))


def _run_onnx(args: argparse.Namespace) -> int:
    options = OnnxOptions(input_layout=args.input_layout, crop_fraction=args.crop_fraction)
    return _wrote([export_onnx_float(_model(args), args.out, options, dtype=args.dtype)])


def _run_hub(args: argparse.Namespace) -> int:
    return _wrote(export_hub(_model(args), args.out, crop_fraction=args.crop_fraction))


RUNNERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "torch": _run_torch, "import": _run_import, "onnx": _run_onnx, "int8": _run_int8, "hub": _run_hub}


def run_command(argv: list[str]) -> int:
    """Parse `argv` (COMMAND and its flags) and run the command; exit code 2 for bad input."""
    args = build_parser().parse_args(argv)
    return cli.exit_code_of(lambda: RUNNERS[args.command](args))
