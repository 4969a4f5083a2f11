"""Train a GENet: `python train.py [--config configs/X.py] [--config.key=value ...]`.

With no arguments it trains the embedded default (configs/default.py: digits, a few minutes on a
CPU). Re-running the same command resumes from the workdir's latest checkpoint.
"""
import os
import sys

from absl import app, flags
from ml_collections import config_flags

REPO = os.path.dirname(os.path.abspath(__file__))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

config_flags.DEFINE_config_file("config", os.path.join(REPO, "configs", "default.py"),
                                "training config file (a Python file with get_config())", lock_config=True)
flags.DEFINE_bool("distributed", False, "call jax.distributed.initialize() first (multi-host; see README)")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from genet_jax.cli import setup_logging
    setup_logging()
    import jax
    if flags.FLAGS.distributed:
        jax.distributed.initialize()
    from genet_jax.interop.model_checkpoint import CheckpointError
    from genet_jax.data.sources import DataError
    from genet_jax.training.config import ConfigError
    from genet_jax.training.loop import TrainingDiverged, train

    try:
        final = train(flags.FLAGS.config)
    except (ConfigError, DataError, CheckpointError, TrainingDiverged) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    progress = f"step {final.step}/{final.total_steps}"
    print(f"{progress}: eval top-1 {final.top1:.4f}" if final.top1 is not None else progress)
    print(f"checkpoints: {final.checkpoint_dir}")
    print(f"metrics: {os.path.join(os.path.abspath(flags.FLAGS.config.workdir), 'metrics.json')}")
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
