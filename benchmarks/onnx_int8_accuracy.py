"""What INT8 costs in accuracy: a trained checkpoint evaluated on its test split as a JAX model, as
the float32 ONNX export and as the static QDQ INT8 export (calibrated on images of its training
split), each on the same split with the same preprocessing. The commands are the user's own:

    python -m genet_jax.export onnx --checkpoint DIR --out F32.onnx
    python -m genet_jax.export int8 --checkpoint DIR --calibration SOURCE --out INT8.onnx
    python -m genet_jax.evaluate --config CONFIG --checkpoint DIR | --onnx FILE

    python benchmarks/onnx_int8_accuracy.py --checkpoint DIR [--config configs/cifar10.py]
        [--source folder:data/cifar10-jpg] [--calibration-images 256] [--crop-fraction F]

Writes benchmarks/results/onnx_int8_accuracy.json and prints top-1 of each and the INT8 change in points.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.machine import provenance  # noqa: E402
OUT = os.path.join(REPO, "benchmarks", "results", "onnx_int8_accuracy.json")
TARGET_POINTS = 1.0  # INT8 top-1 within this many points of float32 (issue 14)


def run_tool(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        sys.exit(f"{' '.join(args[:1])} failed: {done.stderr.strip().splitlines()[-1]}")
    return done.stdout


def evaluate(config_args: list[str], model_args: list[str]) -> dict:
    return json.loads(run_tool("genet_jax.evaluate", *config_args, *model_args))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a trained model checkpoint or trainer workdir")
    parser.add_argument("--config", default=os.path.join(REPO, "configs", "cifar10.py"),
                        help="the data config the checkpoint was trained with")
    parser.add_argument("--source", default=f"folder:{os.path.join(REPO, 'data', 'cifar10-jpg')}",
                        help="its data source (calibration: the train split; evaluation: the config's eval split)")
    parser.add_argument("--calibration-images", type=int, default=256)
    parser.add_argument("--crop-fraction", help="the config's data.eval_crop_fraction, for a checkpoint that "
                        "does not record it (trained before it was recorded)")
    args = parser.parse_args()
    config_args = [f"--config={args.config}", f"--config.data.source={args.source}"]
    results = {"checkpoint": os.path.abspath(args.checkpoint), "source": args.source}
    with tempfile.TemporaryDirectory() as scratch:
        paths = {"float32": os.path.join(scratch, "float32.onnx"), "int8": os.path.join(scratch, "int8.onnx")}
        crop = ["--crop-fraction", args.crop_fraction] if args.crop_fraction else []
        run_tool("genet_jax.export", "onnx", "--checkpoint", args.checkpoint, *crop, "--out", paths["float32"])
        run_tool("genet_jax.export", "int8", "--checkpoint", args.checkpoint, *crop,
                 "--calibration", args.source, "--calibration-images", str(args.calibration_images),
                 "--out", paths["int8"])
        results["jax"] = evaluate(config_args, ["--checkpoint", args.checkpoint])
        for name, path in paths.items():
            results[f"onnxruntime_{name}"] = evaluate(config_args, ["--onnx", path])
    change = 100 * (results["onnxruntime_int8"]["top1"] - results["onnxruntime_float32"]["top1"])
    results.update(int8_change_points=change, calibration_images=args.calibration_images,
                   within_target=abs(change) <= TARGET_POINTS, provenance=provenance())
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(results, f, indent=2)
    for name in ("jax", "onnxruntime_float32", "onnxruntime_int8"):
        r = results[name]
        print(f"{name:22s} top-1 {100 * r['top1']:.2f}%  top-5 {100 * r['top5']:.2f}%  loss {r['loss']:.4f} "
              f"({r['count']} images)")
    print(f"INT8 - float32: {change:+.2f} points (target: within {TARGET_POINTS:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
