"""Train a GENet: `python train.py [--config configs/X.py] [--config.key=value ...]`.

With no arguments it trains the embedded default (configs/default.py: digits, a few minutes on a
CPU). Re-running the same command resumes from the workdir's latest checkpoint.
"""
import os
import sys


REPO = os.path.dirname(os.path.abspath(__file__))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


from genet_jax import cli, distributed  # noqa: E402

cli.require_extra_or_exit("train", "python train.py")

from absl import flags  # noqa: E402
from genet_jax.training.loop import train  # noqa: E402

cli.define_config_file("config", os.path.join(REPO, "configs", "default.py"),
                       "training config file (a Python file with get_config())", lock_config=True)
flags.DEFINE_bool("distributed", False, "join a multi-process job first (genet_jax.distributed: srun, mpirun, "
                                      "a Kubernetes Job or python -m genet_jax.launch; see README)")


def main(argv) -> int:
    cli.setup_logging()
    if flags.FLAGS.distributed:  # importing genet_jax starts no JAX backend, so this still comes first
        distributed.initialize()
    final = train(flags.FLAGS.config)
    progress = f"step {final.step}/{final.total_steps}"
    if final.eval_ema:
        progress += f": eval top-1 {final.top1:.4f}, EMA weights {final.eval_ema['top1']:.4f}"
    elif final.top1 is not None:
        progress += f": eval top-1 {final.top1:.4f}"
    print(progress)
    print(f"checkpoints: {final.checkpoint_dir}")
    print(f"metrics: {os.path.join(os.path.abspath(flags.FLAGS.config.workdir), 'metrics.json')}")
    return 0


if __name__ == "__main__":
    cli.run_absl(main)
