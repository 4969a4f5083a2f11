"""`python -m genet_jax.latency --arch NAME_OR_SPEC [--arch ...] [--batch 64] [--resolution R] [--dtype D] [--fold-bn] [--engine jax|onnxruntime] [--json]`

ms/image, images/s, compile time, device kind and engine version of each network, by the paper's
protocol (genet_jax.latency.probes; on ONNX Runtime genet_jax.latency.onnxruntime_probe).
"""
from __future__ import annotations

import argparse
import json
from typing import Optional, Sequence

from genet_jax import cli
from genet_jax.errors import InputError
from genet_jax.latency.engines import add_engine_arguments, engine_named, probe_on
from genet_jax.latency.probes import LatencyResult
from genet_jax.latency.timing import ACCELERATOR_PROTOCOL, CPU_PROTOCOL, PAPER_RUNS


def _format(result: LatencyResult) -> str:
    return (f"{result.name}: {result.ms_per_image:.4f} ms/image ({result.images_per_second:.1f} images/s, "
            f"{result.batch_ms:.2f} ms per batch of {result.batch}) at {result.resolution}x{result.resolution} "
            f"{result.dtype}{' BN-folded' if result.fold_bn else ''}; compile {result.compile_seconds:.1f} s; "
            f"{result.device_kind} ({result.platform}), "
            f"{engine_named(result.engine).version_text(result)}; "
            f"mean of the middle {100 * (1 - 2 * result.trim):.0f}% of {result.runs} runs"
            f"{f', fastest of {result.rounds} rounds' if result.rounds > 1 else ''}")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser("python -m genet_jax.latency", __doc__)
    parser.add_argument("--arch", action="append", required=True,
                        help="registered name, spec .json / structure-string .txt, or inline JSON; repeatable")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--resolution", type=int, default=None, help="default: the spec's resolution")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--fold-bn", action="store_true", help="fold BN into the convs first (inference form)")
    parser.add_argument("--conv-impl", default="auto", choices=["auto", "lax", "taps"])
    parser.add_argument("--runs", type=int, default=PAPER_RUNS)
    parser.add_argument("--warmup", type=int, default=None,
                        help=f"warm-up runs (default: {CPU_PROTOCOL.warmup} on CPU, {ACCELERATOR_PROTOCOL.warmup} "
                             f"+ {ACCELERATOR_PROTOCOL.warmup_seconds} s on GPU/TPU)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="repeat the protocol this many times and keep the fastest round (default: "
                             f"{CPU_PROTOCOL.rounds} on CPU, whose host has slow spells; "
                             f"{ACCELERATOR_PROTOCOL.rounds} on GPU/TPU, the paper's)")
    add_engine_arguments(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object per network on stdout")
    return parser


def probe(args: argparse.Namespace, arch: str) -> LatencyResult:
    return probe_on(args.engine, arch, args.batch, args.resolution, args.dtype, fold_bn=args.fold_bn,
                    conv_impl=args.conv_impl, runs=args.runs, warmup=args.warmup, rounds=args.rounds,
                    provider=args.provider)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("batch", "runs", "rounds"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.warmup is not None and args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    status = 0
    for arch in args.arch:
        try:
            result = probe(args, arch)
        except (InputError, ValueError) as e:  # ValueError: a bad --conv-impl or --dtype value
            status = cli.report(f"--arch {arch}: {e}")
            continue
        print(json.dumps(result.to_dict()) if args.json else _format(result), flush=True)
    return status

