"""What BN's batch statistics cost in the training step: per-device statistics (PyTorch DDP's, the
paper's) against statistics averaged over every device (config.bn_statistics "global"), each with
the two-pass variance the trainer uses and with E[x^2] - E[x]^2 (flax's fast variance, the
trainer's formula before 0.3), on host CPU devices forced to `--devices` (default 8).

    python benchmarks/bn_statistics.py [--devices 8] [--batch 64] [--runs 30]

The network is the embedded default (configs/default.py: digits at 32x32); the step is the one
train.py compiles. Protocol: the paper's (5 warm-up steps, 30 timed steps, top and bottom 10%
dropped, the mean), the 30 steps in 3 turns per setting so that load changes reach every setting. Prints ms/step, the ratio to per-device two-pass, and the all-reduces in the
compiled step; writes benchmarks/results/bn_statistics.json. On CPU devices a cross-device
all-reduce is a memory copy, so these ratios show XLA's work, not a GPU interconnect's: the GPU
report (benchmarks/gpu_report.py) measures both settings on the GPU.
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import sys

DEFAULT_DEVICES = 8


def device_count_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=int, default=DEFAULT_DEVICES, help="host CPU devices")


if __name__ == "__main__":  # XLA reads the device count once, when JAX starts
    _early = argparse.ArgumentParser(add_help=False)
    device_count_argument(_early)
    _devices = _early.parse_known_args()[0].devices
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={_devices}"
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from tabulate import tabulate  # noqa: E402

import genet_jax as g  # noqa: E402
from benchmarks.machine import machine_info, provenance, save_result  # noqa: E402
from configs.default import get_config  # noqa: E402
from genet_jax.latency.timing import PAPER_RUNS, trimmed_mean, time_runs  # noqa: E402
from genet_jax.models import layers  # noqa: E402
from genet_jax.training import optim, steps  # noqa: E402
from genet_jax.training.config import model_from_config, model_spec  # noqa: E402

RESULT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "bn_statistics.json")
WARMUP_STEPS = 5
ROUNDS = 3
SCHEDULE_STEPS = 10_000
COLLECTIVE_OPS = ("all-reduce", "all-gather", "all-to-all", "collective-permute", "reduce-scatter")
_COLLECTIVE = re.compile(r" (" + "|".join(COLLECTIVE_OPS) + r")(?:-start)?\(")
VARIANCE_FORMULAS = {"two-pass": False, "E[x^2]-E[x]^2": True}  # layers.BN_USE_FAST_VARIANCE


def compiled_step(bn_statistics: str, fast_variance: bool, batch: int):
    """(compiled train step, initial state, batch) of the default config on every device."""
    config = get_config()
    config.bn_statistics = bn_statistics
    layers.BN_USE_FAST_VARIANCE = fast_variance  # read when the step is traced, below
    spec = model_spec(config, num_classes=10)
    model = model_from_config(config, spec)
    schedule = optim.learning_rate_schedule(config.optim, batch, SCHEDULE_STEPS, SCHEDULE_STEPS / 10)
    tx = optim.make_optimizer(config.optim, schedule)
    mesh = steps.create_mesh()
    replicated, sharded = steps.shardings(mesh)
    state = jax.device_put(steps.init_state(g.init_variables(model), tx), replicated)
    rng = np.random.default_rng(0)
    images = jax.device_put(rng.integers(0, 256, (batch, *model.input_shape()[1:]), dtype=np.uint8), sharded)
    labels = jax.device_put(rng.integers(0, 10, batch).astype(np.int32), sharded)
    data = {"image": images, "label": labels}
    step = steps.jit_train_step(steps.make_train_step(model, tx, config, schedule, mesh=mesh), mesh)
    compiled = step.lower(state, data, jax.random.PRNGKey(0), None).compile()
    return compiled, state, data


def collective_counts(hlo_text: str) -> dict[str, int]:
    """{op: count} of the cross-device ops (each synchronous op or its async start) in compiled HLO text."""
    counts = collections.Counter(_COLLECTIVE.findall(hlo_text))
    return {op: counts.get(op, 0) for op in COLLECTIVE_OPS}


def timed_step(compiled, state, data):
    """A function running one step from the last one's state (the step donates it)."""
    key, holder = jax.random.PRNGKey(0), [state]

    def one_step():
        holder[0], metrics = compiled(holder[0], data, key, None)
        return metrics

    return one_step


def measure(settings: list[tuple[str, str, bool]], batch: int, runs: int, rounds: int) -> list[dict]:
    """ms per step of each (bn_statistics, variance name, fast variance) setting: every setting is
    compiled first, then the settings take turns, `runs` // `rounds` timed steps each per round, so
    a change in the machine's load reaches all of them alike."""
    compiled = [compiled_step(bn_statistics, fast, batch) for bn_statistics, _, fast in settings]
    steps_of = [timed_step(*parts) for parts in compiled]
    samples: list[list[float]] = [[] for _ in settings]
    for _ in range(rounds):
        for index, one_step in enumerate(steps_of):
            samples[index] += time_runs(one_step, max(1, runs // rounds), WARMUP_STEPS)
    rows = []
    for (bn_statistics, formula, _), (program, _, _), seconds in zip(settings, compiled, samples):
        rows.append({"bn_statistics": bn_statistics, "variance": formula, "ms_per_step": 1e3 * trimmed_mean(seconds),
                     "all_reduces": collective_counts(program.as_text())["all-reduce"]})
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    device_count_argument(parser)
    parser.add_argument("--batch", type=int, default=64, help="global batch (the default config's)")
    parser.add_argument("--runs", type=int, default=PAPER_RUNS, help="timed steps per setting, in all")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="turns the settings take")
    parser.add_argument("--out", default=RESULT)
    args = parser.parse_args(argv)
    settings = [(bn_statistics, formula, fast) for bn_statistics in steps.BN_STATISTICS
                for formula, fast in VARIANCE_FORMULAS.items()]
    rows = measure(settings, args.batch, args.runs, args.rounds)
    baseline = rows[0]["ms_per_step"]
    for row in rows:
        row["ratio_to_per_device_two_pass"] = row["ms_per_step"] / baseline
    print(tabulate(rows, headers="keys", floatfmt=".3f"))
    machine = machine_info()
    save_result(args.out, {"devices": jax.device_count(), "global_batch": args.batch, "runs": args.runs,
                           "rounds": args.rounds,
                           "network": "configs/default.py (digits, 32x32)", "rows": rows,
                           "machine": machine,
                           "provenance": provenance(machine, None if argv is None else [__file__, *argv])})


if __name__ == "__main__":
    main()
