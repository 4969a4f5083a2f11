"""`python -m genet_jax.measure.batch_sweep --arch genet_light --arch genet_normal --batches 1,2,4,8,16,32,64 --resolution 192 [--engine jax|onnxruntime] --out results/latency_sweep`

Latency against batch size for a set of networks (Table 7, Fig. 2a), and against multiply-adds
and parameters at one batch size (Fig. 2b, 2c), by the paper's protocol (genet_jax.latency).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from tqdm import tqdm

from genet_jax import cli
from genet_jax.latency import PAPER_RUNS, model_timing_variables
from genet_jax.latency.engines import add_engine_arguments, probe_on
from genet_jax.outputs import new_figure, parse_numbers, positive_int, save_figure, write_csv
from genet_jax.models.network import create_model


def sweep(archs: Sequence[str], batches: Sequence[int], resolution: Optional[int] = None, dtype: str = "float32",
          fold_bn: bool = False, runs: int = PAPER_RUNS, warmup: Optional[int] = None, progress: bool = True,
          rounds: Optional[int] = None, engine: str = "jax", provider: Optional[str] = None) -> list[dict]:
    """One row per (network, batch); warm-up and rounds default to the platform's protocol."""
    rows = []
    with tqdm(total=len(archs) * len(batches), desc="latency", unit="probe", disable=not progress) as bar:
        for arch in archs:
            variables = model_timing_variables(create_model(arch, resolution=resolution))  # once per network
            for batch in batches:
                result = probe_on(engine, arch, batch, resolution, dtype, fold_bn=fold_bn, runs=runs, warmup=warmup,
                                  rounds=rounds, provider=provider, variables=variables)
                rows.append({"network": result.name, "batch": batch, "resolution": result.resolution,
                             "dtype": result.dtype, "conv_impl": result.conv_impl, "ms_per_image": result.ms_per_image,
                             "images_per_second": result.images_per_second, "params": result.params,
                             "macs": result.macs, "compile_seconds": result.compile_seconds,
                             "device_kind": result.device_kind, "engine": result.engine,
                             "engine_version": result.engine_version})
                bar.update(1)
    return rows


def plot(rows: Sequence[dict], out_dir: str, reference_batch: int) -> list[str]:
    networks = list(dict.fromkeys(r["network"] for r in rows))
    device = rows[0]["device_kind"]
    fig, (ax,) = new_figure()
    for name in networks:
        mine = [r for r in rows if r["network"] == name]
        ax.plot([r["batch"] for r in mine], [r["ms_per_image"] for r in mine], marker="o", label=name)
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="ms / image",
           title=f"latency vs batch ({device}, {rows[0]['engine']}, {rows[0]['dtype']})")
    ax.legend()
    paths = [save_figure(fig, os.path.join(out_dir, "latency_vs_batch.png"))]
    at_batch = [r for r in rows if r["batch"] == reference_batch]
    for key, label, filename in [("macs", "multiply-adds (G)", "latency_vs_macs.png"),
                                 ("params", "parameters (M)", "latency_vs_params.png")]:
        fig, (ax,) = new_figure()
        scale = 1e9 if key == "macs" else 1e6
        for r in at_batch:
            ax.scatter(r[key] / scale, r["ms_per_image"])
            ax.annotate(r["network"], (r[key] / scale, r["ms_per_image"]), fontsize=8)
        ax.set(xlabel=label, ylabel="ms / image", title=f"latency vs {label.split(' (')[0]}, batch {reference_batch}")
        paths.append(save_figure(fig, os.path.join(out_dir, filename)))
    return paths


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser("python -m genet_jax.measure.batch_sweep", __doc__)
    parser.add_argument("--arch", action="append", required=True, help="network name or spec; repeatable")
    parser.add_argument("--batches", default="1,2,4,8,16,32,64")
    parser.add_argument("--resolution", type=int, default=None)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--fold-bn", action="store_true")
    add_engine_arguments(parser)
    parser.add_argument("--runs", type=int, default=PAPER_RUNS)
    parser.add_argument("--rounds", type=positive_int, default=None, help="default: the platform's protocol")
    parser.add_argument("--reference-batch", type=int, default=None, help="batch of the MACs/params plots "
                        "(default: 64 if swept, else the largest)")
    parser.add_argument("--out", required=True, help="output directory")
    return parser


def run(args: argparse.Namespace, batches: list[int], reference: int) -> int:
    rows = sweep(args.arch, batches, args.resolution, args.dtype, args.fold_bn, args.runs, rounds=args.rounds,
                 engine=args.engine, provider=args.provider)
    csv_path = write_csv(os.path.join(args.out, "latency_vs_batch.csv"), rows)
    for path in [csv_path, *plot(rows, args.out, reference)]:
        print(path)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        batches = parse_numbers(args.batches, "--batches", int)
    except ValueError as e:
        parser.error(str(e))
    reference = args.reference_batch or (64 if 64 in batches else max(batches))
    if reference not in batches:
        parser.error(f"--reference-batch {reference} is not among --batches {batches}")
    return cli.exit_code_of(lambda: run(args, batches, reference))


if __name__ == "__main__":
    sys.exit(main())
