"""Which XLA:CPU options help GENet inference here: each setting runs the latency probe
(`python -m genet_jax.latency`, the paper's protocol) in a fresh process with its XLA_FLAGS, on the
same network, batch and resolution; prints ms/image and the ratio to the default.

    python benchmarks/xla_cpu_options.py [--arch genet_normal] [--batch 64] [--resolution 192] [--runs 30]

Writes benchmarks/results/xla_cpu_options.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.machine import provenance  # noqa: E402  (JAX stays unimported: each setting runs in its own process)

# (label, XLA_FLAGS, extra probe arguments)
SETTINGS = [
    ("default (conv_ops kernels)", "", []),
    ("lax convs only", "", ["--conv-impl", "lax"]),
    ("BN folded", "", ["--fold-bn"]),
    ("bfloat16 compute", "", ["--dtype", "bfloat16"]),
    ("XNNPACK fusions (conv, dot)", "--xla_cpu_experimental_xnn_fusion_type=individual_convolution,individual_dot",
     []),
    ("oneDNN fusions (conv, dot)", "--xla_cpu_experimental_onednn_fusion_type=individual_convolution,individual_dot",
     []),
    ("YNNPACK off", "--xla_cpu_experimental_ynn_fusion_type=", []),
    ("fast math", "--xla_cpu_enable_fast_math=true", []),
]


def probe(arch: str, batch: int, resolution: int, runs: int, flags: str, extra: list[str]) -> dict:
    env = {**os.environ, "XLA_FLAGS": " ".join(filter(None, [os.environ.get("XLA_FLAGS", ""), flags]))}
    command = [sys.executable, "-m", "genet_jax.latency", "--arch", arch, "--batch", str(batch), "--resolution",
               str(resolution), "--runs", str(runs), "--json", *extra]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="genet_normal")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--resolution", type=int, default=192)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--batches", default="16,32", help="also probe the default at these batch sizes")
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "xla_cpu_options.json"))
    args = parser.parse_args()
    settings = SETTINGS + [(f"batch {b} (ms/image)", "", ["--batch", str(b)])
                           for b in (int(v) for v in args.batches.split(",") if v)]
    rows = []
    for label, flags, extra in settings:
        result = probe(args.arch, args.batch, args.resolution, args.runs, flags, extra)
        rows.append({"setting": label, "xla_flags": flags, "args": extra, **result})
        shown = f"{result['ms_per_image']:.3f} ms/image, compile {result['compile_seconds']:.1f} s" \
            if "error" not in result else f"failed: {result['error']}"
        print(f"{label:34s} {shown}", flush=True)
    base = rows[0].get("ms_per_image")
    print("\n| setting | XLA_FLAGS / options | ms/image | vs default |\n|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['setting']} | `{r['xla_flags'] or ' '.join(r['args'])}` | failed | |")
        else:
            print(f"| {r['setting']} | `{r['xla_flags'] or ' '.join(r['args']) or '-'}` | {r['ms_per_image']:.3f} | "
                  f"{base / r['ms_per_image']:.2f}x |")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"arch": args.arch, "batch": args.batch, "resolution": args.resolution, "runs": args.runs,
                   "rows": rows, "provenance": provenance()}, f, indent=2)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
