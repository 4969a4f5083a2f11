"""`python -m genet_jax.summary`: the Table-2-style report and its JSON form."""
import json
import subprocess
import sys

import pytest

import genet_jax as g
from genet_jax import summary


def test_table_for_genet_normal(capsys):
    assert summary.main(["genet_normal", "--resolution", "192"]) == 0
    out = capsys.readouterr().out
    assert "genet_normal @ 192x192" in out
    for row in ("stem", "stage0", "stage4", "final", "head"):
        assert row in out
    assert "21,142,920" in out and "2.208 G" in out
    assert "12x12x640" in out  # output of the BL super-block at 192


def test_json_totals(capsys):
    assert summary.main(["genet_large", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["params"] == 31_078_280
    assert data["macs"] == pytest.approx(4.557e9, rel=0.005)
    assert data["resolution"] == 256
    assert sum(r["params"] for r in data["rows"]) == data["params"]
    assert [r["type"] for r in data["rows"]] == ["Conv", "XX", "XX", "BL", "DW", "DW", "Conv", "FC"]


def test_spec_file_and_unknown_name(tmp_path, capsys):
    path = tmp_path / "mine.json"
    g.resolve_spec("table6_net3").replace(num_classes=10).save(path)
    assert summary.main([str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"][-1]["c"] == 10
    assert summary.main(["no_such_net"]) == 2
    assert "unknown architecture 'no_such_net'" in capsys.readouterr().err


def test_runs_as_module():
    result = subprocess.run([sys.executable, "-m", "genet_jax.summary", "genet_light", "--json"],
                            capture_output=True, text=True, check=True)
    assert json.loads(result.stdout)["params"] == 8_173_761
