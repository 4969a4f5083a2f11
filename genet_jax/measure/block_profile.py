"""`python -m genet_jax.measure.block_profile --widths 64,128,256 --ratios 0.25,0.5,1 --batch 64 --resolution 224 [--engine jax|onnxruntime] --out results/block_profile`

Block profiling (section 3.2, Fig. 3): networks of 5 XX-blocks or 10 BL / DW-blocks (k=3, s=1)
of one width, timed over a grid of widths and ratios by the paper's protocol.

Widths and ratios are the paper's: a DW-block's width is its depthwise channel count and its r is
1 / expansion; a BL-block's r is its bottleneck ratio. Each network is stem (3x3, s=1, to the
block input width) -> blocks -> the usual final 1x1 conv, pooling and head.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from tqdm import tqdm

from genet_jax import cli
from genet_jax.arch.spec import NetworkSpec, SpecError, SuperBlockSpec
from genet_jax.latency import PAPER_RUNS
from genet_jax.latency.engines import add_engine_arguments, probe_on
from genet_jax.outputs import new_figure, parse_numbers, positive_int, save_figure, write_csv

PROFILE_DEPTH = {"XX": 5, "BL": 10, "DW": 10}


def profiling_spec(block_type: str, width: int, ratio: float = 1.0, resolution: int = 224,
                   kernel_size: int = 3) -> NetworkSpec:
    """The profiling network of one block type at the paper's (width, r)."""
    if block_type not in PROFILE_DEPTH:
        raise SpecError("block_type", f"must be XX, BL or DW, got {block_type!r}")
    if not 0 < ratio <= 1:
        raise SpecError("ratio", f"the paper's r is in (0, 1], got {ratio}")
    if block_type == "DW":
        out_width = max(1, int(round(width * ratio)))
        block = SuperBlockSpec("DW", PROFILE_DEPTH["DW"], out_width, 1, kernel_size, width / out_width)
    else:
        block = SuperBlockSpec(block_type, PROFILE_DEPTH[block_type], width, 1, kernel_size,
                               1.0 if block_type == "XX" else ratio)
    return NetworkSpec(stem_width=block.width, blocks=(block,), final_width=block.width, num_classes=1000,
                       resolution=resolution, stem_stride=1)


def profile_blocks(widths: Sequence[int], ratios: Sequence[float], batch: int = 64, resolution: int = 224,
                   dtype: str = "float32", runs: int = PAPER_RUNS, warmup: Optional[int] = None,
                   block_types=("XX", "BL", "DW"), progress: bool = True, rounds: Optional[int] = None,
                   engine: str = "jax", provider: Optional[str] = None) -> list[dict]:
    jobs = [(t, w, 1.0 if t == "XX" else r) for t in block_types for w in widths
            for r in (ratios if t != "XX" else [1.0])]
    rows = []
    for block_type, width, ratio in tqdm(jobs, desc="block profiling", unit="network", disable=not progress):
        spec = profiling_spec(block_type, width, ratio, resolution)
        result = probe_on(engine, spec, batch, dtype=dtype, runs=runs, warmup=warmup, rounds=rounds,
                          provider=provider, name=f"{block_type}-w{width}-r{ratio:g}")
        rows.append({"block_type": block_type, "width": width, "ratio": ratio,
                     "depth": PROFILE_DEPTH[block_type], "batch": batch, "resolution": resolution, "dtype": dtype,
                     "conv_impl": result.conv_impl,
                     "ms_per_image": result.ms_per_image, "params": result.params, "macs": result.macs,
                     "device_kind": result.device_kind, "engine": result.engine,
                     "engine_version": result.engine_version})
    return rows


def plot(rows: Sequence[dict], out_dir: str) -> list[str]:
    """Fig. 3: (a) XX vs DW and (b) XX vs BL latency against width; (c), (d) against parameters."""
    fig, axes = new_figure(ncols=4, width=4.2)
    xx = [r for r in rows if r["block_type"] == "XX"]
    for col, (other, x_key) in enumerate([("DW", "width"), ("BL", "width"), ("DW", "params"), ("BL", "params")]):
        ax = axes[col]
        scale = 1e6 if x_key == "params" else 1
        if xx:
            ax.plot([r[x_key] / scale for r in xx], [r["ms_per_image"] for r in xx], "k-o", label="XX")
        for ratio in sorted({r["ratio"] for r in rows if r["block_type"] == other}):
            mine = [r for r in rows if r["block_type"] == other and r["ratio"] == ratio]
            ax.plot([r[x_key] / scale for r in mine], [r["ms_per_image"] for r in mine], marker="s",
                    label=f"{other} r={ratio:g}")
        ax.set(xlabel="block width" if x_key == "width" else "parameters (M)", ylabel="ms / image",
               title=f"({'abcd'[col]}) XX vs {other}")
        ax.legend(fontsize=7)
    first = rows[0]
    fig.suptitle(f"block latency, batch {first['batch']}, {first['resolution']}x{first['resolution']}, "
                 f"{first['dtype']}, {first['device_kind']}, {first['engine']}")
    return [save_figure(fig, os.path.join(out_dir, "block_profile.png"))]


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser("python -m genet_jax.measure.block_profile", __doc__)
    parser.add_argument("--widths", default="64,128,256,512")
    parser.add_argument("--ratios", default="0.25,0.5,1.0", help="the paper's r for BL and DW blocks")
    parser.add_argument("--block-types", default="XX,BL,DW")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--runs", type=int, default=PAPER_RUNS)
    parser.add_argument("--rounds", type=positive_int, default=None, help="default: the platform's protocol")
    add_engine_arguments(parser)
    parser.add_argument("--out", required=True)
    return parser


def run(args: argparse.Namespace, widths: list[int], ratios: list[float], types: tuple[str, ...]) -> int:
    rows = profile_blocks(widths, ratios, args.batch, args.resolution, args.dtype, args.runs, block_types=types,
                          rounds=args.rounds, engine=args.engine, provider=args.provider)
    for path in [write_csv(os.path.join(args.out, "block_profile.csv"), rows), *plot(rows, args.out)]:
        print(path)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        widths, ratios = parse_numbers(args.widths, "--widths", int), parse_numbers(args.ratios, "--ratios")
        types = tuple(t.strip().upper() for t in args.block_types.split(","))
        for ratio in ratios:
            profiling_spec("BL", 8, ratio)
        for t in types:
            profiling_spec(t, 8)
    except (ValueError, SpecError) as e:
        parser.error(str(e))
    return cli.exit_code_of(lambda: run(args, widths, ratios, types))


if __name__ == "__main__":
    sys.exit(main())
