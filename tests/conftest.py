"""Shared fixtures. The shared CIFAR-10 archive lives at ../shared/data/ in a checkout made by the
workplace; on a fresh clone without it, tests that need it are skipped and the rest use images
generated here (still real JPEG/PNG encoding and decoding)."""
import os
import shutil
import tarfile
import tempfile

import jax
import numpy as np
import pytest
from PIL import Image

from genet_jax.latency.timing import ProbeSettings
from genet_jax.nas.latency_table import build_latency_table
from tests.nas_helpers import MASTER, SPACE


def share_one_compilation_cache() -> str | None:
    """Point this run's processes (pytest, its xdist workers, every train.py / search.py they start)
    at one persistent XLA cache, so that a resumed, re-sharded or repeated run loads what an earlier
    one compiled. The workers inherit the environment. Returns the directory to delete when the run
    ends (None where a cache was configured already: by the caller, or for a worker by pytest's
    main process; JAX read those settings from the environment when it was imported)."""
    if "JAX_COMPILATION_CACHE_DIR" in os.environ:
        return None
    created = tempfile.mkdtemp(prefix="genet-jax-test-xla-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = created
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")  # the test nets compile fast
    jax.config.update("jax_compilation_cache_dir", created)  # jax was imported before the variables were set
    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                      float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))
    return created


OWN_COMPILATION_CACHE = share_one_compilation_cache()
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CIFAR_ARCHIVE = os.path.join(REPO_ROOT, "..", "shared", "data", "cifar10-jpg.tgz")


@pytest.fixture
def full_float32_products():
    """A GPU's default float32 matmuls and convolutions round their inputs to TF32 (10-bit mantissa,
    ~1e-3 relative), which float32 tolerances against PyTorch, ONNX Runtime or a reference formula
    are not about; XLA:CPU computes in full float32 either way."""
    with jax.default_matmul_precision("highest"):
        yield


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


def pytest_unconfigure(config):
    if OWN_COMPILATION_CACHE:
        shutil.rmtree(OWN_COMPILATION_CACHE, ignore_errors=True)
