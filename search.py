"""LLR-NAS: `python search.py --config configs/search/X.py [--config.key=value ...]`.

Stages (default `all`, in this order): `master` trains or loads the MasterNet and measures A* on the
held-out NAS validation split; `finetune` fine-tunes the perturbations (`--shard i/n`: a disjoint
share, for Slurm arrays or indexed jobs); `select` merges every shard's results, fits the local
linear model and selects under the latency budget per resolution, then trains each pick.
Re-running the same command resumes: finished work is never redone.
"""
import logging
import os
import sys


REPO = os.path.dirname(os.path.abspath(__file__))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


from genet_jax import cli, distributed  # noqa: E402

cli.require_extra_or_exit("train", "python search.py")

from absl import flags  # noqa: E402
from genet_jax.errors import InputError  # noqa: E402
from genet_jax.nas.driver import run_search  # noqa: E402

cli.define_config_file("config", os.path.join(REPO, "configs", "search", "cifar10_demo.py"),
                       "search config file (a Python file with get_config())", lock_config=True)
flags.DEFINE_enum("stage", "all", ["all", "master", "finetune", "select"], "which step(s) to run")
flags.DEFINE_string("shard", None, "i/n: run only fine-tune jobs i, i+n, ... (stage finetune)")
flags.DEFINE_bool("allow_missing", False, "select with the fine-tune results there are, even if some are missing")
flags.DEFINE_bool("distributed", False, "join a multi-process job first (genet_jax.distributed; multi-host "
                                      "fine-tunes and pick training; process 0 measures every latency for all)")


def parse_shard(text: str) -> tuple[int, int]:
    try:
        shard, num_shards = (int(v) for v in text.split("/"))
    except ValueError:
        raise InputError(f"--shard must look like i/n (e.g. 3/16), got {text!r}") from None
    if not 0 <= shard < num_shards:
        raise InputError(f"--shard {text}: need 0 <= i < n")
    return shard, num_shards


def main(argv) -> int:
    cli.setup_logging(quiet=("genet_jax.train",))
    logging.getLogger("absl").setLevel(logging.ERROR)  # orbax notes the trainer's extra checkpoint items
    if flags.FLAGS.distributed:  # importing genet_jax starts no JAX backend, so this still comes first
        distributed.initialize()
    stage = flags.FLAGS.stage
    shard = parse_shard(flags.FLAGS.shard) if flags.FLAGS.shard else None
    if shard and stage not in ("all", "finetune"):
        raise InputError("--shard applies to the finetune stage")
    try:
        run_search(flags.FLAGS.config, "finetune" if shard else stage, shard or (0, 1), flags.FLAGS.allow_missing,
                   print_outcome)
    except ValueError as e:  # a bad value inside the search config (InputErrors are reported by cli)
        return cli.report(e)
    return 0


def print_outcome(stage, outcome):
    """The lines search.py prints after each stage (`outcome`: genet_jax.nas.driver.run_search's)."""
    if stage == "master":
        print(f"MasterNet: NAS-validation top-1 {outcome.accuracy:.4f} ({outcome.weights} weights)")
    elif stage == "finetune":
        print(f"fine-tunes run now: {outcome}")
    elif stage == "select":
        picked, master = outcome.selected, outcome.master
        trained = picked.trained_accuracy
        print(f"selected @{picked.resolution}: {picked.structure_string}")
        print(f"  predicted top-1 {picked.predicted_accuracy:.4f}, measured {picked.measured_latency_ms:.4f} "
              f"ms/image (budget {picked.budget_ms:.4f})"
              + (f", trained top-1 {trained:.4f} ({picked.trained_weights} weights)" if trained is not None else ""))
        print(f"  MasterNet top-1 {master.accuracy:.4f} ({master.weights} weights) at "
              f"{master.measured_latency_ms:.4f} ms/image")
        print(f"result: {os.path.join(os.path.abspath(flags.FLAGS.config.workdir), 'search_result.json')}")


if __name__ == "__main__":
    cli.run_absl(main)
