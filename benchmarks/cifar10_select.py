"""Choose a CIFAR-10 recipe on the holdout, then train it once on all 50,000 images and read the
test split once: the candidates below run side by side as `cifar10_train.py --validation` trials
(25 epochs each, the shipped budget), the one with the highest holdout top-1 of its default weights
(the EMA where on) wins, the earlier candidate on a tie, and `cifar10_train.py` runs it as the
final. The rule is fixed before any result is seen, so the test split takes no part in choosing.

    python benchmarks/cifar10_select.py [--round N] [--parallel N] [--machine-override=--config.key=value ...]

`--machine-override`s (input workers, threads) change how fast a run goes, not what it computes:
the batches are the same bit for bit (tests/test_input_workers.py). Logs: workdirs/cifar10_select/;
the choice: benchmarks/results/cifar10_selection_round<N>.json; each run: cifar10_trials.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from configs.cifar10 import CIFAR_GENET_SMALL, cifar_genet  # noqa: E402

TRAIN_SCRIPT = os.path.join(REPO, "benchmarks", "cifar10_train.py")
RESULTS = os.path.join(REPO, "benchmarks", "results")
LOGS = os.path.join(REPO, "workdirs", "cifar10_select")
EMA_DECAY = 0.999


def widened(stem: int, widths: tuple[int, int, int], final: int) -> str:
    return json.dumps(cifar_genet(stem, widths, final, second_xx_depth=2))


def model_override(spec: str) -> str:
    return f"--config.model={spec}"


EMA = f"--config.optim.ema_decay={EMA_DECAY}"
SMALL = model_override(json.dumps(CIFAR_GENET_SMALL))  # round 1's "shipped network": the one shipped then
ERASE = "--config.augment.random_erase_prob=0.25"
DEEP = model_override(widened(32, (64, 128, 256), 512))
WIDE_1_5 = model_override(widened(48, (96, 192, 384), 768))
WIDE_2 = model_override(widened(64, (128, 256, 512), 1024))
WIDE_3 = model_override(widened(96, (192, 384, 768), 1536))
NO_SMOOTHING = "--config.augment.label_smoothing=0.0"
BATCH_128 = "--config.batch_size=128"
# round -> {name: overrides of configs/cifar10.py}, in the order that breaks ties. Round 1 ran on an
# H200 (README: CIFAR-10); round 2 is written before any of its results, from round 1's lesson that
# width was the lever (88.6% -> 89.8% holdout) and erasing was not.
ROUNDS = {
    1: {
        "shipped network + EMA": [SMALL, EMA],
        "XX128 x2 + EMA": [DEEP, EMA],
        "XX128 x2 + EMA + random erasing 0.25": [DEEP, EMA, ERASE],
        "1.5x wide, XX192 x2 + EMA + random erasing 0.25": [WIDE_1_5, EMA, ERASE],
        "2x wide, XX256 x2 + EMA": [WIDE_2, EMA],
        "2x wide, XX256 x2 + EMA + random erasing 0.25": [WIDE_2, EMA, ERASE],
    },
    2: {
        "2x wide, XX256 x2 + EMA": [WIDE_2, EMA],  # round 1's choice, again: the control
        "3x wide, XX384 x2 + EMA": [WIDE_3, EMA],
        "2x wide, XX256 x2 + EMA, no label smoothing": [WIDE_2, EMA, NO_SMOOTHING],
        "3x wide, XX384 x2 + EMA, no label smoothing": [WIDE_3, EMA, NO_SMOOTHING],
        "2x wide, XX256 x2 + EMA, batch 128": [WIDE_2, EMA, BATCH_128],
        "3x wide, XX384 x2 + EMA, batch 128": [WIDE_3, EMA, BATCH_128],
    },
}


def run_all(commands: dict[str, list[str]], parallel: int, env: dict) -> dict[str, int]:
    """Run the commands `parallel` at a time; name -> exit code. Logs under LOGS."""
    os.makedirs(LOGS, exist_ok=True)
    waiting, running, codes = list(commands.items()), {}, {}
    while waiting or running:
        while waiting and len(running) < parallel:
            name, command = waiting.pop(0)
            log = open(os.path.join(LOGS, "".join(c if c.isalnum() else "_" for c in name) + ".log"), "w")
            running[name] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env), log)
        for name, (process, log) in list(running.items()):
            if process.poll() is not None:
                codes[name] = process.returncode
                log.close()
                del running[name]
                print(f"{name}: exit {process.returncode}", flush=True)
        time.sleep(1)
    return codes


def trial_records(names: set[str], since: float) -> dict[str, dict]:
    path = os.path.join(RESULTS, "cifar10_trials.json")
    records = json.load(open(path)) if os.path.isfile(path) else []
    return {r["name"]: r for r in records if r["name"] in names and r.get("finished_at", 0) >= since}


def choose(records: dict[str, dict], candidates: dict[str, list[str]]) -> str:
    """The highest holdout top-1; the earlier candidate on a tie."""
    order = [name for name in candidates if name in records]
    return max(order, key=lambda name: (records[name]["top1"], -order.index(name)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--round", type=int, choices=sorted(ROUNDS), default=max(ROUNDS), help="candidate table")
    parser.add_argument("--parallel", type=int, default=1, help="trials at once (one GPU holds several)")
    parser.add_argument("--machine-override", action="append", default=[],
                        help="a --config.key=value that only changes speed (workers, threads); repeatable")
    parser.add_argument("--final-machine-override", action="append", default=None,
                        help="the final run's own speed overrides (it runs alone: more workers); default: the "
                             "trials' --machine-override")
    args = parser.parse_args()
    started, candidates = time.time(), ROUNDS[args.round]
    trial_env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}  # several processes share one GPU
    trials = {name: [sys.executable, TRAIN_SCRIPT, "--validation", f"--name={name}", *overrides,
                     *args.machine_override]
              for name, overrides in candidates.items()}
    codes = run_all(trials, args.parallel, trial_env)
    records = trial_records(set(candidates), started)
    if not records:
        sys.exit(f"no trial finished (exit codes {codes}); logs in {LOGS}")
    chosen = choose(records, candidates)
    print(f"chosen on the holdout: {chosen} ({records[chosen]['top1']:.4f})", flush=True)
    final_name = f"final: {chosen}"
    final_machine = args.machine_override if args.final_machine_override is None else args.final_machine_override
    selection = {"round": args.round, "rule": "highest holdout top-1 of the default weights; the earlier "
                                              "candidate on a tie", "candidates": candidates,
                 "holdout_top1": {n: r["top1"] for n, r in records.items()}, "trial_exit_codes": codes,
                 "chosen": chosen, "machine_overrides": args.machine_override,
                 "final_machine_overrides": final_machine}
    write_selection(selection)  # before the final: a final cut short still leaves the choice
    final_codes = run_all({final_name: [sys.executable, TRAIN_SCRIPT, f"--name={final_name}",
                                        *candidates[chosen], *final_machine]}, 1, dict(os.environ))
    write_selection({**selection, "final_exit_code": final_codes[final_name], "wall_seconds": time.time() - started})
    if final_codes[final_name] != 0:
        sys.exit(f"the final run failed (exit {final_codes[final_name]}); log in {LOGS}")


def write_selection(selection: dict) -> None:
    with open(os.path.join(RESULTS, f"cifar10_selection_round{selection['round']}.json"), "w") as f:
        json.dump(selection, f, indent=2)

if __name__ == "__main__":
    main()
