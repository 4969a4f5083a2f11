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

from absl import app, flags
from ml_collections import config_flags

REPO = os.path.dirname(os.path.abspath(__file__))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

config_flags.DEFINE_config_file("config", os.path.join(REPO, "configs", "search", "cifar10_demo.py"),
                                "search config file (a Python file with get_config())", lock_config=True)
flags.DEFINE_enum("stage", "all", ["all", "master", "finetune", "select"], "which step(s) to run")
flags.DEFINE_string("shard", None, "i/n: run only fine-tune jobs i, i+n, ... (stage finetune)")
flags.DEFINE_bool("allow_missing", False, "select with the fine-tune results there are, even if some are missing")
flags.DEFINE_bool("distributed", False, "call jax.distributed.initialize() first (multi-host fine-tunes)")


def parse_shard(text):
    try:
        shard, num_shards = (int(v) for v in text.split("/"))
    except ValueError:
        raise app.UsageError(f"--shard must look like i/n (e.g. 3/16), got {text!r}") from None
    if not 0 <= shard < num_shards:
        raise app.UsageError(f"--shard {text}: need 0 <= i < n")
    return shard, num_shards


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from genet_jax.cli import setup_logging
    setup_logging(quiet=("genet_jax.train",))
    logging.getLogger("absl").setLevel(logging.ERROR)  # orbax notes the trainer's extra checkpoint items
    import jax
    if flags.FLAGS.distributed:
        jax.distributed.initialize()
    from genet_jax.interop.model_checkpoint import CheckpointError
    from genet_jax.data.sources import DataError
    from genet_jax.nas.driver import Search, SearchError
    from genet_jax.nas.select import NoStructureFits
    from genet_jax.arch.spec import SpecError
    from genet_jax.training.config import ConfigError
    from genet_jax.training.loop import TrainingDiverged

    stage = flags.FLAGS.stage
    shard = parse_shard(flags.FLAGS.shard) if flags.FLAGS.shard else None
    if shard and stage not in ("all", "finetune"):
        raise app.UsageError("--shard applies to the finetune stage")
    if shard:
        stage = "finetune"
    try:
        search = Search(flags.FLAGS.config)
        if stage in ("all", "master"):
            master = search.master()
            print(f"MasterNet: NAS-validation top-1 {master['accuracy']:.4f}")
        if stage in ("all", "finetune"):
            ran = search.finetune(*(shard or (0, 1)))
            print(f"fine-tunes run now: {ran}")
        if stage in ("all", "select"):
            result = search.finish(flags.FLAGS.allow_missing)
            picked = result["selected"]
            trained = picked["trained_accuracy"]
            print(f"selected @{picked['resolution']}: {picked['structure_string']}")
            print(f"  predicted top-1 {picked['predicted_accuracy']:.4f}, measured {picked['measured_latency_ms']:.4f} "
                  f"ms/image (budget {picked['budget_ms']:.4f})"
                  + (f", trained top-1 {trained:.4f}" if trained is not None else ""))
            print(f"  MasterNet top-1 {result['master']['accuracy']:.4f} at "
                  f"{result['master']['measured_latency_ms']:.4f} ms/image")
            print(f"result: {os.path.join(search.workdir, 'search_result.json')}")
    except (SearchError, NoStructureFits, ConfigError, DataError, CheckpointError, SpecError, TrainingDiverged,
            ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
