"""What the GPU report measures: the full plan for a GPU (sized for about 8 minutes on one H100-class
card) and the --quick plan that runs every section on a CPU with tiny settings.

Every section has a time budget: a measurement starts only while its section has time left, and
what did not start is listed as skipped, so the report's length is bounded whatever the card.
"""
from __future__ import annotations

import dataclasses
import json
import time

# The paper's resolution for each network (GENet: Table 2; EfficientNet: its paper's; the rest 224).
GENETS = {"genet_light": 192, "genet_normal": 192, "genet_large": 256}
PEERS = {"resnet50": 224, "resnet152": 224, "efficientnet_b0": 224, "efficientnet_b1": 240,
         "efficientnet_b2": 260, "efficientnet_b3": 300, "mobilenetv2_100": 224}
TABLE7_BATCHES = (1, 2, 4, 8, 16, 32, 64)

# section -> framework whose process runs it, in the order they run (most telling first)
SECTIONS = {
    "environment": "both",
    "correctness": "jax",
    "jax_inference": "jax",
    "torch_inference": "torch",
    "peers": "torch",
    "jax_training": "jax",
    "torch_training": "torch",
    "torch_compile": "torch",
    "scaling": "jax",
}


@dataclasses.dataclass(frozen=True)
class Plan:
    quick: bool
    genets: dict
    peers: dict
    batches: tuple
    dtypes: tuple
    runs: int
    warmup: int
    budgets: dict  # seconds per section
    compile_backend: str  # torch.compile backend
    train_arch: str
    train_resolution: int
    train_dtype: str
    train_batch_start: int  # compiled first; its memory use sizes the largest power of two that fits
    train_batch_max: int
    train_runs: int
    train_warmup: int
    check_arch: str  # correctness: GPU vs CPU logits, and a loss that decreases
    check_resolution: int
    check_batch: int
    loss_steps: int
    scaling_batch_per_device: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


FULL = Plan(
    quick=False, genets=GENETS, peers=PEERS, batches=TABLE7_BATCHES, dtypes=("float16", "bfloat16"), runs=30,
    warmup=10,
    budgets={"environment": 30, "correctness": 40, "jax_inference": 130, "torch_inference": 35, "peers": 60,
             "jax_training": 60, "torch_training": 35, "torch_compile": 50, "scaling": 90},
    compile_backend="inductor", train_arch="genet_normal", train_resolution=192, train_dtype="bfloat16",
    train_batch_start=64, train_batch_max=2048, train_runs=30, train_warmup=5, check_arch="genet_normal",
    check_resolution=192, check_batch=8, loss_steps=10, scaling_batch_per_device=128)

# --quick: a GENet-shaped network small enough that XLA:CPU compiles each program in about a second
# (stem, XX, BL and DW super-blocks, final conv), every section on it. torch.compile's inductor needs
# a C++ build of ~20 s per graph on a 2-core CPU, so --quick checks torch.compile's capture path
# (dynamo + AOT autograd) with the aot_eager backend.
QUICK_NET = json.dumps({
    "stem_width": 8, "final_width": 64, "num_classes": 1000, "resolution": 32,
    "blocks": [{"block_type": "XX", "depth": 1, "width": 16, "stride": 2},
               {"block_type": "BL", "depth": 1, "width": 32, "stride": 2, "ratio": 0.25},
               {"block_type": "DW", "depth": 1, "width": 32, "stride": 1, "ratio": 3.0}]})
QUICK = dataclasses.replace(
    FULL, quick=True, genets={QUICK_NET: 32}, peers={"mobilenetv2_100": 32}, batches=(1, 2), runs=5,
    warmup=1, budgets={name: 120 for name in FULL.budgets}, compile_backend="aot_eager",
    train_arch=QUICK_NET, train_resolution=32, train_batch_start=8, train_batch_max=8, train_runs=3,
    train_warmup=1, check_arch=QUICK_NET, check_resolution=32, check_batch=4, loss_steps=8,
    scaling_batch_per_device=4)


def label(arch: str) -> str:
    """A network's name in the report (the --quick network is an inline spec)."""
    return "tiny GENet-shaped net" if arch.lstrip().startswith("{") else arch


class Budget:
    """A section's remaining time; `skip(what)` records what did not start."""

    def __init__(self, seconds: float):
        self.deadline = time.perf_counter() + seconds
        self.skipped: list[str] = []

    def allows(self, what: str) -> bool:
        if time.perf_counter() < self.deadline:
            return True
        self.skipped.append(what)
        return False
