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
        data = self.config.data
        variables = jax.device_put(variables, self.replicated)
        skips = pipeline.SkipCounter(f"eval {source.name}")
        totals = None
        for batch in pipeline.eval_batches(source, size, data.eval_crop_fraction,
                                           data.eval_batch_size // jax.process_count(), data.num_threads, skips):
            out = self._step(variables, pipeline.device_put_batch(batch, self.batch_sharding))
            totals = out if totals is None else jax.tree_util.tree_map(jnp.add, totals, out)
        totals = jax.device_get(totals)
        count = max(float(totals["count"]), 1.0)
        return {"top1": float(totals["top1"]) / count, "top5": float(totals["top5"]) / count,
                "loss": float(totals["loss"]) / count, "count": int(totals["count"]),
                "skipped_images": skips.count + source.skipped}
