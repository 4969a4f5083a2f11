"""benchmarks/cifar10_select.py without training: the fixed selection rule, the records it reads, and
that every candidate of every round is a valid override of configs/cifar10.py (a typo would only
show on a GPU lease otherwise)."""
import json

import pytest

from benchmarks import cifar10_select
from configs.cifar10 import CIFAR_GENET, get_config
from genet_jax.arch.counting import spec_macs
from genet_jax.arch.spec import NetworkSpec


def test_the_highest_holdout_top1_wins_and_the_earlier_candidate_breaks_a_tie():
    candidates = {"a": [], "b": [], "c": []}
    assert cifar10_select.choose({"a": {"top1": 0.5}, "b": {"top1": 0.7}, "c": {"top1": 0.6}}, candidates) == "b"
    assert cifar10_select.choose({"c": {"top1": 0.7}, "b": {"top1": 0.7}}, candidates) == "b"
    assert cifar10_select.choose({"c": {"top1": 0.7}}, candidates) == "c"  # a trial that failed is not chosen


def test_only_this_runs_trials_are_read(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar10_select, "RESULTS", str(tmp_path))
    records = [{"name": "a", "top1": 0.9, "finished_at": 10.0}, {"name": "a", "top1": 0.5, "finished_at": 30.0},
               {"name": "b", "top1": 0.8}, {"name": "z", "top1": 1.0, "finished_at": 40.0}]
    (tmp_path / "cifar10_trials.json").write_text(json.dumps(records))
    assert cifar10_select.trial_records({"a", "b"}, since=20.0) == {"a": records[1]}


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


def test_the_shipped_network_is_round_ones_choice():
    chosen = json.loads(cifar10_select.WIDE_2.removeprefix("--config.model="))
    assert chosen == CIFAR_GENET and get_config().optim.ema_decay == cifar10_select.EMA_DECAY
    assert spec_macs(NetworkSpec.from_json(json.dumps(CIFAR_GENET))) == pytest.approx(266e6, rel=0.01)
