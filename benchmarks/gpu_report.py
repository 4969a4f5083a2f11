"""The paper's Table 7 on today's GPU, against the peers, in one command (the paper's protocol:
warm-up, 30 timed runs, highest and lowest 10% dropped):

  - inference ms/image at batch 1..64, BN folded, float16 and bfloat16: GENet-light/normal/large in
    JAX (the library's probe), the same networks as this project's torch module (eager channels_last
    autocast, and torch.compile), and timm's resnet50/152, efficientnet_b0..b3, mobilenetv2_100 at
    their papers' resolutions when timm is importable;
  - training images/s of GENet-normal at 192 in bfloat16 at the largest power-of-two batch that
    fits: the trainer's jitted step against the torch module (AMP, channels_last, SGD Nesterov);
  - device logits against CPU logits of the same float32 weights, and a loss that decreases;
  - data-parallel training scaling over 1, 2, ..., all visible devices.

    python benchmarks/gpu_report.py [--out-dir DIR] [--sections a,b] [--budget-scale 1.0]
    python benchmarks/gpu_report.py --quick      # every section on a CPU with tiny settings (the suite runs it)

Writes report.json / report.csv / report.md / latency_vs_batch.png to DIR (default
benchmarks/results/gpu_report/<device>/; --quick: workdirs/gpu_report_quick/); report.json's "provenance"
(command, date, machine) is what benchmarks/results_pages.py shows beside the figures. Each section runs in a
process of its own under a time budget; what a budget cut short is listed as skipped, a crash is
recorded and the rest goes on. Needs jax, flax, optax and numpy; torch and timm where present.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from importlib import metadata

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.gpu.plan import FULL, QUICK, SECTIONS, Budget, Plan  # noqa: E402
from benchmarks.machine import provenance  # noqa: E402
from genet_jax import versions  # noqa: E402
from genet_jax.outputs import write_json  # noqa: E402

WORKER_GRACE_SECONDS = 120  # past its budget a section may still finish the measurement it started
PACKAGES = ("jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda12-plugin", "flax", "optax", "numpy", "torch", "timm")


def version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = re.findall(r"^model name\s*:\s*(.+)$", f.read(), re.MULTILINE)
        return f"{names[0]} x {os.cpu_count()}" if names else platform.processor()
    except OSError:
        return platform.processor() or platform.machine()


def nvidia_smi() -> dict:
    """Name, driver and memory of each GPU as nvidia-smi reports them ({} without nvidia-smi)."""
    if not shutil.which("nvidia-smi"):
        return {}
    done = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                          capture_output=True, text=True, timeout=60)
    gpus = [line.split(", ") for line in done.stdout.strip().splitlines() if line.strip()]
    if done.returncode != 0 or not gpus:
        return {}
    return {"device": gpus[0][0], "driver": gpus[0][1], "gpu_memory": gpus[0][2], "gpus": len(gpus)}


def host_environment() -> dict:
    installed = {name: version(name) for name in PACKAGES}
    env = {name.replace("-", "_"): v for name, v in installed.items() if "cuda" not in name}
    env["jax_cuda_plugin"] = installed["jax-cuda13-plugin"] or installed["jax-cuda12-plugin"]
    env.update(python=platform.python_version(), cpu=cpu_model(), **nvidia_smi())
    # a GPU image may carry releases outside genet_jax's ranges (then run with GENET_JAX_IGNORE_VERSIONS=1)
    env["unsupported_versions"] = [problem for problem in map(versions.check, versions.SUPPORTED) if problem]
    return env


def machine_summary(env: dict) -> str:
    """One line for the report's provenance: the GPUs (count x name, driver) and the host CPU."""
    device = env.get("device")
    if not device or device.startswith("CPU"):
        return device or f"CPU ({env['cpu']})"
    gpus = f"{env['gpus']} x {device}" if env.get("gpus") else device
    driver = f", driver {env['driver']}" if env.get("driver") else ""
    return f"{gpus}{driver}; host {env['cpu']}"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def run_worker(section: str, plan: Plan, rows_file: str) -> None:
    """In a process of its own: run one section, appending each row to `rows_file` as it is measured."""
    def emit(row: dict) -> None:
        with open(rows_file, "a") as f:
            f.write(json.dumps(row) + "\n")

    budget = Budget(plan.budgets[section])
    # Each section imports only its framework: a torch section's process never initialises JAX's
    # GPU client (and the reverse), so neither holds device memory the other needs.
    if section == "environment":
        from benchmarks.gpu import jax_sections
        row = jax_sections.environment()
        if version("torch"):
            from benchmarks.gpu import torch_sections
            row.update(torch_sections.environment())
        emit(row)
    elif SECTIONS[section] == "jax":
        from benchmarks.gpu import jax_sections
        jax_sections.SECTIONS[section](plan, emit, budget)
    else:
        from benchmarks.gpu import torch_sections
        torch_sections.SECTIONS[section](plan, emit, budget)
    if budget.skipped:
        emit({"skipped": budget.skipped})


def launch(section: str, plan: Plan, env: dict) -> dict:
    """Run a section's worker; {'status', 'seconds', 'rows', ...} whatever becomes of it."""
    if SECTIONS[section] == "torch" and not version("torch"):
        return {"status": "skipped", "reason": "torch is not installed", "rows": [], "seconds": 0.0}
    fd, rows_file = tempfile.mkstemp(prefix=f"gpu_report_{section}_", suffix=".jsonl")
    os.close(fd)
    command = [sys.executable, os.path.abspath(__file__), "--worker", section, "--plan", json.dumps(plan.to_dict()),
               "--rows-file", rows_file]
    started, stopped = time.perf_counter(), None
    try:
        done = subprocess.run(command, env=env, timeout=plan.budgets[section] + WORKER_GRACE_SECONDS)
        status = "ok" if done.returncode == 0 else "failed"
        reason = "" if done.returncode == 0 else f"worker exited with code {done.returncode} (its log is above)"
    except subprocess.TimeoutExpired:
        status, reason = "failed", f"killed after {plan.budgets[section] + WORKER_GRACE_SECONDS} s"
    except Stopped as stop:  # subprocess.run has killed the worker; keep what it measured
        status, reason, stopped = "stopped", str(stop), stop
    finally:
        with open(rows_file) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        os.remove(rows_file)
    result = {"status": status, "seconds": time.perf_counter() - started,
              "rows": [r for r in rows if "skipped" not in r]}
    result.update({"reason": reason} if reason else {})
    result.update(next(({"skipped": r["skipped"]} for r in rows if "skipped" in r), {}))
    if stopped:
        stopped.section_result = result
        raise stopped
    return result


def worker_environment(section: str, quick: bool) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if section == "environment":  # both frameworks in one process: JAX must not take 75% of the GPU
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    if quick and section == "scaling" and "xla_force_host_platform_device_count" not in env.get("XLA_FLAGS", ""):
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
    return env


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="every section with tiny settings (CPU smoke run)")
    parser.add_argument("--out-dir", default=None)
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset of: "
                        + ", ".join(SECTIONS))
    parser.add_argument("--budget-scale", type=float, default=1.0, help="multiply every section's time budget")
    parser.add_argument("--worker", choices=sorted(SECTIONS), help=argparse.SUPPRESS)
    parser.add_argument("--plan", help=argparse.SUPPRESS)
    parser.add_argument("--rows-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = set(args.sections.split(",")) - set(SECTIONS)
    if unknown:
        parser.error(f"--sections: unknown {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    if args.budget_scale <= 0:
        parser.error(f"--budget-scale must be > 0, got {args.budget_scale}")
    return args


class Stopped(Exception):
    """SIGTERM or SIGINT (a job's time limit, `timeout`, Ctrl-C): stop the section in flight, keep
    what finished. `section_result`: the stopped section's rows so far, set by `launch`."""
    section_result: dict | None = None


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_on_signal(signum, frame):
    for stop_signal in STOP_SIGNALS:  # a second signal must not cut the writing of what finished
        signal.signal(stop_signal, signal.SIG_IGN)
    raise Stopped(f"stopped by signal {signum}")


def run_sections(args, plan: Plan, environment: dict, report: dict, out_dir) -> None:
    """Run the chosen sections in order into report["sections"], saving report.json after each;
    `out_dir(environment)` names the folder once the environment section has named the device."""
    sections = report["sections"]
    for section in (s for s in SECTIONS if s in args.sections.split(",")):
        print(f"== {section}", flush=True)
        try:
            sections[section] = result = launch(section, plan, worker_environment(section, args.quick))
        except Stopped as stop:
            if stop.section_result is not None:
                sections[section] = stop.section_result
            raise
        print(f"   {result['status']} in {result['seconds']:.0f} s, {len(result['rows'])} rows"
              + (f"; {result['reason']}" if result.get("reason") else ""), flush=True)
        if section == "environment" and result["rows"]:
            environment.update(result["rows"][0])
            if environment.get("jax_platform") == "cpu":
                environment["device"] = f"CPU ({environment['cpu']})"
            environment.setdefault("device", environment.get("torch_device_name") or environment["jax_device_kind"])
        trained = [r for r in result["rows"] if section == "jax_training" and "batch" in r]
        if trained:  # torch trains at the batch JAX found to fit
            plan = dataclasses.replace(plan, train_batch_start=trained[0]["batch"])
            report["plan"] = plan.to_dict()
        write_json(os.path.join(out_dir(environment), "report.json"), report)  # a run cut short keeps this


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        run_worker(args.worker, Plan(**json.loads(args.plan)), args.rows_file)
        return 0
    plan = QUICK if args.quick else FULL
    plan = dataclasses.replace(plan, budgets={k: v * args.budget_scale for k, v in plan.budgets.items()})
    started = time.perf_counter()
    environment = host_environment()
    report = {"environment": environment, "plan": plan.to_dict(), "sections": {}, "complete": False}

    def out_dir(env: dict) -> str:
        default = os.path.join(REPO, "workdirs", "gpu_report_quick") if args.quick else \
            os.path.join(REPO, "benchmarks", "results", "gpu_report", slug(env.get("device", f"CPU ({env['cpu']})")))
        return args.out_dir or default

    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, stop_on_signal)
    try:
        run_sections(args, plan, environment, report, out_dir)
        report["complete"] = True
    except Stopped as stop:  # launch's subprocess.run has killed the section's worker
        print(f"   {stop}: the report keeps the sections that finished and the stopped one's rows", flush=True)
    for stop_signal in STOP_SIGNALS:  # from here on a signal waits until the files are written
        signal.signal(stop_signal, signal.SIG_IGN)
    environment.setdefault("device", f"CPU ({environment['cpu']})")
    report["wall_seconds"] = time.perf_counter() - started
    report["provenance"] = provenance(machine_summary(environment), None if argv is None else [__file__, *argv])
    from benchmarks.gpu.report import write_all  # after the sections: the parent keeps JAX unimported while they run

    for path in write_all(report, out_dir(environment)):
        print(path)
    failed = [name for name, s in report["sections"].items() if s["status"] == "failed"]
    print(f"report in {report['wall_seconds']:.0f} s" + (f"; failed sections: {', '.join(failed)}" if failed else "")
          + ("" if report["complete"] else "; stopped before the last section"))
    return 0 if report["complete"] and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
