"""CSV, JSON and plot output shared by the measurement tools (matplotlib's file-only Agg backend)."""
from __future__ import annotations

import csv
import json
import os
import re
from typing import Sequence


def file_slug(name: str) -> str:
    """`name` as a file or folder name: each run of characters other than ASCII letters and digits
    becomes one underscore."""
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")


def write_json(path: str, data) -> str:
    """`data` as indented JSON, atomically: a kill leaves the old file or the new one, never half of one."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def write_csv(path: str, rows: Sequence[dict]) -> str:
    if not rows:
        raise ValueError(f"no rows to write to {path}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def new_figure(ncols: int = 1, width: float = 5.0, height: float = 4.0):
    import matplotlib  # imported when a plot is drawn: matplotlib's import costs about a second

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt  # after choosing the Agg backend

    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    return fig, list(axes[0])


def save_figure(fig, path: str) -> str:
    import matplotlib.pyplot as plt  # see new_figure

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def parse_numbers(text: str, what: str, kind: type = float) -> list:
    """Comma-separated numbers of `kind` (int: positive) from a CLI value; errors name `what`."""
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{what}: expected comma-separated {kind.__name__}s, got {text!r}") from None
    if not values or (kind is int and min(values) < 1):
        raise ValueError(f"{what}: expected {'positive integers' if kind is int else 'numbers'}, got {text!r}")
    return values


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (the error names the value)."""
    value = int(text)
    if value < 1:
        raise ValueError(f"expected an integer >= 1, got {text}")
    return value
