"""benchmarks/cifar10_select.py without training: the fixed selection rule, the records it reads, a
whole round through real processes (a stand-in for cifar10_train.py that appends a record), the
refusals that keep the test split read once per round, and that every candidate of every round is a
valid override of configs/cifar10.py (a typo would only show on a GPU lease otherwise)."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from benchmarks import cifar10_select
from configs.cifar10 import CIFAR_GENET, get_config
from genet_jax.arch.counting import spec_macs
from genet_jax.arch.spec import NetworkSpec
from genet_jax.errors import INPUT_ERROR_EXIT_CODE
from tests.conftest import REPO_ROOT

# cifar10_train.py's stand-in: top-1 from --config.fake_top1, exit code from --config.fake_exit
FAKE_TRAIN = textwrap.dedent("""
    import fcntl, json, os, sys, time
    args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if "=" in a)
    split = "holdout" if "--validation" in sys.argv else "test"
    path = os.path.join(os.environ["FAKE_RESULTS"], "cifar10_trials.json")
    top1 = float(args.get("config.fake_top1", 0.5))
    record = {"name": args["name"], "split": split, "top1": top1, "raw_top1": top1, "epochs": 25.0,
              "model": json.loads(args.get("config.model", "null")), "finished_at": time.time(),
              "workdir": args["workdir"]}
    with open(path + ".lock", "w") as lock:  # trials side by side append in turn, as cifar10_train.py's do
        fcntl.flock(lock, fcntl.LOCK_EX)
        records = json.load(open(path)) if os.path.exists(path) else []
        json.dump(records + [record], open(path, "w"))
    sys.exit(int(args.get("config.fake_exit", 0)))
""")


@pytest.fixture
def fake_round(tmp_path, monkeypatch):
    """RESULTS and workdirs in tmp_path, the stand-in trainer, and round 9 of three candidates."""
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    monkeypatch.setattr(cifar10_select, "RESULTS", str(tmp_path))
    monkeypatch.setattr(cifar10_select, "WORKDIRS", str(tmp_path / "workdirs"))
    monkeypatch.setattr(cifar10_select, "TRAIN_SCRIPT", str(script))
    monkeypatch.setenv("FAKE_RESULTS", str(tmp_path))
    model = f"--config.model={json.dumps(CIFAR_GENET)}"
    candidates = {"a": [model, "--config.fake_top1=0.80"], "b": [model, "--config.fake_top1=0.85"],
                  "c": [model, "--config.fake_top1=0.85"]}
    monkeypatch.setitem(cifar10_select.ROUNDS, 9, candidates)
    return tmp_path


def records(tmp_path) -> list[dict]:
    return json.loads((tmp_path / "cifar10_trials.json").read_text())


def selection(tmp_path) -> dict:
    return json.loads((tmp_path / "cifar10_selection_round9.json").read_text())


def exit_code_of(argv) -> int:
    with pytest.raises(SystemExit) as stop:
        cifar10_select.main(argv)
    return stop.value.code


def test_a_round_chooses_on_the_holdout_then_reads_the_test_split_once(fake_round, capsys):
    cifar10_select.main(["--round", "9", "--parallel", "2", "--machine-override=--config.data.worker_count=2"])
    runs = records(fake_round)
    assert sorted((r["name"], r["split"]) for r in runs) == [
        ("a", "holdout"), ("b", "holdout"), ("c", "holdout"), ("final: b", "test")]  # b: first of the tied
    assert len({r["workdir"] for r in runs}) == 4 and all("cifar10_round9" in r["workdir"] for r in runs)
    chosen = selection(fake_round)
    assert chosen["chosen"] == "b" and chosen["holdout_top1"] == {"a": 0.80, "b": 0.85, "c": 0.85}
    assert chosen["final_exit_code"] == 0 and chosen["final_test_top1"] == 0.85
    assert chosen["final_machine_overrides"] == ["--config.data.worker_count=2"]
    assert (fake_round / "cifar10_trials.png").stat().st_size > 10_000
    for argv, message in ((["--round", "9"], "has a saved choice"),
                          (["--round", "9", "--stage", "final"], "has read the test split already")):
        assert exit_code_of(argv) == INPUT_ERROR_EXIT_CODE and message in capsys.readouterr().err
    assert len(records(fake_round)) == 4  # neither refusal ran anything


def test_no_choice_is_made_when_a_trial_fails(fake_round, capsys):
    cifar10_select.ROUNDS[9]["c"].append("--config.fake_exit=1")  # appends its record, then fails
    assert exit_code_of(["--round", "9", "--parallel", "3"]) == cifar10_select.RUN_FAILED_EXIT_CODE
    assert "trials ['c'] did not finish" in capsys.readouterr().err
    assert not (fake_round / "cifar10_selection_round9.json").exists()
    assert all(r["split"] == "holdout" for r in records(fake_round))  # the test split was not read


def test_the_stages_split_a_round_over_two_calls(fake_round, capsys):
    assert exit_code_of(["--round", "9", "--stage", "final"]) == INPUT_ERROR_EXIT_CODE
    assert "cifar10_selection_round9.json not found: run --stage trials" in capsys.readouterr().err
    cifar10_select.main(["--round", "9", "--stage", "trials", "--machine-override=--config.data.worker_count=2"])
    assert [r["split"] for r in records(fake_round)] == ["holdout"] * 3
    cifar10_select.main(["--round", "9", "--stage", "final"])  # the trials' speed overrides, from the saved choice
    assert records(fake_round)[-1]["name"] == "final: b"
    assert selection(fake_round)["final_machine_overrides"] == ["--config.data.worker_count=2"]


def test_parallel_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        cifar10_select.parse_args(["--parallel", "0"])
    assert "--parallel must be >= 1" in capsys.readouterr().err


def test_only_this_runs_trials_are_read(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar10_select, "RESULTS", str(tmp_path))
    runs = [{"name": "a", "top1": 0.9, "finished_at": 10.0}, {"name": "a", "top1": 0.5, "finished_at": 30.0},
            {"name": "b", "top1": 0.8}, {"name": "z", "top1": 1.0, "finished_at": 40.0}]
    (tmp_path / "cifar10_trials.json").write_text(json.dumps(runs))
    assert cifar10_select.trial_records({"a", "b"}, since=20.0) == {"a": runs[1]}


@pytest.mark.parametrize("round_number", sorted(cifar10_select.ROUNDS))
def test_every_candidate_is_a_valid_override_of_the_shipped_config(round_number):
    config = get_config()
    for name, overrides in cifar10_select.ROUNDS[round_number].items():
        for override in overrides:
            key, value = override.removeprefix("--config.").split("=", 1)
            parent, _, leaf = key.rpartition(".")
            node = config
            for part in filter(None, parent.split(".")):
                node = node[part]
            assert leaf in node, f"{name}: {key} is not a config field"
            if key == "model":
                spec = NetworkSpec.from_json(value)
                assert spec.num_classes == 10 and spec.resolution == 32, name


def test_the_shipped_recipe_is_round_ones_recorded_choice():
    with open(os.path.join(REPO_ROOT, "benchmarks", "results", "cifar10_selection_round1.json")) as f:
        round1 = json.load(f)
    assert round1["candidates"] == cifar10_select.ROUNDS[1]  # the table that ran is the one in the code
    chosen = dict(o.removeprefix("--config.").split("=", 1) for o in round1["candidates"][round1["chosen"]])
    assert json.loads(chosen.pop("model")) == CIFAR_GENET
    assert float(chosen.pop("optim.ema_decay")) == get_config().optim.ema_decay and not chosen
    assert spec_macs(NetworkSpec.from_json(json.dumps(CIFAR_GENET))) == pytest.approx(266e6, rel=0.01)


def test_the_plot_holds_the_budget_runs_of_both_splits():
    run = {"split": "holdout", "epochs": 25.001, "top1": 0.89, "raw_top1": 0.88, "model": CIFAR_GENET}
    runs = cifar10_select.budget_runs([run, {**run, "split": "test", "top1": 0.9}, {**run, "epochs": 6.0}])
    macs = spec_macs(NetworkSpec.from_json(json.dumps(CIFAR_GENET))) / 1e6
    assert runs == {"holdout": [(macs, 89.0, 88.0)], "test": [(macs, 90.0, 88.0)]}


def test_the_selector_runs_as_a_script():
    done = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "benchmarks", "cifar10_select.py"), "--help"],
                          capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 0 and "--stage" in done.stdout
