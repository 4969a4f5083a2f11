"""Shared set-up of the command-line entry points (train.py, search.py)."""
from __future__ import annotations

import logging

NOISY_LOGGERS = ("absl", "orbax", "jax._src", "grain")


def setup_logging(quiet: tuple[str, ...] = ()) -> None:
    """INFO logging with timestamps; library chatter at WARNING, `quiet` loggers too."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in NOISY_LOGGERS + tuple(quiet):
        logging.getLogger(name).setLevel(logging.WARNING)
