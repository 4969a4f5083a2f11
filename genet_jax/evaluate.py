"""`python -m genet_jax.evaluate --checkpoint DIR [--config configs/X.py] [--split S] [--resolution R] [--config.key=value]`

Top-1 / top-5 / loss of a checkpoint (trained here or imported from PyTorch) on any split, with
the config's data source and the authors' evaluation preprocessing. Prints JSON.
"""
import json
import os
import sys

from absl import flags

from genet_jax import cli
from genet_jax.data.sources import open_source
from genet_jax.interop.model_checkpoint import load_model_checkpoint
from genet_jax.training.config import model_from_config
from genet_jax.training.evaluation import Evaluator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # the config files import configs.common, whatever the working directory
    sys.path.insert(0, REPO)

cli.define_config_file("config", os.path.join(REPO, "configs", "default.py"), "data config")
flags.DEFINE_string("checkpoint", None, "model checkpoint or trainer workdir", required=True)
flags.DEFINE_string("split", None, "split to evaluate (default: config.data.eval_split)")
flags.DEFINE_integer("resolution", None, "evaluation crop size (default: the checkpoint spec's)")


def main(argv) -> int:
    cli.setup_logging()
    config = flags.FLAGS.config
    ckpt = load_model_checkpoint(flags.FLAGS.checkpoint)
    split = flags.FLAGS.split or config.data.eval_split
    folder_classes = ckpt.metadata.get("class_names") if config.data.source.startswith("folder:") else None
    source = open_source(config.data.source, split, config.data.data_dir or None, class_names=folder_classes)
    size = flags.FLAGS.resolution or ckpt.spec.resolution
    metrics = Evaluator(model_from_config(config, ckpt.spec), config)(ckpt.variables, source, size)
    print(json.dumps({"checkpoint": ckpt.path, "split": split, "resolution": size, **metrics}, indent=2))
    return 0


if __name__ == "__main__":
    cli.run_absl(main)
