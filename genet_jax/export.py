"""`python -m genet_jax.export --checkpoint DIR | --arch NAME_OR_JSON | --import-from FILE.pth --format F --out PATH`

PyTorch and ONNX export, PyTorch import. Export a checkpoint (or a freshly initialised architecture):
    python -m genet_jax.export --checkpoint DIR --format official|timm|torch --out FILE.pth
    python -m genet_jax.export --arch NAME_OR_JSON --seed N --format ... --out FILE.pth
    python -m genet_jax.export --checkpoint DIR --format hub --out FOLDER   (model.safetensors + config.json +
        README.md model card, the Hugging Face Hub's conventions: genet_jax.pretrained.saving)
    python -m genet_jax.export --checkpoint DIR --format onnx [--dtype float16] [--input-layout NHWC] --out FILE.onnx
    python -m genet_jax.export --checkpoint DIR --format onnx --quantize int8 --calibration SOURCE [--calibration-split S]
        [--calibration-images 256] --out FILE.onnx     (static QDQ INT8: genet_jax.interop.onnx_quantize)
Import a .pth file (the authors', timm's, or this project's) into a checkpoint:
    python -m genet_jax.export --import-from FILE.pth [--format F] [--arch NAME_OR_JSON] --out CKPT_DIR

Files beside the .pth: official -> FILE.txt (the authors' structure string); timm -> FILE.timm.json
(ByobNet fields) for networks timm does not name; torch -> FILE.json (the spec). Import reads them
back when --arch is not given; otherwise the architecture is matched against the registry by shapes
(genet_jax.interop.pth_files).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import Optional

from genet_jax import cli
from genet_jax.data.images import EVAL_CROP_FRACTION
from genet_jax.interop.model_checkpoint import load_model_checkpoint
from genet_jax.interop.onnx_export import ONNX_DTYPES, ONNX_LAYOUTS, export_onnx
from genet_jax.interop.onnx_quantize import (DEFAULT_CALIBRATION_IMAGES, QUANTIZATIONS, calibration_batches,
                                             open_calibration, quantize_int8)
from genet_jax.interop.pth_files import export_pth, import_pth
from genet_jax.interop.state_dict import LAYOUTS
from genet_jax.models.network import create_model, init_variables
from genet_jax.pretrained.catalog import EvalPreprocessing
from genet_jax.pretrained.saving import run_metadata, save_pretrained

HUB_FORMAT = "hub"


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser("python -m genet_jax.export", __doc__)
    parser.add_argument("--checkpoint", help="export: model checkpoint or trainer workdir")
    parser.add_argument("--raw-weights", action="store_true", help=cli.RAW_WEIGHTS_HELP)
    parser.add_argument("--arch", help="export: a freshly initialised NAME_OR_JSON (with --seed); "
                                       "import: the file's architecture (default: inferred)")
    parser.add_argument("--import-from", metavar="FILE.pth", help="import this PyTorch file")
    parser.add_argument("--format", choices=(*LAYOUTS, HUB_FORMAT, "onnx"), help="state_dict key layout, a Hub "
                        "folder, or onnx (export: required; import: checked against the file)")
    parser.add_argument("--dtype", choices=ONNX_DTYPES, default="float32", help="onnx: the weights' dtype "
                        "(input and logits stay float32)")
    parser.add_argument("--input-layout", choices=ONNX_LAYOUTS, default="NCHW", help="onnx: the input's layout")
    parser.add_argument("--quantize", choices=QUANTIZATIONS, help="onnx: static QDQ quantization (per-channel "
                        "int8 weights, uint8 activations) calibrated on --calibration")
    parser.add_argument("--calibration", metavar="SOURCE", help="onnx --quantize: a data source as the trainer "
                        "names it (digits, folder:DIR, tfds:NAME)")
    parser.add_argument("--calibration-split", default="train", help="onnx --quantize: the split to draw from")
    parser.add_argument("--calibration-images", type=int, default=DEFAULT_CALIBRATION_IMAGES,
                        help="onnx --quantize: how many images calibrate (a seeded draw)")
    parser.add_argument("--data-dir", help="onnx --quantize: TFDS data_dir of a tfds: source")
    parser.add_argument("--crop-fraction", type=float, help="onnx: the evaluation preprocessing's centre-crop "
                        f"fraction (default: the checkpoint's, else {EVAL_CROP_FRACTION}); calibration uses it")
    parser.add_argument("--reduce-range", action="store_true", help="onnx --quantize: 7-bit weights (ONNX "
                        "Runtime's advice for x86 CPUs without VNNI)")
    parser.add_argument("--seed", type=int, default=0, help="export with --arch: initialisation seed")
    parser.add_argument("--num-classes", type=int, help="export with --arch: classes of the head")
    parser.add_argument("--out", required=True, help="FILE.pth to write (export) or CKPT_DIR (import)")
    return parser


def run(args: argparse.Namespace) -> int:
    if args.import_from:
        where = import_pth(args.import_from, args.out, args.format, args.arch)
        print(f"imported {args.import_from} -> checkpoint {where}")
        return 0
    calibration = (open_calibration(args.calibration, args.calibration_split, args.calibration_images, args.data_dir)
                   if args.quantize else None)  # opened first: a bad source fails before any export work
    if args.checkpoint:
        ckpt = load_model_checkpoint(args.checkpoint, raw=args.raw_weights)
        spec, variables, extras = ckpt.spec, ckpt.variables, ckpt.extras
        print(f"weights: {ckpt.weights} ({ckpt.path})", file=sys.stderr)
    else:
        model = create_model(args.arch, num_classes=args.num_classes)
        spec, variables, extras = model.spec, init_variables(model, args.seed), None
    if args.format == "onnx":
        metadata = {**ckpt.metadata, "weights": ckpt.weights} if args.checkpoint else {}
        paths = [export_onnx_file(args, spec, variables, metadata, calibration)]
    elif args.format == HUB_FORMAT:
        paths = export_hub_folder(args, spec, variables, extras, ckpt if args.checkpoint else None)
    else:
        paths = export_pth(spec, variables, args.format, args.out, extras)
    for path in paths:
        print(f"wrote {path}")
    return 0


def export_hub_folder(args: argparse.Namespace, spec, variables, extras, ckpt=None) -> list[str]:
    """--format hub: save_pretrained's folder, with the run's data, recipe and metrics in its card."""
    metadata = ckpt.metadata if ckpt else {}
    crop_fraction = args.crop_fraction or metadata.get("eval_crop_fraction", EVAL_CROP_FRACTION)
    run = run_metadata(ckpt.path, metadata, ckpt.weights) if ckpt else {"weights": f"initialised (seed {args.seed})"}
    return save_pretrained(args.out, spec, variables, preprocessing=EvalPreprocessing(spec.resolution, crop_fraction),
                           class_names=metadata.get("class_names"), metadata=run, extras=extras)


def export_onnx_file(args: argparse.Namespace, spec, variables, metadata: dict, calibration=None) -> str:
    """--format onnx: the float model, or (--quantize int8) its INT8 form calibrated on `calibration`
    (the --calibration images)."""
    crop_fraction = args.crop_fraction or metadata.get("eval_crop_fraction", EVAL_CROP_FRACTION)
    options = dict(layout=args.input_layout, class_names=metadata.get("class_names"), crop_fraction=crop_fraction)
    if not args.quantize:
        return export_onnx(spec, variables, args.out, dtype=args.dtype, **options)
    batches = calibration_batches(calibration, spec.resolution, crop_fraction, args.input_layout)
    with tempfile.TemporaryDirectory() as scratch:
        float_path = export_onnx(spec, variables, os.path.join(scratch, "float32.onnx"), **options)
        return quantize_int8(float_path, args.out, batches, reduce_range=args.reduce_range, description={
            "calibration": f"{args.calibration} ({args.calibration_split}, {len(calibration)} images)"})


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.import_from and args.checkpoint:
        parser.error("--import-from and --checkpoint exclude each other")
    if not args.import_from and (args.checkpoint is None) == (args.arch is None):
        parser.error("export needs exactly one of --checkpoint DIR or --arch NAME_OR_JSON")
    if not args.import_from and args.format is None:
        parser.error("--format is required for export")
    if args.quantize and (args.format != "onnx" or args.dtype != "float32"):
        parser.error("--quantize applies to --format onnx with --dtype float32")
    if args.quantize and not args.calibration:
        parser.error("--quantize int8 needs --calibration SOURCE (e.g. folder:DIR, tfds:NAME, digits)")
    if args.crop_fraction is not None and not 0 < args.crop_fraction <= 1:
        parser.error(f"--crop-fraction must be in (0, 1], got {args.crop_fraction}")
    if args.import_from and args.format in ("onnx", HUB_FORMAT):
        parser.error(f"--import-from reads PyTorch files; {args.format} is an export format "
                     "(a Hub folder loads with genet_jax.load_pretrained)")
    return cli.exit_code_of(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
