"""The machine a CPU benchmark ran on: CPU model and the instruction sets that matter for these
kernels (AVX2, AVX-512, VNNI, BF16, AMX), core count, library versions, and the measured float32
matmul peak that efficiency figures are quoted against."""
from __future__ import annotations

import json
import os
import platform
import subprocess
from importlib import metadata

import jax
import jax.numpy as jnp
import numpy as np

from genet_jax.latency.timing import time_runs

CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
MATMUL_SIZE = 2048
MATMUL_RUNS = 10
MATMUL_WARMUP = 2


def lscpu_fields() -> dict:
    """lscpu's 'Model name' and 'Flags' (from /proc/cpuinfo where lscpu is missing)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        with open("/proc/cpuinfo") as f:
            text = f.read().replace("model name", "Model name").replace("flags", "Flags")
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return {"model_name": fields.get("Model name", platform.processor()), "flags": fields.get("Flags", "").split()}


def machine_info(**versions) -> dict:
    """The CPU, its relevant flags, core count and versions (JAX's, numpy's and `versions`)."""
    cpu = lscpu_fields()
    return {
        "cpu_model": cpu["model_name"], "cpu_flags": {flag: flag in cpu["flags"] for flag in CPU_FLAGS},
        "cpu_count": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
        "jax": jax.__version__, "jaxlib": metadata.version("jaxlib"), **versions,
        "numpy": np.__version__, "jax_device": jax.devices()[0].device_kind,
        "xla_flags_env": os.environ.get("XLA_FLAGS", ""), "load_average_at_start": os.getloadavg(),
    }


def matmul_peaks(size: int = MATMUL_SIZE, runs: int = MATMUL_RUNS) -> dict:
    """Float32 matmul GFLOP/s, best of `runs`: a jitted jnp.dot, and numpy's (its BLAS)."""
    a = np.random.default_rng(0).standard_normal((size, size), np.float32)
    b = np.random.default_rng(1).standard_normal((size, size), np.float32)
    flops = 2 * size ** 3
    dot = jax.jit(jnp.dot)
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    jax_seconds = min(time_runs(lambda: dot(ja, jb), runs, MATMUL_WARMUP))
    numpy_seconds = min(time_runs(lambda: np.dot(a, b), runs, MATMUL_WARMUP, sync=lambda out: out))
    return {"size": size, "runs": runs, "jax_gflops": flops / jax_seconds / 1e9,
            "numpy_gflops": flops / numpy_seconds / 1e9}


def save_result(path: str, result: dict) -> None:
    """Write a benchmark's result JSON (creating its folder) and print where."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print(path)
