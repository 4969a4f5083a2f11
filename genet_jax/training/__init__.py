"""The trainer: config validation, optimiser, device augmentations, sharded steps, checkpointing, loop."""
from genet_jax.versions import require as _require_supported

_require_supported("optax")
