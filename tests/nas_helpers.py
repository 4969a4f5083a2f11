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
