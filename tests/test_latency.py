"""The latency probe (the paper's protocol) and the measurement tools: statistics on a fake timer,
ordering of two networks of clearly different cost, and every CSV/plot tool on tiny networks. The
platform's protocol and "auto" kernels are read from this host, so the tests hold on a CPU or a GPU."""
import itertools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import genet_jax as g
from genet_jax.interop import pth_files
from genet_jax.checkpoint import save_model_checkpoint
from genet_jax.latency import probe_latencies, probe_latency, timing_variables
from genet_jax.latency.cli import main as latency_main
from genet_jax.latency.timing import CPU_PROTOCOL, ProbeSettings, platform_protocol, time_runs, trimmed_mean
from genet_jax.measure import batch_sweep, block_profile, kernel_rank
from genet_jax.models.conv_ops import resolve_conv_impl
from tests.helpers import FakeTimer, random_variables, read_csv, tiny


def test_trimmed_mean_drops_top_and_bottom_ten_percent():
    samples = [1.0] * 24 + [100.0, 200.0, 300.0] + [0.001, 0.002, 0.003]
    assert trimmed_mean(samples) == pytest.approx(1.0)  # 30 runs: 3 dropped at each end
    assert trimmed_mean([5.0, 1.0, 3.0]) == pytest.approx(3.0)  # 10% of 3 rounds down: nothing dropped
    assert trimmed_mean(list(range(10)), 0.2) == pytest.approx(4.5)
    with pytest.raises(ValueError):
        trimmed_mean([])
    with pytest.raises(ValueError):
        trimmed_mean([1.0], 0.5)


def test_time_runs_on_a_fake_timer():
    durations = [0.5, 0.1, 0.2, 0.3]
    timer = FakeTimer(durations)
    calls = itertools.count()
    times = time_runs(lambda: next(calls), runs=4, warmup=2, timer=timer)
    assert times == pytest.approx(durations)
    assert next(calls) == 6  # 2 warm-up calls, untimed, then 4 timed


@pytest.mark.compat
def test_probe_reports_per_image_latency_by_the_protocol():
    durations = [0.010] * 26 + [5.0, 6.0, 1e-6, 2e-6]  # outliers at both ends are dropped
    result = probe_latency(tiny(), batch=4, runs=30, warmup=1, timer=FakeTimer(durations), rounds=1)
    assert result.batch_ms == pytest.approx(10.0)
    assert result.ms_per_image == pytest.approx(2.5)
    assert result.images_per_second == pytest.approx(400.0)
    assert result.runs == 30 and result.trim == 0.1 and result.batch == 4 and result.resolution == 16
    assert result.platform == jax.devices()[0].platform and result.jax_version and result.compile_seconds > 0
    assert result.params == g.spec_params(g.resolve_spec(tiny()))


def test_rounds_keep_the_fastest_round():
    # a slow spell shifts a whole round; trimming inside the round cannot remove it, the fastest round does
    durations = [0.020] * 30 + [0.010] * 28 + [9.0, 9.0] + [0.015] * 30
    round_ms = [20.0, 10.0, 15.0]  # each round's trimmed mean
    result = probe_latency(tiny(), batch=4, runs=30, warmup=1, timer=FakeTimer(durations), rounds=3)
    assert result.batch_ms == pytest.approx(10.0) and result.rounds == 3
    single = probe_latency(tiny(), batch=4, runs=30, warmup=1, timer=FakeTimer(durations), rounds=1)
    assert single.batch_ms == pytest.approx(20.0) and single.rounds == 1
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        probe_latency(tiny(), batch=4, runs=3, warmup=0, rounds=0)
    assert CPU_PROTOCOL.rounds == 3
    default = probe_latency(tiny(), batch=4, runs=30, warmup=1, timer=FakeTimer(durations))
    rounds_here = platform_protocol(jax.devices()[0].platform).rounds  # the paper's 1 on a GPU
    assert default.rounds == rounds_here and default.batch_ms == pytest.approx(min(round_ms[:rounds_here]))


def test_probe_latencies_interleave_rounds_so_a_spell_costs_each_network_one_round():
    # a slow spell over the first 2 rounds timed: interleaved (A1 B1 A2 B2 ...), it covers the first
    # round of each network and both keep a clean round; measured one after the other (A1 A2 B1 B2)
    # it would have covered both of A's rounds
    spell = [0.030] * 10 + [0.030] * 10
    clean = [0.010] * 10 + [0.020] * 10 + [0.010] * 10 + [0.020] * 10
    ticks = []
    settings = ProbeSettings(batch=4, runs=10, warmup=1, trim=0.0, rounds=3)
    ms = probe_latencies([tiny(), tiny(width=16)], settings, timer=FakeTimer(spell + clean), progress=ticks.append)
    assert ms == [pytest.approx(10.0 / 4), pytest.approx(20.0 / 4)] and ticks == [1] * 6
    sequential = [probe_latency(t, batch=4, runs=10, warmup=1, trim=0.0, rounds=2, timer=FakeTimer(d)).batch_ms
                  for t, d in ((tiny(), spell), (tiny(width=16), [0.020] * 20))]
    assert sequential[0] == pytest.approx(30.0)  # what interleaving avoids
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        probe_latencies([tiny()], ProbeSettings(batch=4, rounds=0))


def test_timing_variables_match_the_initialiser_in_tree_shape_and_dtype():
    model = g.create_model("genet_light", resolution=32)
    x = jnp.zeros(model.input_shape(2), jnp.float32)
    real = g.init_variables(model, 0, batch_size=2)
    host = timing_variables(lambda x: model.init(jax.random.PRNGKey(0), x, train=False), x)
    assert jax.tree_util.tree_structure(host) == jax.tree_util.tree_structure(real)
    for a, b in zip(jax.tree_util.tree_leaves(host), jax.tree_util.tree_leaves(real)):
        assert (a.shape, a.dtype) == (b.shape, b.dtype)
    assert all(np.all(v == 1) for v in jax.tree_util.tree_leaves(host["batch_stats"])[1::2])  # (mean, var)
    logits = model.apply(host, jnp.asarray(np.random.default_rng(0).standard_normal(x.shape), jnp.float32))
    assert np.all(np.isfinite(logits)) and 0.01 < float(jnp.std(logits)) < 100  # O(1) activations


def test_probe_orders_a_small_and_a_large_network():
    if jax.default_backend() != "cpu":  # checked here: a skipif would start the backend while collecting
        pytest.skip("at batch 8 on an accelerator both tiny networks are a few kernel launches each: launch "
                    "overhead, not multiply-adds, sets their latency")
    small = probe_latency(tiny(8, 32), batch=8, runs=10, warmup=2, rounds=1)
    large = probe_latency(tiny(64, 32), batch=8, runs=10, warmup=2, rounds=1)  # ~60x the multiply-adds
    assert large.macs > 30 * small.macs
    assert large.ms_per_image > small.ms_per_image


@pytest.mark.parametrize("fold_bn,dtype", [(False, "float32"), (True, "float32"), (False, "bfloat16")])
@pytest.mark.compat
def test_latency_cli_json(capsys, fold_bn, dtype):
    argv = ["--arch", tiny(), "--batch", "2", "--runs", "3", "--warmup", "1", "--rounds", "1", "--dtype", dtype,
            "--json"]
    assert latency_main(argv + (["--fold-bn"] if fold_bn else [])) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["fold_bn"] is fold_bn and result["dtype"] == dtype and result["ms_per_image"] > 0
    assert result["conv_impl"] == resolve_conv_impl("auto", jax.default_backend()) and result["rounds"] == 1


def test_latency_cli_names_a_bad_arch(capsys):
    assert latency_main(["--arch", "genet_nope", "--runs", "1"]) == 2
    assert "genet_nope" in capsys.readouterr().err


@pytest.mark.parametrize("flag,value", [("--rounds", "0"), ("--runs", "0"), ("--batch", "-1"), ("--warmup", "-2")])
def test_latency_cli_names_a_bad_setting(capsys, flag, value):
    with pytest.raises(SystemExit) as exit_info:
        latency_main(["--arch", "genet_light", flag, value])
    assert exit_info.value.code == 2 and f"{flag} must be" in capsys.readouterr().err


def test_batch_sweep_writes_csv_and_plots(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert batch_sweep.main(["--arch", tiny(8), "--arch", tiny(16), "--batches", "1,2", "--runs", "3",
                             "--rounds", "1", "--out", str(out)]) == 0
    rows = read_csv(out / "latency_vs_batch.csv")
    assert len(rows) == 4 and {r["batch"] for r in rows} == {"1", "2"}
    for name in ("latency_vs_batch.png", "latency_vs_macs.png", "latency_vs_params.png"):
        assert (out / name).stat().st_size > 1000


def test_profiling_networks_follow_the_paper():
    xx = block_profile.profiling_spec("XX", 64)
    assert xx.blocks[0].depth == 5 and xx.blocks[0].stride == 1 and xx.blocks[0].kernel_size == 3
    dw = block_profile.profiling_spec("DW", 64, 0.25)  # paper width = depthwise channels, r = 1 / expansion
    assert dw.blocks[0].depth == 10 and dw.blocks[0].mid_width == 64 and dw.blocks[0].width == 16
    bl = block_profile.profiling_spec("BL", 64, 0.5)
    assert bl.blocks[0].depth == 10 and bl.blocks[0].mid_width == 32 and bl.blocks[0].width == 64
    with pytest.raises(g.SpecError):
        block_profile.profiling_spec("XY", 64)


def test_block_profile_writes_csv_and_plot(tmp_path):
    out = tmp_path / "profile"
    assert block_profile.main(["--widths", "8", "--ratios", "0.5,1", "--batch", "2", "--resolution", "16",
                               "--runs", "3", "--rounds", "1", "--out", str(out)]) == 0
    rows = read_csv(out / "block_profile.csv")
    assert len(rows) == 1 + 2 + 2  # XX per width; BL and DW per width and ratio
    assert {(r["block_type"], r["ratio"]) for r in rows} == {("XX", "1.0"), ("BL", "0.5"), ("BL", "1.0"),
                                                             ("DW", "0.5"), ("DW", "1.0")}
    assert (out / "block_profile.png").stat().st_size > 1000


def test_normalized_singular_values_see_low_rank():
    rng = np.random.default_rng(0)
    low_rank = (rng.standard_normal((16, 2)) @ rng.standard_normal((2, 8 * 9))).reshape(16, 8, 3, 3)
    kernel = np.transpose(low_rank, (2, 3, 1, 0))  # (c_out, c_in, k, k) -> flax (k, k, c_in, c_out)
    values = kernel_rank.normalized_singular_values(kernel)
    assert values[0] == pytest.approx(1.0) and len(values) == 16
    assert values[1] > 1e-3 and np.all(values[2:] < 1e-10)


@pytest.mark.parametrize("source", ["checkpoint", "pth"])
def test_kernel_rank_on_a_checkpoint_or_pytorch_file(tmp_path, source):
    spec = g.resolve_spec(tiny(8, 16))
    variables = random_variables(g.MasterNet(spec))
    if source == "checkpoint":
        save_model_checkpoint(tmp_path / "ckpt", spec, variables)
        path = tmp_path / "ckpt"
    else:
        path = str(tmp_path / "net.pth")
        pth_files.export_pth(spec, variables, "official", path)  # + the spec sidecar the importer reads
    out = tmp_path / "rank"
    assert kernel_rank.main([str(path), "--out", str(out)]) == 0
    rows = read_csv(out / "kernel_rank.csv")
    by_stage = {s: [r for r in rows if r["stage"] == s] for s in ("0", "1")}
    assert len(by_stage["0"]) == 8  # XX conv2: (8, 8*9) -> 8 singular values
    assert len(by_stage["1"]) == 9  # DW conv2 is depthwise: (48, 1*3*3) -> 9 singular values
    assert by_stage["1"][0]["c_out"] == "48" and by_stage["1"][0]["block_type"] == "DW"
    assert float(by_stage["0"][0]["normalized_singular_value"]) == pytest.approx(1.0)
    assert (out / "kernel_rank.png").stat().st_size > 1000
