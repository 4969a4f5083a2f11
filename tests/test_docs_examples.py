"""Every python and shell example in README.md and docs/ is marked, and every one marked
`<!-- example: run -->` runs: a page's run-examples in order, in one fresh directory holding the
repository's scripts and configs and a real JPEG (cat.jpg), on the CPU, offline."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.docs_examples import REPO, all_examples, marker_problem

# what a page's examples see in their directory: the scripts a user runs from a clone
LINKED_FROM_REPO = ("train.py", "search.py", "configs", "benchmarks", "pyproject.toml", "requirements.txt")
EXAMPLE_TIMEOUT_S = 300
CAT_SIZE = (320, 240)
# a floor, so that markers cannot all turn into "not run here" unnoticed
MIN_RUN_EXAMPLES = 15
OUTPUT_TAIL_CHARS = 4000

EXAMPLES, PARSE_PROBLEMS = all_examples()
PAGES_THAT_RUN = sorted({example.page for example in EXAMPLES if example.runs})


def test_every_example_is_marked_run_or_not_run_with_a_reason():
    problems = PARSE_PROBLEMS + [p for p in map(marker_problem, EXAMPLES) if p]
    assert not problems, "\n".join(problems)


def test_enough_examples_run():
    runs = [example for example in EXAMPLES if example.runs]
    assert len(runs) >= MIN_RUN_EXAMPLES, f"only {len(runs)} examples run: {[e.where() for e in runs]}"
    assert any(example.page == "README.md" for example in runs), "no README example runs"


def write_cat_jpeg(path):
    """A real 3-channel JPEG with some structure (a gradient and a disc), as a user's photo would be."""
    width, height = CAT_SIZE
    y, x = np.mgrid[0:height, 0:width]
    disc = ((x - width / 2) ** 2 + (y - height / 2) ** 2) < (height / 3) ** 2
    pixels = np.stack([x * 255 // width, y * 255 // height, np.where(disc, 220, 40)], axis=-1)
    Image.fromarray(pixels.astype(np.uint8), "RGB").save(path, quality=90)


def example_directory(tmp_path):
    for name in LINKED_FROM_REPO:
        os.symlink(REPO / name, tmp_path / name)
    write_cat_jpeg(tmp_path / "cat.jpg")
    return tmp_path


def example_environment():
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.update(JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1", MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    return env


@pytest.mark.parametrize("page", PAGES_THAT_RUN)
def test_the_run_examples_of_a_page_run(page, tmp_path):
    directory = example_directory(tmp_path)
    env = example_environment()
    for number, example in enumerate(e for e in EXAMPLES if e.page == page and e.runs):
        if example.is_shell:
            script, command = directory / f"example_{number}.sh", ["bash", "-euo", "pipefail"]
        else:
            script, command = directory / f"example_{number}.py", [sys.executable]
        script.write_text(example.code, encoding="utf-8")
        result = subprocess.run(command + [script.name], cwd=directory, env=env, capture_output=True,
                                text=True, timeout=EXAMPLE_TIMEOUT_S)
        assert result.returncode == 0, (
            f"{example.where()} exited {result.returncode}:\n{example.code}\n--- stdout\n"
            f"{result.stdout[-OUTPUT_TAIL_CHARS:]}\n--- stderr\n{result.stderr[-OUTPUT_TAIL_CHARS:]}")
