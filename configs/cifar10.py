"""CIFAR-10 from the shared JPEG folders (train/ and test/ of class folders).

    mkdir -p data && tar xzf ../shared/data/cifar10-jpg.tgz -C data
    python train.py --config configs/cifar10.py
The network is GENet-shaped for 32x32 inputs (stem stride 1, XX low, BL/DW high); see README.
"""
import json

from configs.common import base_config

CIFAR_GENET = {
    "stem_width": 32, "stem_stride": 1, "final_width": 512, "num_classes": 10, "resolution": 32,
    "blocks": [
        {"block_type": "XX", "depth": 1, "width": 64, "stride": 2, "kernel_size": 3, "ratio": 1.0},
        {"block_type": "XX", "depth": 1, "width": 128, "stride": 2, "kernel_size": 3, "ratio": 1.0},
        {"block_type": "BL", "depth": 2, "width": 256, "stride": 2, "kernel_size": 3, "ratio": 0.25},
        {"block_type": "DW", "depth": 2, "width": 256, "stride": 1, "kernel_size": 3, "ratio": 3.0},
    ],
}


def get_config():
    c = base_config()
    c.workdir = "workdirs/cifar10"
    c.model = json.dumps(CIFAR_GENET)
    c.resolution = 32
    c.batch_size = 64                # small batches train faster per image on a CPU (cache-resident)
    c.num_epochs = 25.0
    c.data.source = "folder:data/cifar10-jpg"
    c.data.train_split = "train"
    c.data.eval_split = "test"
    c.data.num_threads = 2
    c.data.cache_decoded = True      # 60k 32x32 images: decode once, keep the CPU for training
    c.data.eval_crop_fraction = 1.0
    c.data.eval_batch_size = 500
    c.augment.random_resized_crop = False
    c.augment.crop_padding = 4
    c.augment.hflip = True
    c.augment.label_smoothing = 0.1
    c.optim.lr_per_256 = 0.4
    c.optim.weight_decay = 5e-4
    c.optim.warmup_epochs = 1.0
    c.checkpoint.every_steps = 2000
    c.log_every_steps = 100
    c.eval_every_epochs = 5.0
    c.eval_flip_tta = True
    return c
