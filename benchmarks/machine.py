"""The machine a CPU benchmark ran on: CPU model and the instruction sets that matter for these
kernels (AVX2, AVX-512, VNNI, BF16, AMX), core count, library versions, and the measured float32
matmul peak that efficiency figures are quoted against; and every result's provenance (the command,
the date and a one-line machine summary) that docs/results/ states beside each figure.

JAX is imported only by the functions that measure with it, so a benchmark that runs its work in
subprocesses (or a GPU report's parent process) can write provenance without initialising JAX."""
from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
from importlib import metadata

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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


def cpu_description() -> dict:
    """The CPU model, which of CPU_FLAGS it has, and the core count."""
    cpu = lscpu_fields()
    return {"cpu_model": cpu["model_name"], "cpu_flags": {flag: flag in cpu["flags"] for flag in CPU_FLAGS},
            "cpu_count": os.cpu_count()}


def machine_info(**versions) -> dict:
    """The CPU, its relevant flags, core count and versions (JAX's, numpy's and `versions`)."""
    import jax
    import numpy as np

    return {
        **cpu_description(), "machine": platform.machine(), "python": platform.python_version(),
        "jax": jax.__version__, "jaxlib": metadata.version("jaxlib"), **versions,
        "numpy": np.__version__, "jax_device": jax.devices()[0].device_kind,
        "xla_flags_env": os.environ.get("XLA_FLAGS", ""), "load_average_at_start": os.getloadavg(),
    }


def matmul_peaks(size: int = MATMUL_SIZE, runs: int = MATMUL_RUNS) -> dict:
    """Float32 matmul GFLOP/s, best of `runs`: a jitted jnp.dot, and numpy's (its BLAS)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from genet_jax.latency.timing import time_runs

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


def flags_text(flags: dict) -> str:
    """The instruction sets of CPU_FLAGS present, as lscpu names them ("avx2 avx512f ...")."""
    present = [flag for flag, on in flags.items() if on]
    return " ".join(present) if present else "none of " + "/".join(CPU_FLAGS)


def machine_line(info: dict) -> str:
    """One line naming the machine of `info` (machine_info()'s dict, or a part of it): CPU model,
    flags and cores, and the JAX device where it is not the CPU."""
    parts = [str(info.get("cpu_model", "CPU model not recorded"))]
    if isinstance(info.get("cpu_flags"), dict):
        parts.append(flags_text(info["cpu_flags"]))
    if info.get("cpu_count"):
        parts.append(f"{info['cpu_count']} cores")
    line = ", ".join(parts)
    device = info.get("jax_device")
    return line if not device or device.lower() == "cpu" else f"{device}; host {line}"


def current_machine(info: dict | None = None, device: str | None = None) -> str:
    """machine_line of `info`, or of this host's CPU (model, flags, cores); `device`: the JAX device the
    work ran on, where the caller knows it (this never initialises JAX, which on a GPU would take
    its memory from the processes a driver script starts)."""
    if info is None:
        info = cpu_description()
    return machine_line({**info, "jax_device": device} if device else info)


def command_line(argv: list[str] | None = None) -> str:
    """`python SCRIPT ARGS` as typed from the repository root (SCRIPT relative to it)."""
    argv = list(sys.argv if argv is None else argv)
    script = os.path.abspath(argv[0])
    if script.startswith(REPO + os.sep):
        script = os.path.relpath(script, REPO)
    return shlex.join(["python", script, *argv[1:]])


def provenance(machine: dict | str | None = None, argv: list[str] | None = None, device: str | None = None) -> dict:
    """The "provenance" every results JSON carries: the command that produced it (`argv`, default
    sys.argv), today's date (UTC, ISO) and a one-line machine summary (`machine`: machine_info()'s
    dict, a ready line, or None for this host's CPU, with `device` the JAX device if not the CPU)."""
    line = machine if isinstance(machine, str) else current_machine(machine, device)
    return {"command": command_line(argv), "date": datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
            "machine": line}
