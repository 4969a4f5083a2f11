"""The train step across devices (8 host CPU devices, in a child process: tests/data_parallel_check.py):
what crosses devices in the compiled program, per-device vs global BN statistics, mixup partners on
the same device."""
import json
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from tests.processes import devices_env

DEVICES = 8
# What may cross devices: gradients, the step's metrics and (bn_statistics "per_device") the BN
# running statistics, averaged once a step. XLA's all-reduce combiner may merge those into fewer
# ops (jax 0.10.2 on CPU: 1); nothing is ever permuted, gathered or exchanged all-to-all (a mixup
# partner taken from another device's rows was a collective-permute).
PER_STEP_ALL_REDUCES = (1, 3)
# bn_statistics "global": also, in every BN layer, the batch mean and then the variance (two passes)
# forward and their cotangents backward, at most one all-reduce each (measured: 45 for 12 layers).
SYNCED_BN_ALL_REDUCES_PER_LAYER = (2, 4)
NEVER = ("all-gather", "all-to-all", "collective-permute", "reduce-scatter")
ONE_STEP_TOLERANCE = 1e-6  # largest parameter difference, float32 sums in another order (measured: 4e-9)
SETTINGS_DIFFER = 1e-4  # per-device and global statistics on different rows (measured: 4e-3)


@pytest.fixture(scope="module")
def measured():
    done = subprocess.run([sys.executable, "-m", "tests.data_parallel_check"], cwd=REPO_ROOT, capture_output=True,
                          text=True, env=devices_env(DEVICES), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("bn_statistics", ["per_device", "global"])
def test_the_compiled_step_exchanges_only_averages(measured, bn_statistics):
    counts, layers = measured["collectives"][bn_statistics], measured["bn_layers"]
    assert all(counts[op] == 0 for op in NEVER), counts
    low, high = PER_STEP_ALL_REDUCES
    if bn_statistics == "global":
        low, high = low + layers * SYNCED_BN_ALL_REDUCES_PER_LAYER[0], high + layers * SYNCED_BN_ALL_REDUCES_PER_LAYER[1]
    assert low <= counts["all-reduce"] <= high, (counts, layers)


def test_per_device_statistics_on_eight_copies_of_a_batch_equal_one_device_on_it(measured):
    """Each device normalises its own 4 rows by their own statistics: as one device would."""
    assert measured["per_device_same_rows_vs_one_device_difference"] <= ONE_STEP_TOLERANCE


def test_global_statistics_on_eight_devices_equal_one_device_on_the_whole_batch(measured):
    assert measured["global_vs_one_device_difference"] <= ONE_STEP_TOLERANCE
    assert measured["per_device_vs_global_difference"] > SETTINGS_DIFFER
