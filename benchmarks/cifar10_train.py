"""CIFAR-10 training benchmark: train configs/cifar10.py on the shared JPEGs, evaluate the final
checkpoint once on the untouched test split, print test top-1, wall time and images/s.

    python benchmarks/cifar10_train.py [--config.key=value ...]

Needs ../shared/data/cifar10-jpg.tgz (unpacked once into data/); exits with a message otherwise.
"""
import json
import os
import sys
import tarfile
import time

from absl import app
from ml_collections import config_flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
import jax  # noqa: E402

from genet_jax.training.loop import train  # noqa: E402

ARCHIVE = os.path.join(REPO, "..", "shared", "data", "cifar10-jpg.tgz")
DATA = os.path.join(REPO, "data")

config_flags.DEFINE_config_file("config", os.path.join(REPO, "configs", "cifar10.py"), "training config")


def unpack() -> str:
    target = os.path.join(DATA, "cifar10-jpg")
    if not os.path.isdir(os.path.join(target, "test")):
        if not os.path.isfile(ARCHIVE):
            sys.exit(f"skipped: {os.path.normpath(ARCHIVE)} not found (the shared CIFAR-10 archive)")
        os.makedirs(DATA, exist_ok=True)
        with tarfile.open(ARCHIVE) as archive:
            archive.extractall(DATA, filter="data")
    return target


def main(argv):
    config = flags_config = app.flags.FLAGS.config
    root = unpack()
    with flags_config.unlocked():
        config.data.source = f"folder:{root}"
        config.eval_every_epochs = config.num_epochs  # the test split is used once, at the end
        config.workdir = os.path.join(REPO, "workdirs", "bench_cifar10")
    started = time.time()
    final = train(config)
    wall = time.time() - started
    result = {"test_top1": final.eval["top1"], "test_top5": final.eval["top5"], "wall_seconds": wall,
              "train_images_per_second": final.train_images_per_second, "epochs": config.num_epochs,
              "steps": final.step, "batch_size": config.batch_size, "model": final.model,
              "device": jax.devices()[0].device_kind, "cpu_count": os.cpu_count()}
    os.makedirs(os.path.join(REPO, "benchmarks", "results"), exist_ok=True)
    with open(os.path.join(REPO, "benchmarks", "results", "cifar10_train.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(f"CIFAR-10: test top-1 {result['test_top1']:.4f}, wall {wall / 60:.1f} min, "
          f"{result['train_images_per_second']:.0f} train images/s, {config.num_epochs:g} epochs")


if __name__ == "__main__":
    app.run(main)
