"""Validation of training configs: every bad value is reported with its full field name."""
from __future__ import annotations

import math
from typing import Any

import ml_collections

from genet_jax.arch.registry import resolve_spec
from genet_jax.arch.spec import NetworkSpec, SpecError
from genet_jax.data.autoaugment import MAX_LEVEL
from genet_jax.data.images import pil_pixel_limit
from genet_jax.errors import InputError
from genet_jax.models.conv_ops import CONV_IMPLS
from genet_jax.models.network import MasterNet, canonical_dtype, create_model
from genet_jax.training.steps import BN_STATISTICS


# eval_every_epochs = 0: evaluate once, at the end of the run.
EVALUATE_AT_THE_END = 0.0


class ConfigError(InputError, ValueError):
    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"config.{field}: {message}")


def _number(config, field: str, low: float = -math.inf, high: float = math.inf, integer: bool = False,
            low_open: bool = False) -> None:
    value: Any = config
    for part in field.split("."):
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not float(value).is_integer()):
        raise ConfigError(field, f"must be {'an integer' if integer else 'a number'}, got {value!r}")
    if not math.isfinite(value) or value < low or value > high or (low_open and value == low):
        bound = f"{'>' if low_open else '>='} {low}" + (f" and <= {high}" if high != math.inf else "")
        raise ConfigError(field, f"must be {bound}, got {value!r}")


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Raise ConfigError naming the first bad field."""
    for field, low, integer, low_open in [
        ("batch_size", 1, True, False), ("num_epochs", 0, False, True), ("seed", 0, True, False),
        ("data.num_threads", 1, True, False), ("data.eval_batch_size", 1, True, False),
        ("data.eval_crop_fraction", 0, False, True), ("augment.crop_padding", 0, True, False),
        ("augment.random_erase_prob", 0, False, False), ("augment.mixup_alpha", 0, False, False),
        ("augment.cutmix_alpha", 0, False, False), ("augment.label_smoothing", 0, False, False),
        ("augment.randaugment_num_ops", 0, True, False), ("augment.randaugment_magnitude", 0, False, False),
        ("optim.lr_per_256", 0, False, True), ("optim.momentum", 0, False, False),
        ("optim.weight_decay", 0, False, False), ("optim.warmup_epochs", 0, False, False),
        ("optim.grad_clip_norm", 0, False, False), ("teacher.true_label_weight", 0, False, False),
        ("teacher.soft_label_weight", 0, False, False), ("teacher.temperature", 0, False, True),
        ("checkpoint.every_steps", 1, True, False), ("checkpoint.keep", 1, True, False),
        ("log_every_steps", 1, True, False), ("eval_every_epochs", EVALUATE_AT_THE_END, False, False),
        ("optim.fp16_initial_loss_scale", 1, False, False), ("optim.fp16_scale_growth_steps", 1, True, False),
        ("data.holdout_size", 0, True, False), ("data.holdout_seed", 0, True, False),
        ("data.worker_count", 0, True, False), ("optim.accumulate_steps", 1, True, False),
        ("data.max_image_pixels", 1, True, False),
        ("optim.ema_decay", 0, False, False), ("optim.ema_warmup_power", 0, False, False),
    ]:
        _number(config, field, low, integer=integer, low_open=low_open)
    for field in ("augment.random_erase_prob", "augment.label_smoothing", "optim.momentum",
                  "data.eval_crop_fraction"):
        _number(config, field, 0, 1)
    _number(config, "augment.randaugment_magnitude", 0, MAX_LEVEL)
    _check_max_image_pixels(config.data.max_image_pixels)
    if config.optim.ema_decay >= 1:
        raise ConfigError("optim.ema_decay", f"must be 0 (off) or in (0, 1), got {config.optim.ema_decay!r}")
    _number(config, "num_train_steps", -1, integer=True)
    if config.num_train_steps == 0:
        raise ConfigError("num_train_steps", "must be -1 (use num_epochs) or > 0, got 0")
    _number(config, "resolution", -1, integer=True)
    if 0 <= config.resolution < 8:
        raise ConfigError("resolution", f"must be -1 (the model's) or >= 8, got {config.resolution}")
    if config.augment.policy not in ("none", "autoaugment", "randaugment"):
        raise ConfigError("augment.policy", f"must be none, autoaugment or randaugment, got {config.augment.policy!r}")
    scale = tuple(config.augment.rrc_scale)
    if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
        raise ConfigError("augment.rrc_scale", f"must be (low, high) with 0 < low <= high <= 1, got {scale}")
    if config.bn_statistics not in BN_STATISTICS:
        raise ConfigError("bn_statistics", f"must be one of {', '.join(BN_STATISTICS)}, got {config.bn_statistics!r}")
    if config.conv_impl not in CONV_IMPLS:
        raise ConfigError("conv_impl", f"must be one of {', '.join(CONV_IMPLS)}, got {config.conv_impl!r}")
    if not config.workdir:
        raise ConfigError("workdir", "must be a directory path")
    if config.init_from.checkpoint and config.init_from.get("pretrained"):
        raise ConfigError("init_from.pretrained", "set init_from.checkpoint or init_from.pretrained, not both")
    try:
        canonical_dtype(config.dtype)
    except SpecError as e:
        raise ConfigError("dtype", e.reason) from None
    try:
        resolve_spec(config.model)
    except SpecError as e:
        raise ConfigError("model", str(e)) from None


def _check_max_image_pixels(value: int) -> None:
    pil_limit = pil_pixel_limit()
    if pil_limit is not None and value > pil_limit:
        raise ConfigError("data.max_image_pixels", f"must be <= {pil_limit} (Pillow's own limit, "
                                                   f"PIL.Image.MAX_IMAGE_PIXELS, which genet_jax does not change), "
                                                   f"got {value!r}")


def model_spec(config: ml_collections.ConfigDict, num_classes: int) -> NetworkSpec:
    spec = resolve_spec(config.model, num_classes=num_classes)
    if config.resolution > 0:
        try:
            spec = spec.replace(resolution=config.resolution)
        except SpecError as e:
            raise ConfigError("resolution", e.reason) from None
    return spec


def model_from_config(config: ml_collections.ConfigDict, spec: NetworkSpec) -> MasterNet:
    """The MasterNet of `spec` as a training config runs it: compute dtype, conv kernels, last-BN init.

    The one way from a config to a model: training, its teacher, evaluation and LLR-NAS build here.
    """
    return create_model(spec, dtype=config.dtype, zero_init_last_bn=config.zero_init_last_bn,
                        conv_impl=config.conv_impl)
