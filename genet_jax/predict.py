"""`python -m genet_jax.predict --checkpoint DIR | --pretrained NAME_OR_PATH IMAGE... [--top-k 5] [--resolution S] [--json]`

Top-k classes with probabilities per image, with the evaluation preprocessing the weights expect: a
checkpoint of this project, or pretrained weights (genet_light/normal/large from the Hugging Face Hub,
a weights file or folder, a Hub repo id; genet_jax.pretrained). Undecodable images are reported and
skipped; the exit status is 1 if any was.
"""
from __future__ import annotations

import argparse
import logging
import json
import sys
from functools import partial
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from genet_jax import cli
from genet_jax.data.images import ImageError, eval_preprocess, load_rgb
from genet_jax.models.network import create_model
from genet_jax.pretrained.loading import load_pretrained


def _load_for_prediction(checkpoint_dir: Optional[str], pretrained: Optional[str], resolution: Optional[int],
                         raw_weights: bool) -> tuple[Any, dict, Optional[list], Callable]:
    """(model, variables, class names or None, image -> float32 HWC) of a checkpoint or pretrained weights."""
    if pretrained:
        loaded = load_pretrained(pretrained=pretrained, resolution=resolution)
        return loaded.model, loaded.variables, loaded.class_names, loaded.preprocessing
    from genet_jax.checkpoint import load_model_checkpoint  # orbax: the train extra
    ckpt = load_model_checkpoint(checkpoint_dir, raw=raw_weights)
    size = resolution or ckpt.spec.resolution
    return create_model(ckpt.spec), ckpt.variables, ckpt.metadata.get("class_names"), partial(eval_preprocess, size=size)


def predict_images(checkpoint_dir: Optional[str], paths: list[str], top_k: int = 5, resolution: Optional[int] = None,
                   batch_size: int = 32, raw_weights: bool = False,
                   pretrained: Optional[str] = None) -> tuple[list[dict], list[str]]:
    """([{'image', 'top_k': [{'class', 'label', 'probability'}]}], [error messages]), with the
    checkpoint's EMA weights where it has them (unless `raw_weights`), or with `pretrained` weights."""
    model, variables, labels, preprocess = _load_for_prediction(checkpoint_dir, pretrained, resolution, raw_weights)
    apply = jax.jit(lambda v, x: jax.nn.softmax(model.apply(v, x), axis=-1))
    images, kept, errors = [], [], []
    for path in paths:
        try:
            images.append(preprocess(load_rgb(path)))
            kept.append(path)
        except ImageError as e:
            errors.append(str(e))
    results = []
    k = min(top_k, model.spec.num_classes)
    for start in range(0, len(images), batch_size):
        probs = np.asarray(apply(variables, jnp.asarray(np.stack(images[start:start + batch_size]))))
        for path, p in zip(kept[start:start + batch_size], probs):
            order = np.argsort(-p, kind="stable")[:k]
            results.append({"image": path, "top_k": [
                {"class": int(c), "label": labels[c] if labels else str(int(c)), "probability": float(p[c])}
                for c in order]})
    return results, errors


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser("python -m genet_jax.predict", __doc__)
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument("--checkpoint", help="model checkpoint or trainer workdir")
    weights.add_argument("--pretrained", metavar="NAME_OR_PATH", help="published weights (genet_light, "
                         "genet_normal, genet_large), a .safetensors/.pth file, a weights folder or a Hub repo id")
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--resolution", type=int, help="crop size S (default: the checkpoint spec's)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--raw-weights", action="store_true", help=cli.RAW_WEIGHTS_HELP)
    return parser


def run(args: argparse.Namespace) -> int:
    results, errors = predict_images(args.checkpoint, args.images, args.top_k, args.resolution,
                                     raw_weights=args.raw_weights, pretrained=args.pretrained)
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
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error(f"--top-k must be >= 1, got {args.top_k}")
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)  # its retry chatter; the outcome is one line
    return cli.exit_code_of(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
