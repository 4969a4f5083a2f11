"""`python -m genet_jax.launch --processes N [--devices-per-process M] [--port P] -- SCRIPT.py [ARGS...]`

N processes of SCRIPT on this machine as one multi-process JAX job, each with M CPU devices:
what a multi-node GPU or TPU job is, on one host, for trying the multi-host paths and testing
them. Each process gets `--distributed` appended and the process grid in its environment
(genet_jax.distributed: JAX_COORDINATOR_ADDRESS=localhost:P, GENET_JAX_NUM_PROCESSES,
GENET_JAX_PROCESS_ID); their output is prefixed with `[i]`. If one exits with an error or is
killed, the others get SIGTERM, then SIGKILL after `--grace` seconds (a survivor cannot finish a
save that needs the lost process); the launcher exits with the first failure's code, and the same
command again resumes from the last complete checkpoint. Ctrl-C / SIGTERM to the launcher goes to
every process.

    python -m genet_jax.launch --processes 2 --devices-per-process 4 -- train.py --config.num_train_steps=40
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Optional, Sequence

from genet_jax import cli
from genet_jax.distributed import COORDINATOR_ENV, NUM_PROCESSES_ENV, PROCESS_ID_ENV

DEFAULT_GRACE_SECONDS = 30.0
POLL_SECONDS = 0.2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def process_environment(index: int, processes: int, devices: int, port: int) -> dict:
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
    env.update({COORDINATOR_ENV: f"localhost:{port}", NUM_PROCESSES_ENV: str(processes),
                PROCESS_ID_ENV: str(index), "JAX_PLATFORMS": env.get("JAX_PLATFORMS", "cpu"),
                "XLA_FLAGS": " ".join(flags + [f"--xla_force_host_platform_device_count={devices}"])})
    return env


def _relay(index: int, stream, sink) -> None:
    for line in iter(stream.readline, ""):
        sink.write(f"[{index}] {line}")
        sink.flush()


def start(command: Sequence[str], processes: int, devices: int, port: int) -> list[subprocess.Popen]:
    children = []
    for index in range(processes):
        child = subprocess.Popen([sys.executable, *command, "--distributed"], text=True, bufsize=1,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 env=process_environment(index, processes, devices, port))
        for stream, sink in ((child.stdout, sys.stdout), (child.stderr, sys.stderr)):
            threading.Thread(target=_relay, args=(index, stream, sink), daemon=True).start()
        children.append(child)
    return children


def stop(children: Sequence[subprocess.Popen], grace: float) -> None:
    """SIGTERM to every running child, SIGKILL to any still there after `grace`."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        try:
            child.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def supervise(children: Sequence[subprocess.Popen], grace: float) -> int:
    """Wait for all; on the first failure stop the rest. The job's exit code: 0, or the first failure's."""
    while True:
        codes = [child.poll() for child in children]
        failed = [(i, code) for i, code in enumerate(codes) if code not in (None, 0)]
        if failed:  # a killed process is the likelier cause of the others' errors: name it first
            index, code = min(failed, key=lambda failure: (failure[1] > 0, failure[0]))
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            print(f"genet_jax.launch: process {index} {how}; stopping the others", file=sys.stderr, flush=True)
            stop(children, grace)
            return code if code > 0 else 128 - code
        if all(code == 0 for code in codes):
            return 0
        time.sleep(POLL_SECONDS)


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser("python -m genet_jax.launch", __doc__)
    parser.add_argument("--processes", type=int, required=True)
    parser.add_argument("--devices-per-process", type=int, default=1, help="CPU devices each process sees")
    parser.add_argument("--port", type=int, default=None, help="coordinator port (default: a free one)")
    parser.add_argument("--grace", type=float, default=DEFAULT_GRACE_SECONDS,
                        help="seconds the others get to save and exit after one fails")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- SCRIPT.py [ARGS...] (or -m MODULE ...)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --, e.g. -- train.py --config configs/default.py")
    if args.processes < 1 or args.devices_per_process < 1:
        parser.error("--processes and --devices-per-process must be >= 1")
    if command[0].endswith(".py") and not os.path.isfile(command[0]):
        parser.error(f"{command[0]}: no such file")
    children = start(command, args.processes, args.devices_per_process, args.port or free_port())
    forward = lambda signum, frame: stop(children, args.grace)  # noqa: E731
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return supervise(children, args.grace)


if __name__ == "__main__":
    sys.exit(main())
