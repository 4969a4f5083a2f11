"""The CIFAR-10 results page (docs/results/cifar10.md): the final training run of configs/cifar10.py,
the round's recipe choice on a holdout, and every run, from cifar10_train.json, cifar10_trials.json
and cifar10_selection_round1.json in benchmarks/results/. benchmarks/results_pages.py writes it."""
from __future__ import annotations

import os

from benchmarks.results_markdown import Results, image, page, pct, provenance_lines, table

CIFAR_PLOT = "cifar10_trials.png"
SPEED_ONLY = ("data.num_threads", "data.worker_count", "progress_bar")  # overrides that change no result
CHANGE_NAMES = {"optim.ema_decay": "EMA {}", "augment.random_erase_prob": "random erasing {}",
                "num_epochs": "{} epochs", "augment.label_smoothing": "label smoothing {}"}
CIFAR_SOURCES = ["cifar10_train.json", "cifar10_trials.json", "cifar10_selection_round1.json", CIFAR_PLOT]
SECONDS_PER_MINUTE = 60

CIFAR_INTRO = [
    "`python benchmarks/cifar10_train.py` trains `configs/cifar10.py` on CIFAR-10 (read from JPEG files, decoded "
    "once into memory) and evaluates once, at the end. The network follows the paper's principle at CIFAR "
    "scale: full-conv XX super-blocks while the feature maps are large (32 -> 16 -> 8), BL and DW super-blocks "
    "once they are 4x4, and a stem of stride 1 because the inputs are 32x32.", "",
    "How a recipe is chosen: a trial (`--validation --name NAME [--config.key=value ...]`) trains on 45,000 "
    "training images and evaluates on a seeded holdout of the other 5,000; a final run (the same command "
    "without `--validation`) trains on all 50,000 and reads the test split once. "
    "`python benchmarks/cifar10_select.py --round R --parallel N` runs a round's candidates as trials side by "
    "side, takes the highest holdout top-1 by a rule fixed before the results, then runs that candidate's "
    "final; a round's test split cannot be read a second time without `--force`. Overrides that only change "
    "speed (input workers and threads) leave the batches bit for bit the same.", ""]


def network_label(model: dict) -> str:
    """The super-blocks of a network as TYPE+width x depth ("XX128 x1, XX256 x2, BL512 x2")."""
    return ", ".join(f"{b['block_type']}{b['width']} x{b['depth']}" for b in model["blocks"])


def network_counts(model: dict) -> str:
    """"params M, MACs M" of a network spec (genet_jax's spec arithmetic)."""
    import genet_jax
    from genet_jax.arch.spec import NetworkSpec

    spec = NetworkSpec.from_dict(model)
    return f"{genet_jax.spec_params(spec) / 1e6:.2f} M params, {genet_jax.spec_macs(spec) / 1e6:.0f} M MACs"


def recipe_changes(overrides: list[str]) -> str:
    """The overrides of configs/cifar10.py that change the result, in words (the network aside)."""
    changes = []
    for override in overrides:
        key, _, value = override.removeprefix("--config.").partition("=")
        if key == "optim.ema_decay" and float(value) == 0:
            changes.append("no EMA")
        elif key not in SPEED_ONLY and key != "model":
            changes.append(CHANGE_NAMES.get(key, key + " {}").format(value))
    return ", ".join(changes) or "-"


def standard_error(top1: float, count: int) -> str:
    """One binomial standard error of a top-1 measured on `count` images, in points."""
    return f"{100 * (top1 * (1 - top1) / count) ** 0.5:.2f}"


def cifar_final(run: dict) -> list[str]:
    optim, augment = run["recipe"]["optim"], run["recipe"]["augment"]
    rows = [["test top-1 (default weights: " + ("EMA" if run["ema_top1"] is not None else "raw") + ")",
             pct(run["top1"])], ["test top-1, raw weights", pct(run["raw_top1"])], ["test top-5", pct(run["top5"])],
            ["test images", f"{run['count']:,}"], ["epochs / steps", f"{run['epochs']:.2f} / {run['steps']:,}"],
            ["wall time (decoding, compilation and the test evaluation included)",
             f"{run['wall_seconds'] / SECONDS_PER_MINUTE:.1f} min"],
            ["train images/s", f"{run['train_images_per_second']:,.0f}"],
            ["network", f"{network_label(run['model'])}; {network_counts(run['model'])}"],
            ["optimizer", f"SGD{' Nesterov' if optim['nesterov'] else ''}, momentum {optim['momentum']}, batch "
                          f"{run['batch_size']}, peak lr {optim['lr_per_256'] * run['batch_size'] / 256:g} (warm-up "
                          f"{optim['warmup_epochs']:g} epochs, then cosine), weight decay {optim['weight_decay']:g}"
                          f", EMA {optim['ema_decay']:g}"],
            ["augmentation", f"pad-{augment['crop_padding']} crop, flip, label smoothing "
                             f"{augment['label_smoothing']:g}, random erasing {augment['random_erase_prob']:g}; "
                             "flip test-time augmentation: "
                             f"{'yes' if run['recipe']['eval_flip_tta'] else 'no'}"]]
    return ["## The final run", "", *table(["run", run["name"]], rows, "ll"), "",
            *provenance_lines(run["provenance"]), ""]


def cifar_round(selection: dict, trials: list[dict], final: dict) -> list[str]:
    by_name = {r["name"]: r for r in trials}
    rows = [[("**" + name + "**") if name == selection["chosen"] else name,
             network_label(by_name[name]["model"]) if name in by_name else "-", recipe_changes(overrides),
             pct(selection["holdout_top1"][name])] for name, overrides in selection["candidates"].items()]
    lines = [f"## Round {selection['round']}'s choice", "", f"Rule, fixed before the trials ran: {selection['rule']}.",
             "", *table(["candidate", "network", "overrides", "holdout top-1"], rows, "lllr"), "",
             f"Chosen: **{selection['chosen']}**; its final run read the test split once: "
             f"{pct(selection['final_test_top1'])} top-1 (the final run above).", "", "The trials and the choice:", "",
             *provenance_lines(selection["provenance"])]
    if selection.get("final_provenance", final["provenance"]) != final["provenance"]:
        lines += ["", "The final run:", "", *provenance_lines(selection["final_provenance"])]
    return lines + [""]


def cifar_runs(trials: list[dict]) -> list[str]:
    machines = list(dict.fromkeys(r["provenance"]["machine"] for r in trials))
    rows = [[i, r["name"], r["split"], f"{network_label(r['model'])} ({network_counts(r['model'])})",
             recipe_changes(r["overrides"]), f"{r['epochs']:.3g}", pct(r["top1"]), pct(r["raw_top1"]),
             standard_error(r["top1"], r["count"]), f"{r['wall_seconds'] / SECONDS_PER_MINUTE:.1f}",
             chr(ord("A") + machines.index(r["provenance"]["machine"])), r["provenance"]["date"]]
            for i, r in enumerate(trials, start=1)]
    short = [r for r in trials if r["epochs"] < 1]
    lines = ["## Every run", "", *table(["#", "run", "evaluated on", "network", "overrides", "epochs", "top-1",
                                         "top-1, raw", "± s.e.", "wall (min)", "machine", "date"], rows,
                                        "rlllllrrrrll"), "",
             "Overrides: of `configs/cifar10.py` as it was at the run's date, besides the network and those that "
             "only change speed. Top-1: of the default weights (the EMA where on); ± s.e.: one binomial standard "
             "error of it, in points, on that many images. Wall times of runs that shared a machine are not "
             "speeds.", ""]
    if short:
        lines += [f"Runs {', '.join(str(trials.index(r) + 1) for r in short)} trained for less than one epoch: they "
                  "check a command and measure nothing.", ""]
    lines += ["Machines:", "", *(f"- {chr(ord('A') + i)}: {m}" for i, m in enumerate(machines)), "",
              '??? note "The command of each run"', ""]
    return lines + [f"    {i}. `{r['provenance']['command']}`" for i, r in enumerate(trials, start=1)] + [""]


def cifar10_page(results: Results) -> str:
    trials = results.load("cifar10_trials.json")
    final = results.load("cifar10_train.json")
    body = [*CIFAR_INTRO, *cifar_final(final),
            *cifar_round(results.load("cifar10_selection_round1.json"), trials, final), *cifar_runs(trials)]
    if os.path.isfile(os.path.join(results.root, CIFAR_PLOT)):
        body += ["Top-1 against multiply-adds of every run at the shipped epoch budget (holdout trials as dots, "
                 "finals on the test split as stars, raw weights hollow):", "",
                 image("CIFAR-10 top-1 against multiply-adds", CIFAR_PLOT), ""]
    return page("CIFAR-10", CIFAR_SOURCES, body)
