"""`python -m genet_jax.measure.kernel_rank CHECKPOINT_DIR_OR_PTH [--arch NAME] --out results/rank`

Intrinsic rank of conv kernels (section 3.3, Fig. 4): for each stage, the last kxk conv kernel
reshaped to (c_out, c_in/groups * k * k); its singular values, normalised by the largest, against
i / c_out. Fast decay means the layer is close to low rank (where BL / DW blocks pay off).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Mapping, Optional, Sequence

import numpy as np

from genet_jax import cli
from genet_jax.arch.paths import UnitLayerPath
from genet_jax.arch.spec import NetworkSpec
from genet_jax.checkpoint import load_model_checkpoint
from genet_jax.interop.pth_files import read_pth
from genet_jax.outputs import new_figure, save_figure, write_csv


def last_kxk_kernels(spec: NetworkSpec, params: Mapping) -> list[dict]:
    """Per stage: the kernel of the last unit's kxk conv (conv2 in XX, BL and DW units)."""
    found = []
    for index, block in enumerate(spec.blocks):
        path = UnitLayerPath(index, block.depth - 1, "conv2")
        layer = params
        for name in path.names:
            layer = layer[name]
        found.append({"stage": index, "layer": "/".join(path.names), "block_type": block.block_type,
                      "kernel": np.asarray(layer["conv"]["kernel"], np.float64)})
    return found


def normalized_singular_values(kernel: np.ndarray) -> np.ndarray:
    """Flax kernel (k, k, c_in/groups, c_out) -> singular values of the (c_out, c_in/groups*k*k) matrix / max."""
    c_out = kernel.shape[-1]
    matrix = np.transpose(kernel, (3, 2, 0, 1)).reshape(c_out, -1)
    values = np.linalg.svd(matrix, compute_uv=False)
    return values / values[0] if values[0] > 0 else values


def rank_rows(spec: NetworkSpec, params: Mapping) -> list[dict]:
    rows = []
    for entry in last_kxk_kernels(spec, params):
        kernel = entry["kernel"]
        values = normalized_singular_values(kernel)
        c_out = kernel.shape[-1]
        for i, value in enumerate(values, start=1):
            rows.append({"stage": entry["stage"], "layer": entry["layer"], "block_type": entry["block_type"],
                         "c_out": c_out, "c_in_per_group": kernel.shape[2], "kernel_size": kernel.shape[0],
                         "i": i, "i_over_c_out": i / c_out, "normalized_singular_value": float(value)})
    return rows


def plot(rows: Sequence[dict], out_dir: str, title: str) -> list[str]:
    fig, (ax,) = new_figure(width=6.0)
    for stage in sorted({r["stage"] for r in rows}):
        mine = [r for r in rows if r["stage"] == stage]
        ax.plot([r["i_over_c_out"] for r in mine], [r["normalized_singular_value"] for r in mine],
                label=f"stage {stage + 1} ({mine[0]['block_type']}, c_out={mine[0]['c_out']})")
    ax.set(xlabel="i / c_out", ylabel="singular value / largest", title=title, ylim=(0, 1.02))
    ax.legend(fontsize=8)
    return [save_figure(fig, os.path.join(out_dir, "kernel_rank.png"))]


def load_params(source: str, arch: Optional[str] = None) -> tuple[NetworkSpec, Mapping]:
    """An orbax checkpoint of this project, or a PyTorch weights file in any supported layout."""
    if os.path.isfile(source):
        spec, variables, _, _ = read_pth(source, arch=arch)
        return spec, variables["params"]
    checkpoint = load_model_checkpoint(source)
    return checkpoint.spec, checkpoint.variables["params"]


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser("python -m genet_jax.measure.kernel_rank", __doc__)
    parser.add_argument("source", help="checkpoint directory (ours) or PyTorch .pth (authors' / timm / torch layout)")
    parser.add_argument("--arch", default=None, help="architecture of a .pth that matches no registered network")
    parser.add_argument("--out", required=True)
    return parser


def run(args: argparse.Namespace) -> int:
    spec, params = load_params(args.source, args.arch)
    rows = rank_rows(spec, params)
    paths = [write_csv(os.path.join(args.out, "kernel_rank.csv"), rows),
             *plot(rows, args.out, f"kernel spectra: {os.path.basename(os.path.normpath(args.source))}")]
    for path in paths:
        print(path)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return cli.exit_code_of(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
