"""JAX vs PyTorch on this machine, in one run, by the paper's protocol (warm-up, 30 timed runs,
highest and lowest 10% dropped, mean of the rest):

  1. GENet-normal inference, batch 64, 192x192, float32, eval mode: this project (lax convs; the
     CPU conv kernels of genet_jax.models.conv_ops; plus BN folding) against the project's PyTorch module
     (eager, torch's default threads; NCHW, channels_last, and BN-folded channels_last).
  2. One SGD training step of GENet-light (forward, backward, update; BN in training mode), same
     batch and resolution in both frameworks.
  3. Compile times, and achieved GFLOP/s against the measured float32 matmul peak.

    python benchmarks/speed_vs_pytorch.py [--train-batch 32] [--runs 30] [--quick]

Writes benchmarks/results/speed_vs_pytorch.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import torch  # noqa: E402

import genet_jax as g  # noqa: E402
from benchmarks.machine import provenance  # noqa: E402
from configs.common import base_config  # noqa: E402
from genet_jax.interop.torch_model import TorchGENet  # noqa: E402
from genet_jax.latency import probe_latency  # noqa: E402
from genet_jax.latency.timing import time_runs, trimmed_mean  # noqa: E402
from genet_jax.training import optim, steps  # noqa: E402


def matmul_peak(runs: int, size: int = 2048) -> float:
    a = jnp.asarray(np.random.default_rng(0).standard_normal((size, size), np.float32))
    f = jax.jit(lambda a: a @ a)
    return 2 * size ** 3 / trimmed_mean(time_runs(lambda: f(a), runs, 3)) / 1e9


def torch_time(fn, runs: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return trimmed_mean(times)


def jax_inference(args) -> list[dict]:
    spec = g.resolve_spec("genet_normal", resolution=args.resolution)
    rows = []
    variables = g.init_variables(g.create_model(spec))
    for label, conv_impl, fold in [("JAX, lax convs", "lax", False), ("JAX, conv_ops kernels", "taps", False),
                                   ("JAX, conv_ops kernels + BN folded", "taps", True)]:
        result = probe_latency(spec, args.batch, dtype="float32", fold_bn=fold, conv_impl=conv_impl,
                               runs=args.runs, warmup=3, variables=variables, rounds=1)  # as torch's: one round
        rows.append({"task": "inference", "framework": "jax", "variant": label, "seconds": result.batch_ms / 1e3,
                     "compile_seconds": result.compile_seconds})
        print(f"  {label}: {result.batch_ms:.1f} ms/batch (compile {result.compile_seconds:.1f} s)",
              file=sys.stderr, flush=True)
    return rows


def torch_inference(args) -> list[dict]:
    spec = g.resolve_spec("genet_normal", resolution=args.resolution)
    x = np.random.default_rng(0).standard_normal((args.batch, args.resolution, args.resolution, 3), np.float32)
    rows = []
    torch.manual_seed(0)
    model = TorchGENet(spec).eval()
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    for label, channels_last, fold in [("PyTorch eager, NCHW", False, False),
                                       ("PyTorch eager, channels_last", True, False),
                                       ("PyTorch eager, channels_last + BN folded", True, True)]:
        if fold:
            model.fold_bn()
        m = model.to(memory_format=torch.channels_last) if channels_last else model
        inp = images.to(memory_format=torch.channels_last) if channels_last else images
        with torch.inference_mode():
            seconds = torch_time(lambda: m(inp), args.runs)
        rows.append({"task": "inference", "framework": "torch", "variant": label, "seconds": seconds})
        print(f"  {label}: {seconds * 1e3:.1f} ms/batch", file=sys.stderr, flush=True)
    return rows


def train_inputs(args):
    spec = g.resolve_spec("genet_light", resolution=args.resolution)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (args.train_batch, args.resolution, args.resolution, 3), dtype=np.uint8)
    y = rng.integers(0, spec.num_classes, (args.train_batch,)).astype(np.int32)
    config = base_config()
    config.augment.random_resized_crop = False
    return spec, args.train_batch, x, y, config


def jax_training(args) -> list[dict]:
    spec, batch, x, y, config = train_inputs(args)
    rows = []
    data, key = {"image": jnp.asarray(x), "label": jnp.asarray(y)}, jax.random.PRNGKey(0)
    schedule = optim.learning_rate_schedule(config.optim, batch, 1000, 100)
    tx = optim.make_optimizer(config.optim, schedule)
    for label, conv_impl in [("JAX, lax convs", "lax"), ("JAX, conv_ops kernels", "taps")]:
        model = g.create_model(spec, conv_impl=conv_impl, zero_init_last_bn=True)
        state = steps.init_state(g.init_variables(model), tx)
        step = jax.jit(steps.make_train_step(model, tx, config, schedule), donate_argnums=(0,))
        start = time.perf_counter()
        compiled = step.lower(state, data, key, None).compile()
        compile_seconds = time.perf_counter() - start
        holder = [state]

        def run():
            holder[0], metrics = compiled(holder[0], data, key, None)
            return metrics["loss"]

        seconds = trimmed_mean(time_runs(run, args.runs, 3))
        rows.append({"task": "train_step", "framework": "jax", "variant": label, "seconds": seconds,
                     "compile_seconds": compile_seconds})
        print(f"  {label}: {seconds * 1e3:.1f} ms/step (compile {compile_seconds:.1f} s)", file=sys.stderr,
              flush=True)
    return rows


def torch_training(args, channels_last: bool) -> list[dict]:
    spec, _, x, y, config = train_inputs(args)
    label = TORCH_TRAIN_LABELS[channels_last]
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0)
    labels = torch.from_numpy(y.astype(np.int64))
    torch.manual_seed(0)
    model = TorchGENet(spec).train()
    if channels_last:
        model, images = model.to(memory_format=torch.channels_last), images.to(memory_format=torch.channels_last)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": config.optim.weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}], lr=0.01, momentum=0.9, nesterov=True)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        opt.step()

    seconds = torch_time(step, args.runs)
    print(f"  {label}: {seconds * 1e3:.1f} ms/step", file=sys.stderr, flush=True)
    return [{"task": "train_step", "framework": "torch", "variant": label, "seconds": seconds}]


TORCH_TRAIN_LABELS = {False: "PyTorch eager, NCHW", True: "PyTorch eager, channels_last"}
WORKERS = {"jax_inference": jax_inference, "torch_inference": torch_inference, "jax_training": jax_training,
           "torch_training_nchw": lambda args: torch_training(args, False),
           "torch_training_channels_last": lambda args: torch_training(args, True)}


def run_worker(name: str, argv: list[str]) -> list[dict]:
    """Each framework measures in its own process: their thread pools never share one, and a crash
    in one is reported instead of ending the run."""
    done = subprocess.run([sys.executable, os.path.abspath(__file__), *argv, "--worker", name],
                          stdout=subprocess.PIPE, stderr=None, text=True)
    if done.returncode != 0:
        print(f"  worker {name} failed (exit code {done.returncode}); recorded, not timed", flush=True)
        return [{"task": "failed", "worker": name, "exit_code": done.returncode}]
    return json.loads(done.stdout.strip().splitlines()[-1])


def add_rates(rows: list[dict], args) -> None:
    inference_flops = 2 * g.spec_macs(g.resolve_spec("genet_normal", resolution=args.resolution)) * args.batch
    # a training step is taken as 3x the forward multiply-adds (forward, input and weight gradients)
    train_flops = 3 * 2 * g.spec_macs(g.resolve_spec("genet_light", resolution=args.resolution)) * args.train_batch
    for row in rows:
        if row["task"] == "inference":
            row.update(batch=args.batch, resolution=args.resolution, network="genet_normal",
                       ms_per_image=row["seconds"] * 1e3 / args.batch,
                       gflops_per_second=inference_flops / row["seconds"] / 1e9)
        else:
            row.update(batch=args.train_batch, resolution=args.resolution, network="genet_light",
                       images_per_second=args.train_batch / row["seconds"],
                       gflops_per_second=train_flops / row["seconds"] / 1e9)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--train-batch", type=int, default=32)
    parser.add_argument("--resolution", type=int, default=192)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="batch 8, resolution 96, 10 runs: a smoke run")
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "speed_vs_pytorch.json"))
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.batch, args.train_batch, args.resolution, args.runs = 8, 8, 96, 10
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args)))
        return 0
    forwarded = [f"--batch={args.batch}", f"--train-batch={args.train_batch}", f"--resolution={args.resolution}",
                 f"--runs={args.runs}"]
    print(f"JAX {jax.__version__} on {jax.devices()[0].device_kind}; torch {torch.__version__} with "
          f"{torch.get_num_threads()} threads; {os.cpu_count()} CPUs ({platform.processor() or platform.machine()})")
    peak = matmul_peak(args.runs)
    print(f"float32 matmul peak (2048^2, jitted): {peak:.0f} GFLOP/s", flush=True)
    print(f"GENet-normal inference, batch {args.batch}, {args.resolution}x{args.resolution}, float32:", flush=True)
    rows = run_worker("jax_inference", forwarded) + run_worker("torch_inference", forwarded)
    print(f"GENet-light training step, batch {args.train_batch}, {args.resolution}x{args.resolution}, float32:",
          flush=True)
    rows += (run_worker("jax_training", forwarded) + run_worker("torch_training_nchw", forwarded)
             + run_worker("torch_training_channels_last", forwarded))
    failures = [r for r in rows if r["task"] == "failed"]
    rows = [r for r in rows if r["task"] != "failed"]
    add_rates(rows, args)
    summary = {}
    for task in ("inference", "train_step"):
        mine = [r for r in rows if r["task"] == task]
        best_jax = min((r for r in mine if r["framework"] == "jax"), key=lambda r: r["seconds"])
        torch_default = next(r for r in mine if r["framework"] == "torch")
        best_torch = min((r for r in mine if r["framework"] == "torch"), key=lambda r: r["seconds"])
        summary[task] = {"best_jax": best_jax["variant"], "best_torch": best_torch["variant"],
                         "speedup_vs_torch_default": torch_default["seconds"] / best_jax["seconds"],
                         "speedup_vs_best_torch": best_torch["seconds"] / best_jax["seconds"]}
    print("\n| task | framework | variant | ms | GFLOP/s | % of matmul peak |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['task']} | {r['framework']} | {r['variant']} | {r['seconds'] * 1e3:.1f} | "
              f"{r['gflops_per_second']:.0f} | {100 * r['gflops_per_second'] / peak:.0f}% |")
    for task, s in summary.items():
        print(f"{task}: best JAX ({s['best_jax']}) is {s['speedup_vs_torch_default']:.2f}x PyTorch eager default "
              f"(NCHW) and {s['speedup_vs_best_torch']:.2f}x the best PyTorch variant ({s['best_torch']})")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"jax": jax.__version__, "torch": torch.__version__, "device": jax.devices()[0].device_kind,
                   "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                   "matmul_peak_gflops": peak, "args": vars(args), "rows": rows, "failed_workers": failures,
                   "summary": summary, "provenance": provenance(device=jax.devices()[0].device_kind)}, f, indent=2)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
