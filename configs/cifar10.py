"""CIFAR-10 from JPEG folders (train/ and test/ of class folders).

    # data/cifar10-jpg/{train,test}/<class>/*.jpg: see docs/training/data.md
    python train.py --config configs/cifar10.py
The network is GENet-shaped for 32x32 inputs (stem stride 1, XX low, BL/DW high), the recipe the
one chosen on a holdout (benchmarks/cifar10_select.py); its results: docs/results/cifar10.md.
"""
import json

from configs.common import base_config

RATIOS = {"XX": 1.0, "BL": 0.25, "DW": 3.0}  # the paper's bottleneck / expansion ratios


def genet_32(stem: int, final: int, stages: list[tuple[str, int, int, int]]) -> dict:
    """A spec for 32x32 inputs: a stride-1 stem, then (block type, depth, width, stride) stages."""
    return {"stem_width": stem, "stem_stride": 1, "final_width": final, "num_classes": 10, "resolution": 32,
            "blocks": [{"block_type": kind, "depth": depth, "width": width, "stride": stride, "kernel_size": 3,
                        "ratio": RATIOS[kind]} for kind, depth, width, stride in stages]}


def cifar_genet(stem: int, widths: tuple[int, int, int], final: int, second_xx_depth: int) -> dict:
    """GENet's layout for 32x32 inputs: XX at 16x16 and 8x8, BL and DW at 4x4."""
    xx1, xx2, late = widths
    return genet_32(stem, final, [("XX", 1, xx1, 2), ("XX", second_xx_depth, xx2, 2), ("BL", 2, late, 2),
                                  ("DW", 2, late, 1)])


# 1.4 M parameters, 48 M MACs: the first shipped network (trained without EMA)
CIFAR_GENET_SMALL = cifar_genet(32, (64, 128, 256), 512, second_xx_depth=1)
# 6.7 M parameters, 266 M MACs, with EMA: chosen on the holdout (docs/results/cifar10.md)
CIFAR_GENET = cifar_genet(64, (128, 256, 512), 1024, second_xx_depth=2)


def get_config():
    c = base_config()
    c.workdir = "workdirs/cifar10"
    c.model = json.dumps(CIFAR_GENET)
    c.resolution = 32
    c.batch_size = 64                # more updates in the 25 epochs; on a CPU also cache-resident
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
    c.optim.ema_decay = 0.999
    c.checkpoint.every_steps = 2000
    c.log_every_steps = 100
    c.eval_every_epochs = 5.0
    c.eval_flip_tta = True
    return c
