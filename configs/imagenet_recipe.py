"""The shared ImageNet recipe: SGD Nesterov 0.9, lr 0.1 per 256 images, 5 warm-up epochs then
cosine, weight decay 4e-5 (not on BN or biases), 480 epochs, label smoothing 0.1, mixup 0.2,
random erasing 0.5, AutoAugment, bfloat16 compute, zero-init of each unit's last BN, optional
teacher (the authors trained with one; set teacher.checkpoint). BN statistics per device: the
authors trained with PyTorch's DistributedDataParallel and plain BatchNorm, which normalises each
GPU's rows by their own statistics (at 1024 images over 8 GPUs, 128 rows each); it also spares the
step an all-reduce in every BN layer (benchmarks/bn_statistics.py)."""
from configs.common import base_config


def imagenet_config(model: str, resolution: int):
    c = base_config()
    c.workdir = f"workdirs/{model}"
    c.model = model
    c.resolution = resolution
    c.dtype = "bfloat16"
    c.batch_size = 1024
    c.bn_statistics = "per_device"
    c.num_epochs = 480.0
    c.data.source = "tfds:imagenet2012"
    c.data.train_split = "train"
    c.data.eval_split = "validation"
    c.data.num_threads = 32
    c.data.eval_crop_fraction = 0.875
    c.data.eval_batch_size = 1024
    c.augment.random_resized_crop = True
    c.augment.hflip = True
    c.augment.policy = "autoaugment"
    c.augment.random_erase_prob = 0.5
    c.augment.mixup_alpha = 0.2
    c.augment.label_smoothing = 0.1
    c.optim.lr_per_256 = 0.1
    c.optim.momentum = 0.9
    c.optim.nesterov = True
    c.optim.weight_decay = 4e-5
    c.optim.warmup_epochs = 5.0
    c.teacher.true_label_weight = 1.0
    c.teacher.soft_label_weight = 1.0
    c.checkpoint.every_steps = 2000
    c.log_every_steps = 100
    return c
