"""The embedded default: a small GENet-shaped network (XX low, BL/DW high) on scikit-learn's
bundled digits upsampled to 32x32 RGB. No download; a few minutes on 2 CPU cores.

    python train.py
"""
import json

from configs.common import base_config

DIGITS_GENET = {
    "stem_width": 16, "stem_stride": 1, "final_width": 256, "num_classes": 10, "resolution": 32,
    "blocks": [
        {"block_type": "XX", "depth": 1, "width": 32, "stride": 2, "kernel_size": 3, "ratio": 1.0},
        {"block_type": "XX", "depth": 1, "width": 48, "stride": 2, "kernel_size": 3, "ratio": 1.0},
        {"block_type": "BL", "depth": 2, "width": 96, "stride": 2, "kernel_size": 3, "ratio": 0.25},
        {"block_type": "DW", "depth": 2, "width": 128, "stride": 1, "kernel_size": 3, "ratio": 3.0},
    ],
}


def get_config():
    c = base_config()
    c.workdir = "workdirs/digits"
    c.model = json.dumps(DIGITS_GENET)
    c.batch_size = 64
    c.num_epochs = 20.0
    c.resolution = 32
    c.data.source = "digits"
    c.data.num_threads = 2
    c.data.eval_crop_fraction = 1.0
    c.augment.random_resized_crop = False
    c.augment.crop_padding = 2
    c.augment.hflip = False          # digits are not mirror-symmetric
    c.augment.label_smoothing = 0.1
    c.optim.lr_per_256 = 0.4
    c.optim.weight_decay = 5e-4
    c.optim.warmup_epochs = 1.0
    c.checkpoint.every_steps = 200
    c.log_every_steps = 20
    c.eval_every_epochs = 5.0
    return c
