"""Run as `python -m tests.data_parallel_check` with 8 host CPU devices (tests/test_data_parallel.py
starts it; XLA's device count is fixed when JAX starts). Prints one JSON object:

- `collectives`: {bn_statistics: {op: count}} in the compiled train step of a tiny GENet on 8
  devices with mixup and CutMix on (the default config otherwise);
- `bn_layers`: how many BN layers that network has;
- `*_difference`: the largest absolute parameter difference after one step between the runs named.
"""
import json

import jax
import numpy as np

import genet_jax as g
from benchmarks.bn_statistics import collective_counts
from configs.common import base_config
from genet_jax.training import optim, steps
from genet_jax.training.config import model_from_config
from tests.helpers import TINY

DEVICES = 8
ROWS_PER_DEVICE = 4
MIXUP_ALPHA, CUTMIX_ALPHA = 0.2, 1.0
BATCH_FOR_LR = 256  # the learning rate of a 256-image batch: one step moves the parameters visibly
KEY = jax.random.PRNGKey(3)


class Step:
    """One compiled train step of TINY on `devices` from the same initial state: `collectives` counts
    the collective ops of the compiled program, `params(images, labels)` the parameters after it."""

    def __init__(self, bn_statistics: str, devices, mix: bool, rows: int = DEVICES * ROWS_PER_DEVICE):
        config = base_config()
        config.bn_statistics, config.optim.warmup_epochs = bn_statistics, 0.0
        if mix:
            config.augment.mixup_alpha, config.augment.cutmix_alpha = MIXUP_ALPHA, CUTMIX_ALPHA
        model = model_from_config(config, g.resolve_spec(TINY))
        schedule = optim.learning_rate_schedule(config.optim, BATCH_FOR_LR, 100, 10)
        tx = optim.make_optimizer(config.optim, schedule)
        mesh = steps.create_mesh(devices)
        self.state = steps.init_state(g.init_variables(model), tx)
        batch = {"image": np.zeros((rows, *model.input_shape()[1:]), np.uint8), "label": np.zeros(rows, np.int32)}
        jitted = steps.jit_train_step(steps.make_train_step(model, tx, config, schedule, mesh=mesh), mesh)
        self.compiled = jitted.lower(self.state, batch, KEY, None).compile()
        self.collectives = collective_counts(self.compiled.as_text())
        self.bn_layers = sum(1 for path, _ in jax.tree_util.tree_leaves_with_path(self.state.batch_stats)
                             if str(path[-1].key) == "mean")

    def params(self, images: np.ndarray, labels: np.ndarray) -> dict:
        state = jax.tree_util.tree_map(np.array, jax.device_get(self.state))  # a copy: the step donates it
        new, _ = self.compiled(state, {"image": images, "label": labels}, KEY, None)
        return jax.device_get(new.params)


def largest_difference(a: dict, b: dict) -> float:
    return max(float(np.max(np.abs(x - y))) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def main() -> None:
    assert jax.device_count() == DEVICES, "run with --xla_force_host_platform_device_count=8"
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (DEVICES * ROWS_PER_DEVICE, 16, 16, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, DEVICES * ROWS_PER_DEVICE).astype(np.int32)
    one_device, all_devices = jax.devices()[:1], jax.devices()
    same_rows = np.tile(images[:ROWS_PER_DEVICE], (DEVICES, 1, 1, 1)), np.tile(labels[:ROWS_PER_DEVICE], DEVICES)
    first_rows = images[:ROWS_PER_DEVICE], labels[:ROWS_PER_DEVICE]
    per_device, synced = Step("per_device", all_devices, mix=True), Step("global", all_devices, mix=True)
    result = {"collectives": {"per_device": per_device.collectives, "global": synced.collectives},
              "bn_layers": per_device.bn_layers}
    result["per_device_same_rows_vs_one_device_difference"] = largest_difference(
        Step("per_device", all_devices, mix=False).params(*same_rows),
        Step("per_device", one_device, mix=False, rows=ROWS_PER_DEVICE).params(*first_rows))
    result["per_device_vs_global_difference"] = largest_difference(per_device.params(images, labels),
                                                                   synced.params(images, labels))
    result["global_vs_one_device_difference"] = largest_difference(
        Step("global", all_devices, mix=False).params(images, labels),
        Step("global", one_device, mix=False).params(images, labels))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
