"""What a training run returns (and writes to WORKDIR/metrics.json)."""
from __future__ import annotations

import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """The outcome of `genet_jax.training.loop.train`.

    `eval` holds the last evaluation ({'top1', 'top5', 'loss', 'count', 'skipped_images'}); it is
    empty when a SIGTERM stopped the run before its first evaluation; `eval_ema` the same for the
    EMA of the weights (empty without optim.ema_decay). `interrupted`: stopped by
    SIGTERM after saving; re-running the same command resumes.
    """

    step: int
    total_steps: int
    eval: dict
    train_images_per_second: float
    wall_seconds: float
    skipped_train_images: int
    checkpoint_dir: str
    interrupted: bool
    model: dict  # the NetworkSpec as a dict
    conv_impl: str  # the kernels that ran (genet_jax.models.conv_ops)
    devices: dict  # count, platform, device_kind, jax_version
    eval_ema: dict = dataclasses.field(default_factory=dict)  # the EMA weights' evaluation (optim.ema_decay > 0)

    @property
    def top1(self) -> Optional[float]:
        return self.eval.get("top1")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
