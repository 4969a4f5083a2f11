"""One evaluator for training, `python -m genet_jax.evaluate` and LLR-NAS: top-1, top-5 and loss of
a model's variables over a data source, sharded over every device like the training step."""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from genet_jax.data import pipeline
from genet_jax.data.sources import Source
from genet_jax.models.network import MasterNet
from genet_jax.training import steps


class Evaluator:
    """`evaluator(variables, source, size)` -> {'top1', 'top5', 'loss', 'count', 'skipped_images'}.

    Built once per model: the mesh (every device unless given) and the jitted eval step, with the
    config's eval batch size, crop fraction, reader threads and flip TTA.
    """

    def __init__(self, model: MasterNet, config, mesh: Optional[Mesh] = None):
        self.config = config
        self.mesh = mesh if mesh is not None else steps.create_mesh()
        self.replicated, self.batch_sharding = steps.shardings(self.mesh)
        self._step = steps.jit_eval_step(steps.make_eval_step(model, config.eval_flip_tta), self.mesh)

    def __call__(self, variables: dict, source: Source, size: int) -> dict:
        return self.evaluate_all({"": variables}, source, size)[""]

    def evaluate_all(self, named_variables: dict[str, dict], source: Source, size: int) -> dict[str, dict]:
        """The metrics of each named set of variables (e.g. raw and EMA weights) on the same batches,
        decoded once: {name: {'top1', 'top5', 'loss', 'count', 'skipped_images'}}."""
        data = self.config.data
        placed = {name: jax.device_put(variables, self.replicated) for name, variables in named_variables.items()}
        skips = pipeline.SkipCounter(f"eval {source.name}")
        totals: dict = {name: None for name in placed}
        for batch in pipeline.eval_batches(source, size, data.eval_crop_fraction,
                                           data.eval_batch_size // jax.process_count(), data.num_threads, skips):
            batch = pipeline.device_put_batch(batch, self.batch_sharding)
            for name, variables in placed.items():
                out = self._step(variables, batch)
                totals[name] = out if totals[name] is None else jax.tree_util.tree_map(jnp.add, totals[name], out)
        return {name: _mean_metrics(jax.device_get(total), skips.count + source.skipped)
                for name, total in totals.items()}


def _mean_metrics(totals: dict, skipped_images: int) -> dict:
    count = max(float(totals["count"]), 1.0)
    return {"top1": float(totals["top1"]) / count, "top5": float(totals["top5"]) / count,
            "loss": float(totals["loss"]) / count, "count": int(totals["count"]), "skipped_images": skipped_images}
