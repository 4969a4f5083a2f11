"""The trainer: config validation, optimiser, device augmentations, sharded steps, checkpointing, loop."""
