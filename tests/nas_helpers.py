"""What the LLR-NAS tests share: a tiny MasterNet, the paper's search space, and synthetic
fine-tune samples with known pseudo-gradients."""

from genet_jax import NetworkSpec
from genet_jax.nas.local_linear import Sample
from genet_jax.nas.space import BlockType, SearchSpace, make_block

MASTER = NetworkSpec.from_dict({
    "stem_width": 8, "stem_stride": 2, "final_width": 32, "num_classes": 10, "resolution": 16,
    "blocks": [{"block_type": "XX", "depth": 1, "width": 16, "stride": 2},
               {"block_type": "BL", "depth": 3, "width": 32, "stride": 2, "ratio": 0.25},
               {"block_type": "DW", "depth": 2, "width": 32, "stride": 1, "ratio": 3.0}]})
SPACE = SearchSpace()


def synthetic_samples(master, coefficients, rng, per_type=6, noise=0.0, accuracy=0.7):
    samples = []
    for (block, key), (g_d, g_c, b) in coefficients.items():
        base = master.blocks[block]
        for _ in range(per_type):
            depth = int(rng.choice(SPACE.depths(base.depth)))
            width = int(rng.choice(SPACE.widths(base.width)))
            delta = g_d * (depth - base.depth) + g_c * (width - base.width) + b + noise * rng.standard_normal()
            samples.append(Sample(block, make_block(BlockType.from_key(key), depth, width, base.stride),
                                  accuracy + delta))
    return samples


# search.py's config file for the tiny end-to-end searches: digits, a 2-super-block MasterNet.
TINY_SEARCH_CONFIG = '''
import json
from configs.default import get_config as digits_config
from configs.search.common import search_config

def get_config():
    t = digits_config()
    t.model = json.dumps({"stem_width": 8, "stem_stride": 2, "final_width": 32, "num_classes": 10,
                          "resolution": 16, "blocks": [
                              {"block_type": "XX", "depth": 1, "width": 16, "stride": 2},
                              {"block_type": "BL", "depth": 1, "width": 16, "stride": 2, "ratio": 0.5}]})
    t.resolution = -1
    t.num_epochs = 1.0
    t.batch_size = 32
    t.data.holdout_size = 300
    t.data.eval_batch_size = 100
    t.progress_bar = False
    t.checkpoint.async_save = False
    t.optim.ema_decay = 0.9  # every stage then inherits and measures the EMA weights (genet_jax.nas.weights)
    c = search_config(t)
    c.perturbations_per_block = 1
    c.finetune.num_train_steps = 4
    c.latency.dtype = "float32"
    c.latency.batch = 8
    c.latency.runs = 3
    c.latency.warmup = 1
    c.latency.grid_points = 2
    c.latency.line_points = 0
    c.latency.calibration_probes = 2
    c.latency.validation_probes = 2
    c.selection.budget_ms = -1.0
    # tiny nets time within noise of each other, and the MasterNet's probe and the table's parts are measured
    # apart on a loaded machine: 1.3 once left all 1001 candidates predicted above the budget; near-budget
    # structures (the table check's pairs) still exist at 2
    c.selection.budget_master_fraction = 2.0
    c.selection.num_candidates = 1000
    c.selection.top_k = 2
    c.selection.resolutions = (16,)
    c.final.num_train_steps = 3
    return c
'''


def tiny_search_config(workdir):
    """TINY_SEARCH_CONFIG's config, with `workdir`."""
    namespace = {}
    exec(TINY_SEARCH_CONFIG, namespace)
    config = namespace["get_config"]()
    config.workdir = str(workdir)
    return config
