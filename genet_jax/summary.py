"""`python -m genet_jax.summary NAME_OR_JSON [--resolution R] [--num-classes N] [--json]`

Prints the network the way the paper's Table 2 reads: one row per super-block with its output
shape, parameters and multiply-adds, then totals.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional

from tabulate import tabulate

from genet_jax import cli
from genet_jax.arch.counting import count_spec
from genet_jax.arch.registry import resolve_spec
from genet_jax.arch.spec import NetworkSpec


def summary_rows(spec: NetworkSpec, resolution: Optional[int] = None) -> list[dict]:
    counts = count_spec(spec, resolution)
    layout = [dict(type="Conv", d=1, c=spec.stem_width, s=spec.stem_stride, k=spec.stem_kernel_size, r=None)]
    layout += [dict(type=b.block_type, d=b.depth, c=b.width, s=b.stride, k=b.kernel_size, r=b.ratio)
               for b in spec.blocks]
    layout += [dict(type="Conv", d=1, c=spec.final_width, s=1, k=1, r=None),
               dict(type="FC", d=1, c=spec.num_classes, s=None, k=None, r=None)]
    return [dict(name=c.name, **row, out_shape=list(c.out_shape), params=c.params, macs=c.macs)
            for row, c in zip(layout, counts)]


def format_table(spec: NetworkSpec, resolution: Optional[int] = None) -> str:
    rows = summary_rows(spec, resolution)
    blank = lambda v: "" if v is None else v  # noqa: E731
    body = [[r["name"], r["type"], r["d"], r["c"], blank(r["s"]), blank(r["k"]), blank(r["r"]),
             "x".join(str(v) for v in r["out_shape"]), f"{r['params']:,}", f"{r['macs'] / 1e6:,.1f} M"]
            for r in rows]
    params, macs = sum(r["params"] for r in rows), sum(r["macs"] for r in rows)
    body.append(["total", "", "", "", "", "", "", "", f"{params:,}", f"{macs / 1e9:.3f} G"])
    return tabulate(body, headers=["", "type", "d", "c", "s", "k", "r", "output HxWxC", "params", "MACs"],
                    colalign=("left", "left") + ("right",) * 8)


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser("python -m genet_jax.summary", __doc__)
    parser.add_argument("model", help="registered name, spec .json, or authors' structure-string .txt")
    parser.add_argument("--resolution", type=int, help="input resolution (default: the spec's)")
    parser.add_argument("--num-classes", type=int, help="classes of the head (default: the spec's)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def run(args: argparse.Namespace) -> int:
    spec = resolve_spec(args.model, num_classes=args.num_classes, resolution=args.resolution)
    if args.json:
        rows = summary_rows(spec)
        print(json.dumps({"model": args.model, "resolution": spec.resolution,
                          "params": sum(r["params"] for r in rows), "macs": sum(r["macs"] for r in rows),
                          "rows": rows, "spec": spec.to_dict()}, indent=2))
    else:
        print(f"{args.model} @ {spec.resolution}x{spec.resolution}, {spec.num_classes} classes")
        print(format_table(spec))
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return cli.exit_code_of(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
