"""Joining a multi-process JAX job (`--distributed` in train.py and search.py).

JAX's own multi-controller runtime is the engine: `jax.distributed.initialize`. Where
`python -m genet_jax.launch` started the processes, their coordinator, count and index come from the
GENET_JAX_* variables it sets; anywhere else a bare `initialize()` lets JAX detect the cluster
(Slurm job steps, Open MPI, Kubernetes, Cloud TPU) or read JAX_COORDINATOR_ADDRESS. On CPU devices
the collectives run over gloo (JAX's default; JAX_CPU_COLLECTIVES_IMPLEMENTATION=mpi for MPI).

A process that stops sending heartbeats (killed, its host lost) is declared dead after the heartbeat
timeout (GENET_JAX_HEARTBEAT_SECONDS, default 60); JAX then aborts every other process with "the JAX
distributed service detected fatal errors ... another task died" instead of letting it wait forever
in a collective, and the same command again resumes from the last complete checkpoint.

Under jax >= 0.12 on CPU devices a multi-process job does not use JAX's persistent compilation cache:
with jax 0.12.1, processes that load their train step from the cache (a resumed job, or one that
compiles what another job cached) hang in its first cross-process collective, while the same job
compiling afresh runs (tests/test_multiprocess.py, kill -9 then resume). jax 0.10.2 is not affected.
"""
from __future__ import annotations

import logging
import os
from typing import Optional

import jax
from packaging.version import Version

from genet_jax.errors import InputError

NUM_PROCESSES_ENV = "GENET_JAX_NUM_PROCESSES"
PROCESS_ID_ENV = "GENET_JAX_PROCESS_ID"
COORDINATOR_ENV = "JAX_COORDINATOR_ADDRESS"  # read by JAX itself too
HEARTBEAT_ENV = "GENET_JAX_HEARTBEAT_SECONDS"
HEARTBEAT_TIMEOUT_SECONDS = 60  # JAX's default is 100 s; a lost host is noticed within a minute
INITIALIZATION_TIMEOUT_SECONDS = 300
SLURM_GPUS_ENV = "SLURM_GPUS_ON_NODE"
LOCAL_DEVICE_IDS_ENV = "JAX_LOCAL_DEVICE_IDS"  # read by jax.distributed.initialize
CPU_CACHE_HANGS_FROM = Version("0.12")  # the first JAX whose cached multi-process CPU executables hang (0.12.1)

log = logging.getLogger("genet_jax.distributed")


class DistributedError(InputError, RuntimeError):
    """A multi-process job that cannot start as configured; the message says what is missing."""


def launched_processes() -> Optional[tuple[int, int]]:
    """(num_processes, process_id) set by `python -m genet_jax.launch`, or None."""
    if NUM_PROCESSES_ENV not in os.environ:
        return None
    try:
        return int(os.environ[NUM_PROCESSES_ENV]), int(os.environ[PROCESS_ID_ENV])
    except (KeyError, ValueError):
        raise DistributedError(f"{NUM_PROCESSES_ENV} and {PROCESS_ID_ENV} must both be integers") from None


def heartbeat_timeout() -> int:
    text = os.environ.get(HEARTBEAT_ENV, str(HEARTBEAT_TIMEOUT_SECONDS))
    if not text.isdigit() or int(text) < 1:
        raise DistributedError(f"{HEARTBEAT_ENV} must be a whole number of seconds >= 1, got {text!r}")
    return int(text)


def initialize() -> None:
    """Join the job: explicitly where the launcher set the process grid, else by JAX's cluster
    auto-detection. Call before anything touches a JAX device."""
    grid = launched_processes()
    options = dict(initialization_timeout=INITIALIZATION_TIMEOUT_SECONDS, heartbeat_timeout_seconds=heartbeat_timeout())
    try:
        if grid is None:
            jax.distributed.initialize(**options)
        else:
            num_processes, process_id = grid
            jax.distributed.initialize(os.environ.get(COORDINATOR_ENV), num_processes, process_id, **options)
    except ValueError as e:  # no cluster detected and nothing given
        raise DistributedError(f"--distributed: {e} (run under srun / mpirun / a Kubernetes Job, set "
                               f"{COORDINATOR_ENV}, or start the processes with python -m genet_jax.launch)") from None
    _skip_the_compilation_cache_where_it_hangs()
    unused = unused_gpus_warning(os.environ, jax.local_device_count())
    if unused:
        log.warning(unused)


def unused_gpus_warning(environ, local_device_count: int) -> Optional[str]:
    """A line when a Slurm task uses fewer of its node's GPUs than it was given: JAX's Slurm detection
    restricts each process to the GPU numbered SLURM_LOCALID unless JAX_LOCAL_DEVICE_IDS says otherwise,
    so one task per node with --gpus-per-node=8 trains on one GPU of the eight."""
    gpus = environ.get(SLURM_GPUS_ENV, "")
    if "SLURM_JOB_ID" not in environ or LOCAL_DEVICE_IDS_ENV in environ or not gpus.isdigit():
        return None
    tasks_on_node = environ.get("SLURM_STEP_TASKS_PER_NODE", environ.get("SLURM_TASKS_PER_NODE", "1"))
    first = tasks_on_node.split("(")[0]  # "8(x2)": 8 tasks on each of 2 nodes
    tasks = int(first) if first.isdigit() else 1
    if local_device_count * tasks >= int(gpus):
        return None
    ids = ",".join(str(i) for i in range(int(gpus) // tasks))
    return (f"this process uses {local_device_count} of the {gpus} GPUs Slurm gave its node ({tasks} task(s) per node): "
            f"set {LOCAL_DEVICE_IDS_ENV}={ids} for one task per node, or run one task per GPU")


def _skip_the_compilation_cache_where_it_hangs() -> None:
    """See the module docstring: multi-process CPU jobs under jax >= 0.12 compile afresh."""
    if (jax.process_count() > 1 and jax.default_backend() == "cpu" and jax.config.jax_enable_compilation_cache
            and Version(jax.__version__) >= CPU_CACHE_HANGS_FROM):
        jax.config.update("jax_enable_compilation_cache", False)
        log.info("jax %s, %d processes on CPU: the persistent compilation cache is off (cached multi-process CPU "
                 "executables hang in their first collective)", jax.__version__, jax.process_count())
