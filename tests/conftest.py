"""Shared fixtures. The shared CIFAR-10 archive lives at ../shared/data/ in a checkout made by the
workplace; on a fresh clone without it, tests that need it are skipped and the rest use images
generated here (still real JPEG/PNG encoding and decoding)."""
import os
import tarfile

import numpy as np
import pytest
from PIL import Image

from genet_jax.latency.timing import ProbeSettings
from genet_jax.nas.latency_table import build_latency_table
from tests.nas_helpers import MASTER, SPACE

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CIFAR_ARCHIVE = os.path.join(REPO_ROOT, "..", "shared", "data", "cifar10-jpg.tgz")


def cifar_archive_or_skip() -> str:
    if not os.path.isfile(CIFAR_ARCHIVE):
        pytest.skip(f"shared CIFAR-10 archive not found at {os.path.normpath(CIFAR_ARCHIVE)} "
                    "(only present in the workplace checkout)")
    return CIFAR_ARCHIVE


@pytest.fixture(scope="session")
def sample_jpegs(tmp_path_factory):
    """Four real JPEG files: CIFAR-10 test images when the shared archive exists, else synthetic."""
    out = tmp_path_factory.mktemp("jpegs")
    paths = []
    if os.path.isfile(CIFAR_ARCHIVE):
        with tarfile.open(CIFAR_ARCHIVE) as archive:
            for member in archive:
                if "/test/" in member.name and member.name.endswith(".jpg"):
                    target = out / f"{len(paths)}_{os.path.basename(member.name)}"
                    target.write_bytes(archive.extractfile(member).read())
                    paths.append(str(target))
                    if len(paths) == 4:
                        break
    rng = np.random.default_rng(0)
    while len(paths) < 4:
        yy, xx = np.mgrid[0:48, 0:64]
        pixels = np.stack([xx * 4, yy * 5, (xx + yy) * 2], -1) + rng.integers(0, 60, (48, 64, 3))
        target = out / f"synthetic{len(paths)}.jpg"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(target, quality=90)
        paths.append(str(target))
    return paths


@pytest.fixture(scope="session")
def tiny_table():
    """LLR-NAS: (type keys per super-block, the latency table of tests.nas_helpers.MASTER at
    resolution 16 built from real part probes)."""
    keys = [["XX-k3-r1"], ["BL-k3-r0.25", "DW-k3-r3"], ["DW-k3-r3"]]
    settings = ProbeSettings(batch=8, runs=5, warmup=1, rounds=1)
    return keys, build_latency_table(MASTER, keys, SPACE, 16, settings, grid_points=2, progress=False)
