"""Choose a CIFAR-10 recipe on the holdout, then train it once on all 50,000 images and read the
test split once: the candidates below run side by side as `cifar10_train.py --validation` trials
(25 epochs each, the shipped budget), the one with the highest holdout top-1 of its default weights
(the EMA where on) wins, the earlier candidate on a tie, and `cifar10_train.py` runs it as the
final. The rule is fixed before any result is seen, so the test split takes no part in choosing.

    python benchmarks/cifar10_select.py [--round N] [--stage all|trials|final] [--parallel N]
        [--machine-override=--config.key=value ...] [--final-machine-override=--config.key=value ...]

`--machine-override`s (input workers, threads) change how fast a run goes, not what it computes:
the batches are the same bit for bit (tests/test_input_workers.py). Each run keeps its checkpoints in
workdirs/cifar10_round<N>/ (the same command resumes a round that was cut short), its log in
workdirs/cifar10_round<N>/logs/; the choice: benchmarks/results/cifar10_selection_round<N>.json; each
run: cifar10_trials.json; every 25-epoch run plotted: cifar10_trials.png. The test split is read by
one final per round: a second is refused unless --force.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.machine import provenance  # noqa: E402
from configs.cifar10 import CIFAR_GENET_SMALL, cifar_genet, genet_32, get_config  # noqa: E402
from genet_jax.errors import INPUT_ERROR_EXIT_CODE  # noqa: E402
from genet_jax.outputs import file_slug, new_figure, save_figure, write_json  # noqa: E402

TRAIN_SCRIPT = os.path.join(REPO, "benchmarks", "cifar10_train.py")
RESULTS = os.path.join(REPO, "benchmarks", "results")
WORKDIRS = os.path.join(REPO, "workdirs")
SHIPPED = get_config()
EMA_DECAY = SHIPPED.optim.ema_decay
BUDGET_EPOCHS = round(SHIPPED.num_epochs)  # the shipped budget, the one every trial and final runs
TARGET_TOP1 = 0.90
POLL_SECONDS = 1.0
RUN_FAILED_EXIT_CODE = 1
PLOT_SIZE, MARKER_AREA, MILLION = (6.5, 4.5), 80, 1e6
RULE = "highest holdout top-1 of the default weights (EMA where on); the earlier candidate on a tie"


def model_override(spec: dict) -> str:
    return f"--config.model={json.dumps(spec)}"


def two_xx_units(stem: int, widths: tuple[int, int, int], final: int) -> str:
    """The first shipped layout at other widths, its second XX stage two units deep."""
    return model_override(cifar_genet(stem, widths, final, second_xx_depth=2))


EMA = f"--config.optim.ema_decay={EMA_DECAY}"
SMALL = model_override(CIFAR_GENET_SMALL)  # round 1's "shipped network": the one shipped then
ERASE = "--config.augment.random_erase_prob=0.25"
XX128_X2 = two_xx_units(32, (64, 128, 256), 512)
WIDE_1_5 = two_xx_units(48, (96, 192, 384), 768)
WIDE_2 = two_xx_units(64, (128, 256, 512), 1024)
WIDE_3 = two_xx_units(96, (192, 384, 768), 1536)
# XX also at 32x32, as ResNet-18's first stage (5.9 M / 4.3 M params, 341 M / 373 M MACs)
FULL_RES_A = model_override(genet_32(64, 1024, [("XX", 1, 64, 1), ("XX", 2, 128, 2), ("XX", 1, 256, 2),
                                                ("BL", 2, 512, 2), ("DW", 2, 512, 1)]))
FULL_RES_B = model_override(genet_32(64, 1024, [("XX", 2, 64, 1), ("XX", 2, 128, 2), ("BL", 2, 256, 2),
                                                ("DW", 2, 512, 2)]))
# round -> {name: overrides of configs/cifar10.py}, in the order that breaks ties. Round 1 ran on an
# H200 (README: CIFAR-10); round 2 is written before any of its results: round 1 gained about a point
# from 67 M to 150 M+ multiply-adds (width) and nothing clear from erasing, so round 2 tries more
# width and, instead, resolution: XX stages that start at 32x32.
ROUNDS = {
    1: {
        "shipped network + EMA": [SMALL, EMA],
        "XX128 x2 + EMA": [XX128_X2, EMA],
        "XX128 x2 + EMA + random erasing 0.25": [XX128_X2, EMA, ERASE],
        "1.5x wide, XX192 x2 + EMA + random erasing 0.25": [WIDE_1_5, EMA, ERASE],
        "2x wide, XX256 x2 + EMA": [WIDE_2, EMA],
        "2x wide, XX256 x2 + EMA + random erasing 0.25": [WIDE_2, EMA, ERASE],
    },
    2: {
        "round 2: 2x wide, XX256 x2 + EMA (round 1's choice, the control)": [WIDE_2, EMA],
        "round 2: 3x wide, XX384 x2 + EMA": [WIDE_3, EMA],
        "round 2: XX64 at 32x32, XX128 x2, XX256, BL512 x2, DW512 x2 + EMA": [FULL_RES_A, EMA],
        "round 2: XX64 x2 at 32x32, XX128 x2, BL256 x2, DW512 x2 + EMA": [FULL_RES_B, EMA],
    },
}


def run_all(commands: dict[str, list[str]], parallel: int, env: dict, logs: str) -> dict[str, int]:
    """Run the commands `parallel` at a time; name -> exit code. Stopping this stops them too."""
    os.makedirs(logs, exist_ok=True)
    waiting, running, codes = list(commands.items()), {}, {}
    try:
        while waiting or running:
            while waiting and len(running) < parallel:
                name, command = waiting.pop(0)
                log = open(os.path.join(logs, file_slug(name) + ".log"), "w")
                running[name] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env), log)
            for name, (process, log) in list(running.items()):
                if process.poll() is not None:
                    codes[name] = process.returncode
                    log.close()
                    del running[name]
                    print(f"{name}: exit {process.returncode}", flush=True)
            time.sleep(POLL_SECONDS)
    finally:
        for process, log in running.values():
            process.terminate()  # the trainer checkpoints on SIGTERM: a rerun resumes it
            process.wait()
            log.close()
    return codes


def trial_records(names: set[str], since: float) -> dict[str, dict]:
    path = os.path.join(RESULTS, "cifar10_trials.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        records = json.load(f)
    return {r["name"]: r for r in records if r["name"] in names and r.get("finished_at", 0) >= since}


def choose(records: dict[str, dict], candidates: dict[str, list[str]]) -> str:
    """The highest holdout top-1; max() keeps the first of equals, the earlier candidate."""
    return max((name for name in candidates if name in records), key=lambda name: records[name]["top1"])


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--round", type=int, choices=sorted(ROUNDS), default=max(ROUNDS), help="candidate table")
    parser.add_argument("--stage", choices=("all", "trials", "final"), default="all",
                        help="trials: run them and save the choice; final: run the saved choice's final")
    parser.add_argument("--parallel", type=int, default=1, help="trials at once (one GPU holds several)")
    parser.add_argument("--machine-override", action="append", default=[],
                        help="a --config.key=value that only changes speed (workers, threads); repeatable")
    parser.add_argument("--final-machine-override", action="append", default=None,
                        help="the final run's own speed overrides (it runs alone: more workers); default: the "
                             "trials' --machine-override")
    parser.add_argument("--force", action="store_true",
                        help="choose again over a saved choice, or read the test split again after a final")
    args = parser.parse_args(argv)
    if args.parallel < 1:
        parser.error(f"--parallel must be >= 1, got {args.parallel}")
    return args


def selection_provenance(args, record: dict) -> dict:
    """This command's provenance, on the machine the trial or final `record` names (the driver never
    starts JAX itself: on a GPU it would take the memory its runs need)."""
    machine = record.get("provenance", {}).get("machine")
    return provenance(machine, argv=[os.path.abspath(__file__), *args.argv])


def run_trials(args, candidates: dict[str, list[str]]) -> dict:
    """The round's trials side by side, then the choice (saved and returned). Every trial must have
    finished: a choice among the survivors would depend on which runs crashed."""
    started, round_dir = time.time(), os.path.join(WORKDIRS, f"cifar10_round{args.round}")
    trial_env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}  # several processes share one GPU
    trials = {name: [sys.executable, TRAIN_SCRIPT, "--validation", f"--name={name}",
                     f"--workdir={os.path.join(round_dir, file_slug(name))}", *overrides, *args.machine_override]
              for name, overrides in candidates.items()}
    codes = run_all(trials, args.parallel, trial_env, os.path.join(round_dir, "logs"))
    records = trial_records(set(candidates), started)
    missing = [name for name in candidates if codes.get(name) != 0 or name not in records]
    if missing:
        fail(f"no choice: trials {missing} did not finish (exit codes {codes}); logs in {round_dir}/logs",
             RUN_FAILED_EXIT_CODE)
    chosen = choose(records, candidates)
    print(f"chosen on the holdout: {chosen} ({records[chosen]['top1']:.4f})", flush=True)
    selection = {"round": args.round, "rule": RULE, "candidates": candidates,
                 "holdout_top1": {name: records[name]["top1"] for name in candidates}, "chosen": chosen,
                 "machine_overrides": args.machine_override, "trials_wall_seconds": time.time() - started,
                 "provenance": selection_provenance(args, records[chosen])}
    write_selection(selection)
    plot_best_effort()
    return selection


def run_final(args, selection: dict) -> None:
    """cifar10_train.py on all 50,000 images with the chosen overrides: the test split, read once."""
    started, chosen = time.time(), selection["chosen"]
    name = f"final: {chosen}"
    machine = args.final_machine_override or args.machine_override or selection["machine_overrides"]
    command = [sys.executable, TRAIN_SCRIPT, f"--name={name}",
               f"--workdir={os.path.join(WORKDIRS, f'cifar10_round{args.round}', 'final')}",
               *selection["candidates"][chosen], *machine]
    code = run_all({name: command}, 1, dict(os.environ), os.path.join(WORKDIRS, f"cifar10_round{args.round}", "logs"))
    record = trial_records({name}, started).get(name, {})
    write_selection({**selection, "final_machine_overrides": machine, "final_exit_code": code[name],
                     "final_test_top1": record.get("top1"), "final_wall_seconds": time.time() - started,
                     "final_provenance": selection_provenance(args, record)})
    plot_best_effort()
    if code[name] != 0:
        fail(f"the final run failed (exit {code[name]}); its log is in workdirs/cifar10_round{args.round}/logs",
             RUN_FAILED_EXIT_CODE)


def fail(message: str, code: int = INPUT_ERROR_EXIT_CODE) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def exit_on_signal(signum, frame):
    sys.exit(128 + signum)  # SystemExit: run_all's finally stops the runs in flight


def selection_path(round_number: int) -> str:
    return os.path.join(RESULTS, f"cifar10_selection_round{round_number}.json")


def read_selection(round_number: int) -> dict | None:
    path = selection_path(round_number)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def write_selection(selection: dict) -> None:
    write_json(selection_path(selection["round"]), selection)


def plot_best_effort() -> None:
    try:
        print(f"plot: {plot_trials()}", flush=True)
    except Exception as error:  # a missing matplotlib must not stop a round between its trials and final
        print(f"warning: no plot of the trials ({type(error).__name__}: {error})", file=sys.stderr)


def main(argv=None) -> None:
    args = parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)  # for the choice's provenance
    signal.signal(signal.SIGTERM, exit_on_signal)
    saved = read_selection(args.round)
    if args.stage == "final":
        if saved is None:
            fail(f"{selection_path(args.round)} not found: run --stage trials (or all) for round {args.round} first")
        selection = saved
    else:
        if saved is not None and not args.force:
            fail(f"round {args.round} has a saved choice ({selection_path(args.round)}); --force to choose again")
        selection = run_trials(args, ROUNDS[args.round])
    if args.stage != "trials":
        if selection.get("final_exit_code") == 0 and not args.force:
            fail(f"round {args.round}'s final has read the test split already; --force to read it again")
        run_final(args, selection)


def budget_runs(records: list[dict]) -> dict[str, list[tuple[float, float, float]]]:
    """split -> (MACs in millions, top-1 %, raw top-1 %) of every run at the shipped epoch budget."""
    from genet_jax.arch.counting import spec_macs
    from genet_jax.arch.spec import NetworkSpec

    return {split: [(spec_macs(NetworkSpec.from_json(json.dumps(r["model"]))) / MILLION, 100 * r["top1"],
                     100 * r["raw_top1"]) for r in records if r["split"] == split and round(r["epochs"]) == BUDGET_EPOCHS]
            for split in ("holdout", "test")}


def plot_trials(path: str | None = None) -> str:
    """Top-1 against multiply-adds of every 25-epoch run: holdout trials as dots, finals (test) as
    stars, the raw weights hollow beside the default ones."""
    with open(os.path.join(RESULTS, "cifar10_trials.json")) as f:
        runs = budget_runs(json.load(f))
    fig, (ax,) = new_figure(width=PLOT_SIZE[0], height=PLOT_SIZE[1])
    for split, marker in (("holdout", "o"), ("test", "*")):
        macs, top1, raw = zip(*runs[split]) if runs[split] else ((), (), ())
        ax.scatter(macs, top1, marker=marker, s=MARKER_AREA, label=f"{split}, default weights")
        ax.scatter(macs, raw, marker=marker, s=MARKER_AREA, facecolors="none", edgecolors="gray",
                   label=f"{split}, raw weights")
    ax.axhline(100 * TARGET_TOP1, color="red", linestyle=":", label="target")
    ax.set(xlabel="multiply-adds (M)", ylabel="top-1 (%)",
           title=f"CIFAR-10: every {BUDGET_EPOCHS}-epoch run in cifar10_trials.json")
    ax.legend(fontsize="small")
    return save_figure(fig, path or os.path.join(RESULTS, "cifar10_trials.png"))


if __name__ == "__main__":
    main()
