"""`python -m genet_jax.evaluate --checkpoint DIR | --onnx FILE.onnx [--provider P] [--config configs/X.py]
[--split S] [--resolution R] [--config.key=value]`

Top-1 / top-5 / loss of a checkpoint (trained here or imported from PyTorch) or of an ONNX export of
one (float32, float16 or INT8, run on ONNX Runtime) on any split, with the config's data source and
the authors' evaluation preprocessing. Prints JSON.
"""
import json
import os
import sys

from genet_jax import cli

if __name__ == "__main__":  # run as a program (never on import): a missing extra is one line, exit code 2
    cli.require_extra_or_exit("train", "python -m genet_jax.evaluate")

import jax  # noqa: E402
from absl import flags  # noqa: E402

from genet_jax.data.sources import open_source  # noqa: E402
from genet_jax.errors import InputError  # noqa: E402
from genet_jax.checkpoint import load_model_checkpoint  # noqa: E402
from genet_jax.interop.onnx_evaluation import evaluate_onnx  # noqa: E402
from genet_jax.interop.onnx_runtime import CPU_PROVIDER, ExportedModel  # noqa: E402
from genet_jax.training.config import model_from_config  # noqa: E402
from genet_jax.training.evaluation import Evaluator  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # the config files import configs.common, whatever the working directory
    sys.path.insert(0, REPO)

cli.define_config_file("config", os.path.join(REPO, "configs", "default.py"), "data config")
flags.DEFINE_string("checkpoint", None, "model checkpoint or trainer workdir (or give --onnx)")
flags.DEFINE_string("onnx", None, "an ONNX export (python -m genet_jax.export onnx or int8) to run on "
                                  "ONNX Runtime instead of a checkpoint")
flags.DEFINE_string("provider", CPU_PROVIDER, "ONNX Runtime execution provider for --onnx")
flags.DEFINE_bool("raw_weights", False, cli.RAW_WEIGHTS_HELP)
flags.DEFINE_string("split", None, "split to evaluate (default: config.data.eval_split)")
flags.DEFINE_integer("resolution", None, "evaluation crop size (default: the model's; an ONNX model's is fixed)")


def open_split(config, split: str, class_names):
    """The config's data source at `split`; a folder source takes the model's class order."""
    folder_classes = class_names if config.data.source.startswith("folder:") else None
    return open_source(config.data.source, split, config.data.data_dir or None, class_names=folder_classes,
                       max_image_pixels=config.data.max_image_pixels)


def evaluate_checkpoint(config, split: str) -> dict:
    ckpt = load_model_checkpoint(flags.FLAGS.checkpoint, raw=flags.FLAGS.raw_weights)
    source = open_split(config, split, ckpt.metadata.get("class_names"))
    size = flags.FLAGS.resolution or ckpt.spec.resolution
    metrics = Evaluator(model_from_config(config, ckpt.spec), config)(ckpt.variables, source, size)
    return {"checkpoint": ckpt.path, "weights": ckpt.weights, "split": split, "resolution": size, **metrics}


def evaluate_onnx_file(config, split: str) -> dict:
    # JAX only shards the data here: keep it off the accelerator, whose memory ONNX Runtime may need
    jax.config.update("jax_platforms", "cpu")
    model = ExportedModel.open(flags.FLAGS.onnx, flags.FLAGS.provider)
    if flags.FLAGS.resolution not in (None, model.resolution):
        raise InputError(f"--resolution {flags.FLAGS.resolution}: {model.path} was exported at resolution "
                         f"{model.resolution}, which its graph fixes")
    source = open_split(config, split, model.class_names)
    if source.num_classes > model.num_classes:
        raise InputError(f"{model.path} has {model.num_classes} classes, fewer than {source.name}'s "
                         f"{source.num_classes}")
    data = config.data
    metrics = evaluate_onnx(model, source, model.resolution, data.eval_crop_fraction, data.eval_batch_size,
                            data.num_threads, config.eval_flip_tta)
    return {"onnx": model.path, "provider": flags.FLAGS.provider, "split": split,
            "resolution": model.resolution, **metrics}


def main(argv) -> int:
    cli.setup_logging()
    config = flags.FLAGS.config
    if bool(flags.FLAGS.checkpoint) == bool(flags.FLAGS.onnx):
        raise InputError("give exactly one of --checkpoint DIR and --onnx FILE.onnx")
    split = flags.FLAGS.split or config.data.eval_split
    report = evaluate_checkpoint(config, split) if flags.FLAGS.checkpoint else evaluate_onnx_file(config, split)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    cli.run_absl(main)
