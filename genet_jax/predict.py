"""`python -m genet_jax.predict --checkpoint DIR IMAGE... [--top-k 5] [--resolution S] [--json]`

Top-k classes with probabilities per image, with the authors' evaluation preprocessing.
Undecodable images are reported and skipped; the exit status is 1 if any was.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from genet_jax import cli
from genet_jax.data.images import ImageError, eval_preprocess, load_rgb
from genet_jax.interop.model_checkpoint import load_model_checkpoint
from genet_jax.models.network import create_model


def predict_images(checkpoint_dir: str, paths: list[str], top_k: int = 5, resolution: Optional[int] = None,
                   batch_size: int = 32, raw_weights: bool = False) -> tuple[list[dict], list[str]]:
    """([{'image', 'top_k': [{'class', 'label', 'probability'}]}], [error messages]), with the
    checkpoint's EMA weights where it has them (unless `raw_weights`)."""
    ckpt = load_model_checkpoint(checkpoint_dir, raw=raw_weights)
    size = resolution or ckpt.spec.resolution
    model = create_model(ckpt.spec)  # convolutional: any input size runs; `size` only sets the crop
    labels = ckpt.metadata.get("class_names")
    apply = jax.jit(lambda v, x: jax.nn.softmax(model.apply(v, x), axis=-1))
    images, kept, errors = [], [], []
    for path in paths:
        try:
            images.append(eval_preprocess(load_rgb(path), size))
            kept.append(path)
        except ImageError as e:
            errors.append(str(e))
    results = []
    k = min(top_k, ckpt.spec.num_classes)
    for start in range(0, len(images), batch_size):
        probs = np.asarray(apply(ckpt.variables, jnp.asarray(np.stack(images[start:start + batch_size]))))
        for path, p in zip(kept[start:start + batch_size], probs):
            order = np.argsort(-p, kind="stable")[:k]
            results.append({"image": path, "top_k": [
                {"class": int(c), "label": labels[c] if labels else str(int(c)), "probability": float(p[c])}
                for c in order]})
    return results, errors


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser("python -m genet_jax.predict", __doc__)
    parser.add_argument("--checkpoint", required=True, help="model checkpoint or trainer workdir")
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--resolution", type=int, help="crop size S (default: the checkpoint spec's)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--raw-weights", action="store_true", help=cli.RAW_WEIGHTS_HELP)
    return parser


def run(args: argparse.Namespace) -> int:
    results, errors = predict_images(args.checkpoint, args.images, args.top_k, args.resolution,
                                     raw_weights=args.raw_weights)
    for message in errors:
        print(f"error: {message}", file=sys.stderr)
    if args.json:
        print(json.dumps({"predictions": results, "errors": errors}, indent=2))
    else:
        for result in results:
            print(result["image"])
            for entry in result["top_k"]:
                print(f"  {entry['probability']:8.4f}  {entry['label']}")
    return 1 if errors else 0


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return cli.exit_code_of(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
