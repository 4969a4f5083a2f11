"""LLR-NAS end to end on the shared CIFAR-10 in well under 45 minutes on a 2-core CPU: a small
MasterNet trained briefly, 4 perturbations per super-block fine-tuned half an epoch each, a CPU
latency budget equal to the MasterNet's own latency, resolutions 28 and 32, each pick trained as
long as the MasterNet was.

    # data/cifar10-jpg/{train,test}/<class>/*.jpg: see docs/training/data.md
    python search.py --config configs/search/cifar10_demo.py
5,000 training images are held out as the NAS validation set; the test split is never read.
"""
import json

from configs.cifar10 import get_config as cifar10_config
from configs.search.common import search_config

DEMO_MASTERNET = {
    "stem_width": 16, "stem_stride": 2, "final_width": 256, "num_classes": 10, "resolution": 32,
    "blocks": [
        {"block_type": "XX", "depth": 1, "width": 32, "stride": 1, "kernel_size": 3, "ratio": 1.0},
        {"block_type": "XX", "depth": 1, "width": 64, "stride": 2, "kernel_size": 3, "ratio": 1.0},
        {"block_type": "BL", "depth": 2, "width": 128, "stride": 2, "kernel_size": 3, "ratio": 0.25},
        {"block_type": "DW", "depth": 1, "width": 128, "stride": 1, "kernel_size": 3, "ratio": 3.0},
    ],
}
MASTER_EPOCHS = 4.0


def get_config():
    train = cifar10_config()
    train.model = json.dumps(DEMO_MASTERNET)
    train.num_epochs = MASTER_EPOCHS
    train.batch_size = 64
    train.optim.ema_decay = 0.0               # the README's demo figures were measured without EMA
    train.data.holdout_size = 5000
    train.data.holdout_seed = 0
    train.eval_every_epochs = MASTER_EPOCHS
    train.checkpoint.every_steps = 500
    c = search_config(train)
    c.workdir = "workdirs/search_cifar10_demo"
    c.perturbations_per_block = 4
    c.finetune.epochs = 0.5
    c.finetune.lr_per_256 = 0.05
    c.latency.dtype = "float32"
    c.latency.grid_points = 3
    c.latency.line_points = 0                 # every allowed width: XLA:CPU's cost is not smooth in width
    c.selection.budget_ms = -1.0              # the MasterNet's own measured latency
    c.selection.budget_master_fraction = 1.0
    c.selection.resolutions = (28, 32)
    c.final.epochs = MASTER_EPOCHS
    return c
