"""`python -m genet_jax.evaluate --checkpoint DIR [--config configs/X.py] [--split S] [--config.key=value]`

Top-1 / top-5 / loss of a checkpoint (trained here or imported from PyTorch) on any split, with
the config's data source and the authors' evaluation preprocessing. Prints JSON.
"""
import json
import logging
import os
import sys

from absl import app, flags
from ml_collections import config_flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

config_flags.DEFINE_config_file("config", os.path.join(REPO, "configs", "default.py"), "data config")
flags.DEFINE_string("checkpoint", None, "model checkpoint or trainer workdir", required=True)
flags.DEFINE_string("split", None, "split to evaluate (default: config.data.eval_split)")
flags.DEFINE_integer("resolution", None, "evaluation crop size (default: the checkpoint spec's)")


def main(argv):
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    logging.getLogger("absl").setLevel(logging.WARNING)

    from genet_jax.interop.model_checkpoint import CheckpointError, load_model_checkpoint
    from genet_jax.data.sources import DataError, open_source
    from genet_jax.training.config import model_from_config
    from genet_jax.training.evaluation import Evaluator

    config = flags.FLAGS.config
    try:
        ckpt = load_model_checkpoint(flags.FLAGS.checkpoint)
        names = ckpt.metadata.get("class_names")
        split = flags.FLAGS.split or config.data.eval_split
        source = open_source(config.data.source, split, config.data.data_dir or None,
                             class_names=names if config.data.source.startswith("folder:") else None)
    except (CheckpointError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    size = flags.FLAGS.resolution or ckpt.spec.resolution
    evaluate = Evaluator(model_from_config(config, ckpt.spec), config)
    metrics = evaluate(ckpt.variables, source, size)
    print(json.dumps({"checkpoint": ckpt.path, "split": split, "resolution": size, **metrics}, indent=2))
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
