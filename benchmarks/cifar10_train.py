"""CIFAR-10 training benchmark: train configs/cifar10.py on the shared JPEGs and evaluate once.

    python benchmarks/cifar10_train.py [--config.key=value ...]                 # final: test split, once
    python benchmarks/cifar10_train.py --validation [--config.key=value ...]    # a trial for choosing

A final run trains on all 50,000 training images and reads the test split once, at the end (raw and
EMA weights in the same pass); it writes benchmarks/results/cifar10_train.json. A `--validation`
trial holds out 5,000 training images (seeded) and evaluates on them instead, so recipes are chosen
without the test split. Every run, trial or final, is appended to
benchmarks/results/cifar10_trials.json (overrides, epochs, top-1 of both weights, wall time,
machine), the table the README reports. Needs ../shared/data/cifar10-jpg.tgz (unpacked once into
data/); exits with a message otherwise.
"""
import fcntl
import json
import os
import sys
import tarfile
import time

from absl import app, flags
from ml_collections import config_flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
import jax  # noqa: E402

from benchmarks.machine import lscpu_fields, provenance  # noqa: E402
from genet_jax import cli  # noqa: E402
from genet_jax.data.subsets import HOLDOUT_SPLIT  # noqa: E402
from genet_jax.outputs import file_slug  # noqa: E402
from genet_jax.training.loop import train  # noqa: E402

ARCHIVE = os.path.join(REPO, "..", "shared", "data", "cifar10-jpg.tgz")
DATA = os.path.join(REPO, "data")
RESULTS = os.path.join(REPO, "benchmarks", "results")
CIFAR10_TRAIN_IMAGES = 50_000
VALIDATION_IMAGES = 5000
VALIDATION_SEED = 0

config_flags.DEFINE_config_file("config", os.path.join(REPO, "configs", "cifar10.py"), "training config")
flags.DEFINE_bool("validation", False, f"a trial: hold out {VALIDATION_IMAGES} training images and evaluate on "
                                       "them, never on the test split")
flags.DEFINE_string("name", "", "the trial's name in cifar10_trials.json")
flags.DEFINE_string("workdir", "", "checkpoints and logs (a run resumes from the one there); default: "
                                   "workdirs/cifar10_trial_<name> for a trial, workdirs/bench_cifar10 for a final")


def unpack() -> str:
    target = os.path.join(DATA, "cifar10-jpg")
    if not os.path.isdir(os.path.join(target, "test")):
        if not os.path.isfile(ARCHIVE):
            sys.exit(f"skipped: {os.path.normpath(ARCHIVE)} not found (the shared CIFAR-10 archive)")
        os.makedirs(DATA, exist_ok=True)
        with tarfile.open(ARCHIVE) as archive:
            archive.extractall(DATA, filter="data")
    return target


def overrides() -> list[str]:
    return [arg for arg in sys.argv[1:] if arg.startswith("--config.")]


def append_trial(record: dict) -> None:
    """Append to cifar10_trials.json; trials running side by side append in turn (a lock file)."""
    path = os.path.join(RESULTS, "cifar10_trials.json")
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        trials = json.load(open(path)) if os.path.isfile(path) else []
        with open(path, "w") as f:
            json.dump(trials + [record], f, indent=2)


def cpu_record() -> dict:
    cpu = lscpu_fields()
    return {"model_name": cpu["model_name"], "avx512": "avx512f" in cpu["flags"]}


def main(argv):
    cli.setup_logging()  # the trainer's progress at INFO, orbax's and absl's chatter at WARNING
    config, validation = flags.FLAGS.config, flags.FLAGS.validation
    root = unpack()
    with config.unlocked():
        config.data.source = f"folder:{root}"
        config.eval_every_epochs = config.num_epochs  # the evaluation split is read once, at the end
        trial = "cifar10_trial_" + file_slug(flags.FLAGS.name)
        config.workdir = flags.FLAGS.workdir or os.path.join(REPO, "workdirs", trial if validation else "bench_cifar10")
        if validation:
            config.data.holdout_size, config.data.holdout_seed = VALIDATION_IMAGES, VALIDATION_SEED
            config.data.eval_split = HOLDOUT_SPLIT
    started = time.time()
    final = train(config)
    wall = time.time() - started
    default = final.eval_ema or final.eval  # the weights export and evaluation use
    result = {"name": flags.FLAGS.name, "split": config.data.eval_split, "overrides": overrides(),
              "top1": default["top1"], "top5": default["top5"], "raw_top1": final.eval["top1"],
              "ema_top1": final.eval_ema.get("top1"), "count": default["count"],
              "epochs": final.step * config.batch_size / (CIFAR10_TRAIN_IMAGES - config.data.holdout_size),
              "steps": final.step, "batch_size": config.batch_size, "wall_seconds": wall,
              "recipe": {"optim": config.optim.to_dict(), "augment": config.augment.to_dict(),
                         "eval_flip_tta": config.eval_flip_tta},
              "train_images_per_second": final.train_images_per_second, "model": final.model,
              "device": jax.devices()[0].device_kind, "cpu": cpu_record(), "cpu_count": os.cpu_count(),
              "finished_at": time.time(), "provenance": provenance(device=jax.devices()[0].device_kind)}
    os.makedirs(RESULTS, exist_ok=True)
    append_trial(result)
    if not validation:
        with open(os.path.join(RESULTS, "cifar10_train.json"), "w") as f:
            json.dump(result, f, indent=2)
    print(f"CIFAR-10 {config.data.eval_split}: top-1 {result['top1']:.4f} (raw weights {result['raw_top1']:.4f}), "
          f"wall {wall / 60:.1f} min, {result['train_images_per_second']:.0f} train images/s, "
          f"{result['epochs']:.3g} epochs")


if __name__ == "__main__":
    app.run(main)
