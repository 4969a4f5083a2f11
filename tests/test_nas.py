"""LLR-NAS steps on tiny networks: perturbation ranges and determinism, weight inheritance,
recovery of known pseudo-gradients, the latency table, the results store, budget-safe selection."""
import json
import os

import numpy as np
import pytest

from genet_jax import NetworkSpec, create_model
from genet_jax.latency import probe_latency
from genet_jax.models.network import canonical_dtype, init_variables
from genet_jax.nas import store
from genet_jax.nas.inherit import COPIED, FRESH, PARTIAL, inherit_variables
from genet_jax.nas.latency_table import (
    LatencyTable,
    PartProbeCache,
    _bilinear,
    _Tail,
    build_latency_table,
    stage_input_sizes,
)
from genet_jax.nas.regress import Sample, fit_local_linear_model, fit_quality, leave_one_out
from genet_jax.nas.select import Candidates, predict_accuracy, predict_latency, sample_candidates, select
from genet_jax.nas.space import BlockType, SearchSpace, make_block, perturbations, shard_jobs, spec_key
from genet_jax.arch.spec import SuperBlockSpec
from genet_jax.latency.timing import ProbeSettings
from tests.helpers import random_variables

MASTER = NetworkSpec.from_dict({
    "stem_width": 8, "stem_stride": 2, "final_width": 32, "num_classes": 10, "resolution": 16,
    "blocks": [{"block_type": "XX", "depth": 1, "width": 16, "stride": 2},
               {"block_type": "BL", "depth": 3, "width": 32, "stride": 2, "ratio": 0.25},
               {"block_type": "DW", "depth": 2, "width": 32, "stride": 1, "ratio": 3.0}]})
SPACE = SearchSpace()


def flat(tree, prefix=""):
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict) or hasattr(v, "items"):
            out.update(flat(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = np.asarray(v)
    return out


# ---- perturb --------------------------------------------------------------------------------
def test_perturbations_stay_in_the_papers_ranges():
    jobs = perturbations(MASTER, 9, seed=3, space=SPACE)
    assert len(jobs) == 9 * len(MASTER.blocks)
    allowed = {(t.block_type, t.kernel_size, t.ratio) for t in SPACE.block_types()}
    assert allowed == {("XX", k, 1.0) for k in (3, 5)} | {("BL", k, r) for k in (3, 5) for r in (0.25, 0.5)} | \
        {("DW", k, r) for k in (3, 5) for r in (3.0, 6.0, 9.0)}
    for job in jobs:
        original, new = MASTER.blocks[job.block], job.spec.blocks[job.block]
        assert new != original
        assert (new.block_type, new.kernel_size, new.ratio) in allowed
        assert 0.5 * original.width <= new.width <= 2 * original.width and new.width % SPACE.width_multiple == 0
        assert max(1, original.depth - 2) <= new.depth <= original.depth + 2
        assert new.stride == original.stride
        assert [b for i, b in enumerate(job.spec.blocks) if i != job.block] == \
               [b for i, b in enumerate(MASTER.blocks) if i != job.block]
    for block in range(len(MASTER.blocks)):
        keys = [job.key for job in jobs if job.block == block]
        assert len(set(keys)) == len(keys) == 9  # distinct within a super-block
    depths = {job.spec.blocks[0].depth for job in jobs if job.block == 0}
    assert depths <= {1, 2, 3}  # depth 1 - 2 clamps to 1


def test_perturbations_are_reproducible_and_seeded():
    a, b = perturbations(MASTER, 5, 0, SPACE), perturbations(MASTER, 5, 0, SPACE)
    assert [j.key for j in a] == [j.key for j in b]
    assert [j.key for j in a] != [j.key for j in perturbations(MASTER, 5, 1, SPACE)]
    more = perturbations(MASTER, 7, 0, SPACE)  # more per block keeps the earlier draws
    for block in range(3):
        assert [j.key for j in a if j.block == block] == [j.key for j in more if j.block == block][:5]


def test_shards_are_disjoint_and_cover_every_job():
    jobs = perturbations(MASTER, 4, 0, SPACE)
    shards = [shard_jobs(jobs, i, 3) for i in range(3)]
    keys = [j.key for s in shards for j in s]
    assert sorted(keys) == sorted(j.key for j in jobs) and len(set(keys)) == len(keys)
    with pytest.raises(ValueError, match="shard"):
        shard_jobs(jobs, 3, 3)


def test_width_choices_are_multiples_in_range():
    assert SPACE.widths(32).tolist() == [16, 24, 32, 40, 48, 56, 64]
    assert SPACE.widths(10).tolist() == [8, 16]  # never below one multiple
    assert SPACE.depths(1).tolist() == [1, 2, 3]


# ---- inherit --------------------------------------------------------------------------------
def variables_of(spec, seed):
    return flat(init_variables(create_model(spec, zero_init_last_bn=True), seed))


def test_inherited_tensors_are_equal_to_the_masternets():
    master_vars = random_variables(create_model(MASTER))  # host-filled: no initialiser to compile
    new = MASTER.with_block(1, SuperBlockSpec("BL", 4, 48, 2, 5, 0.25))  # deeper, wider, 5x5
    fresh = init_variables(create_model(new, zero_init_last_bn=True), 1)
    variables, report = inherit_variables(master_vars, fresh, MASTER, new)
    old, got, fresh = flat(master_vars), flat(variables), flat(fresh)
    assert set(got) == set(fresh) and all(got[p].shape == fresh[p].shape for p in got)
    for path, kind in report.items():
        if kind == COPIED:
            np.testing.assert_array_equal(got[path], old[path])
        elif kind == FRESH:
            np.testing.assert_array_equal(got[path], fresh[path])
    untouched = [p for p in got if "/stage1/" not in p and "/stage2/unit0/" not in p]
    assert untouched and all(report[p] == COPIED for p in untouched)  # every other super-block
    # width 32 -> 48: leading channels inherited, 3x3 kernel centred in the 5x5
    k_old, k_new = old["params/stage1/unit0/conv2/conv/kernel"], got["params/stage1/unit0/conv2/conv/kernel"]
    assert report["params/stage1/unit0/conv2/conv/kernel"] == PARTIAL
    np.testing.assert_array_equal(k_new[1:4, 1:4, :8, :8], k_old)
    np.testing.assert_array_equal(got["params/stage1/unit0/conv3/bn/scale"][:32],
                                  old["params/stage1/unit0/conv3/bn/scale"])
    assert report["params/stage1/unit3/conv1/conv/kernel"] == FRESH  # a new unit
    np.testing.assert_array_equal(got["params/stage1/unit3/conv3/bn/scale"], 0.0)  # starts as identity
    assert report["params/stage2/unit0/conv1/conv/kernel"] == PARTIAL  # next block sees 48 channels
    create_model(new).apply(variables, np.zeros((1, 16, 16, 3), np.float32))  # a usable tree


def test_a_type_change_initialises_that_super_block_afresh():
    master_vars = random_variables(create_model(MASTER))
    new = MASTER.with_block(1, SuperBlockSpec("DW", 3, 32, 2, 3, 3.0))
    fresh = random_variables(create_model(new), seed=1)
    _, report = inherit_variables(master_vars, fresh, MASTER, new)
    assert all(kind == FRESH for path, kind in report.items() if "/stage1/" in path)
    assert all(kind == COPIED for path, kind in report.items() if "/stage1/" not in path)


# ---- regress --------------------------------------------------------------------------------
def synthetic_samples(master, coefficients, rng, per_type=6, noise=0.0, accuracy=0.7):
    samples = []
    for (block, key), (g_d, g_c, b) in coefficients.items():
        base = master.blocks[block]
        for _ in range(per_type):
            depth = int(rng.choice(SPACE.depths(base.depth)))
            width = int(rng.choice(SPACE.widths(base.width)))
            delta = g_d * (depth - base.depth) + g_c * (width - base.width) + b + noise * rng.standard_normal()
            samples.append(Sample(block, make_block(BlockType.from_key(key), depth, width, base.stride),
                                  accuracy + delta))
    return samples


def test_regression_recovers_known_per_type_coefficients():
    coefficients = {(0, "XX-k3-r1"): (0.004, 0.0010, 0.0), (0, "BL-k5-r0.5"): (-0.002, 0.0005, -0.01),
                    (1, "BL-k3-r0.25"): (0.006, -0.0002, 0.0), (1, "DW-k3-r6"): (0.001, 0.0003, 0.02),
                    (2, "DW-k3-r3"): (-0.003, 0.0004, 0.0)}
    samples = synthetic_samples(MASTER, coefficients, np.random.default_rng(0))
    model = fit_local_linear_model(MASTER, 0.7, samples, ridge=0.0)
    for (block, key), (g_d, g_c, b) in coefficients.items():
        fit = model.fits[(block, key)]
        assert fit.g_depth == pytest.approx(g_d, abs=1e-6)   # tolerance: the tiny stabilising ridge
        assert fit.g_width == pytest.approx(g_c, abs=1e-7)
        assert fit.intercept == pytest.approx(b, abs=1e-6)
    spec = MASTER.with_block(1, make_block(BlockType.from_key("DW-k3-r6"), 2, 48, 2))
    assert model.predict(spec) == pytest.approx(0.7 + 0.001 * -1 + 0.0003 * 16 + 0.02, abs=1e-5)
    with pytest.raises(KeyError, match="super-block 0"):
        model.predict(MASTER.with_block(0, make_block(BlockType.from_key("DW-k5-r9"), 1, 16, 2)))


def test_shared_slopes_with_type_intercepts_and_held_out_predictions():
    # one slope pair per block, types differ only by intercept: the default ridge recovers it exactly,
    # and leave-one-out predictions of noise-free data are exact (Spearman 1)
    coefficients = {(1, "BL-k3-r0.25"): (0.005, 0.0002, 0.0), (1, "BL-k5-r0.25"): (0.005, 0.0002, -0.01),
                    (1, "DW-k3-r3"): (0.005, 0.0002, 0.015)}
    samples = synthetic_samples(MASTER, coefficients, np.random.default_rng(1), per_type=4)
    model = fit_local_linear_model(MASTER, 0.7, samples)
    assert model.fits[(1, "DW-k3-r3")].intercept == pytest.approx(0.015, abs=1e-6)
    held_out = leave_one_out(MASTER, 0.7, samples)
    np.testing.assert_allclose(held_out, [s.accuracy for s in samples], atol=1e-6)
    quality = fit_quality([s.accuracy for s in samples], held_out)
    assert quality["pairs"] == len(samples) and quality["spearman"] == pytest.approx(1.0)
    noisy = synthetic_samples(MASTER, coefficients, np.random.default_rng(1), per_type=4, noise=0.01)
    assert fit_quality([s.accuracy for s in noisy], leave_one_out(MASTER, 0.7, noisy))["rmse"] > 1e-3


def test_a_type_seen_once_has_no_held_out_prediction():
    samples = [Sample(0, make_block(BlockType.from_key("DW-k3-r3"), 1, 16, 2), 0.6),
               Sample(0, make_block(BlockType.from_key("XX-k3-r1"), 2, 16, 2), 0.72)]
    held_out = leave_one_out(MASTER, 0.7, samples)
    assert np.isnan(held_out[0]) and np.isfinite(held_out[1])


# ---- store ----------------------------------------------------------------------------------
def test_results_store_survives_a_line_cut_short(tmp_path):
    path = store.shard_file(str(tmp_path), 0, 1)
    store.append_result(path, {"key": "a", "accuracy": 0.5})
    with open(path, "a") as f:
        f.write('{"key": "b", "accur')  # killed mid-write
    store.append_result(path, {"key": "c", "accuracy": 0.7})
    store.append_result(store.shard_file(str(tmp_path), 1, 2), {"key": "a", "accuracy": 0.1})
    results = store.load_results(str(tmp_path))
    assert sorted(results) == ["a", "c"] and results["a"]["accuracy"] == 0.5


# ---- latency table and selection -------------------------------------------------------------
def test_bilinear_interpolation_is_exact_on_planes():
    xs, ys = np.asarray([8.0, 16.0, 32.0]), np.asarray([16.0, 24.0])
    table = 0.5 + 0.1 * xs[:, None] + 0.03 * ys[None, :]
    x, y = np.asarray([8.0, 12.0, 30.0]), np.asarray([16.0, 20.0, 23.0])
    np.testing.assert_allclose(_bilinear(xs, ys, table, x, y), 0.5 + 0.1 * x + 0.03 * y)


def test_table_sums_the_parts_of_a_structure_exactly():
    # a synthetic timer, linear in (in_width, width) plus a projection-shortcut cost: the table
    # must reproduce the exact sum over the structure's own units (first unit of a stride-1 block
    # with in_width == width has no projection), the stem and the tail
    def part_ms(module, shape, settings):
        unit = getattr(module, "unit", None)
        if unit is None:
            return 0.5 if shape[-1] == 3 else 0.01 * shape[-1]  # stem | tail over its input width
        return 1e-3 * (1 + unit.in_width / 8 + unit.width / 16 + shape[1]) + \
            (0.7 if unit.has_projection else 0.0) + {"XX": 0.0, "BL": 0.1, "DW": 0.2}[unit.block_type]

    keys = [["XX-k3-r1"], ["BL-k3-r0.25", "DW-k3-r3"], ["DW-k3-r3", "BL-k5-r0.5"]]
    table = build_latency_table(MASTER, keys, SPACE, 16, ProbeSettings(), grid_points=3, progress=False,
                                timer=part_ms)
    for blocks in ([("XX", 3, 1.0, 2, 24), ("DW", 3, 3.0, 3, 40), ("DW", 3, 3.0, 2, 40)],   # stride 1, c == c_in
                   [("XX", 3, 1.0, 1, 16), ("BL", 3, 0.25, 1, 56), ("BL", 5, 0.5, 4, 24)]):  # stride 1, c != c_in
        spec = MASTER.replace(blocks=tuple(make_block(BlockType(t, k, r), d, w, b.stride)
                                           for (t, k, r, d, w), b in zip(blocks, MASTER.blocks)))
        sizes = stage_input_sizes(spec)
        expected = 0.5 + 0.01 * spec.blocks[-1].width
        for i in range(len(spec.blocks)):
            for j, unit in enumerate(spec.units(i)):
                expected += part_ms(type("M", (), {"unit": unit})(), (8, sizes[i + (j > 0)]), None)
        assert table.predict_spec(spec) == pytest.approx(expected, rel=1e-9)


def test_dense_line_parts_are_exact_at_every_allowed_width():
    # a timer with no structure in width (as XLA:CPU's cost can be): with line_points <= 0 the
    # repeated units, the tail and the stem-fed first units are read back exactly at every allowed
    # width; first units fed by a searched width stay on the coarse grid
    def part_ms(module, shape, settings):
        return 1e-3 * (1 + abs(hash((" ".join(repr(module).split()), shape))) % 1000)

    keys = [["XX-k3-r1"], ["BL-k3-r0.25"], ["DW-k3-r3"]]
    table = build_latency_table(MASTER, keys, SPACE, 16, ProbeSettings(), grid_points=2, progress=False,
                                timer=part_ms, line_points=0)
    for i, block in enumerate(MASTER.blocks):
        allowed = SPACE.widths(block.width)
        np.testing.assert_array_equal(table.rest_grids[i], allowed)
        assert len(table.out_grids[i]) == (len(allowed) if i == 0 else 2)
    sizes = stage_input_sizes(MASTER)
    for width in SPACE.widths(MASTER.blocks[1].width):  # each repeated unit is its own measurement
        two, one = (table.block_latency(1, "BL-k3-r0.25", depth, 16, width) for depth in (2, 1))
        repeated = table.blocks[1]["BL-k3-r0.25"]["rest"][list(table.rest_grids[1]).index(width)]
        assert two - one == pytest.approx(repeated)
    tail = _Tail(MASTER.final_width, MASTER.num_classes, canonical_dtype("float32"), table.settings.conv_impl)
    for j, width in enumerate(SPACE.widths(MASTER.blocks[-1].width)):
        assert table.tail[j] == part_ms(tail, (64, sizes[-1], sizes[-1], int(width)), None)
    coarse = build_latency_table(MASTER, keys, SPACE, 16, ProbeSettings(), grid_points=2, progress=False,
                                 timer=part_ms)
    assert len(coarse.rest_grids[2]) == 2 and len(coarse.out_grids[0]) == 2
    again = LatencyTable.from_dict(json.loads(json.dumps(table.to_dict())))
    assert again.to_dict() == table.to_dict()


def test_calibration_fits_a_power_law_and_a_robust_scale():
    table = LatencyTable(16, ProbeSettings(), 0.0, [], [], [], np.zeros(1), [])
    raw = np.asarray([0.1, 0.3, 1.0, 3.0])
    table.calibrate(raw, 2.0 * raw ** 0.8)  # a spread of latencies: the power law is recovered
    assert (table.scale, table.exponent) == (pytest.approx(2.0), pytest.approx(0.8))
    near = np.asarray([0.9, 1.0, 1.1, 1.05, 0.95])  # near one budget: a scale, robust to one slow network
    table.calibrate(near, 1.1 * near * np.asarray([1, 1, 1, 1, 1.5]))
    assert (table.scale, table.exponent) == (pytest.approx(1.1), 1.0)
    np.testing.assert_allclose(table.uncalibrated(1.1 * near), near)


@pytest.mark.compat
def test_part_probe_cache_resumes_a_killed_table_build(tmp_path):
    keys = [["XX-k3-r1"], ["BL-k3-r0.25", "DW-k3-r3"], ["DW-k3-r3"]]
    calls = []

    def part_ms(module, shape, settings):  # deterministic, distinct per part
        calls.append(shape)
        return 1e-3 * (len(repr(module)) + sum(shape))

    class Killed(Exception):
        pass

    def dies_after(n):
        def timer(module, shape, settings):
            if len(calls) >= n:
                raise Killed
            return part_ms(module, shape, settings)
        return timer

    path, settings = str(tmp_path / "parts_r16.json"), ProbeSettings()
    fresh = PartProbeCache(str(tmp_path / "fresh.json"), part_ms)
    whole = build_latency_table(MASTER, keys, SPACE, 16, settings, grid_points=3, progress=False, timer=fresh)
    total = fresh.measured  # distinct parts
    calls.clear()
    with pytest.raises(Killed):
        build_latency_table(MASTER, keys, SPACE, 16, settings, 3, progress=False,
                            timer=PartProbeCache(path, dies_after(7)))
    calls.clear()
    resumed = PartProbeCache(path, part_ms)
    table = build_latency_table(MASTER, keys, SPACE, 16, settings, 3, progress=False, timer=resumed)
    assert resumed.measured == len(calls) == total - 7  # the 7 kept before the kill are not re-timed
    assert table.to_dict() == whole.to_dict()
    again = PartProbeCache(path, part_ms)
    build_latency_table(MASTER, keys, SPACE, 16, settings, 3, progress=False, timer=again)
    assert again.measured == 0
    other = PartProbeCache(path, part_ms)  # other probe settings are other measurements
    build_latency_table(MASTER, keys, SPACE, 16, ProbeSettings(batch=8), 3, progress=False, timer=other)
    assert other.measured == total


@pytest.fixture(scope="module")
def tiny_table():
    keys = [["XX-k3-r1"], ["BL-k3-r0.25", "DW-k3-r3"], ["DW-k3-r3"]]
    settings = ProbeSettings(batch=8, runs=5, warmup=1, rounds=1)
    return keys, build_latency_table(MASTER, keys, SPACE, 16, settings, grid_points=2, progress=False)


def test_latency_table_round_trip_and_spec_prediction(tiny_table):
    keys, table = tiny_table
    assert len(table.blocks[1]) == 2 and table.blocks[1]["DW-k3-r3"]["first"].shape == (2, 2)
    again = LatencyTable.from_dict(json.loads(json.dumps(table.to_dict())))
    candidates = sample_candidates(MASTER, keys, SPACE, 50, seed=0)
    np.testing.assert_allclose(predict_latency(again, candidates, 8), predict_latency(table, candidates, 8))
    row = 7
    assert table.predict_spec(candidates.spec(MASTER, row)) == pytest.approx(
        float(predict_latency(table, candidates, 8)[row]))
    assert all(v > 0 for v in predict_latency(table, candidates, 8))


def test_selection_never_returns_a_structure_over_the_measured_budget():
    # the table (here: 0 for everyone) calls all feasible; the two most accurate are far over the
    # budget by the real probe and must be rejected, the next round's best that fits is picked
    keys = [["XX-k3-r1"], ["BL-k3-r0.5"], ["DW-k3-r6"]]
    huge, small = ([3, 5, 4], [128, 256, 256]), ([1, 1, 1], [16, 16, 16])
    candidates = Candidates(keys, np.zeros((6, 3), int), np.asarray([[1, 3, 2], huge[0], huge[0], small[0],
                                                                     small[0], small[0]]),
                            np.asarray([[16, 32, 32], huge[1], huge[1], small[1], small[1], small[1]]))
    accuracy = np.asarray([0.7, 0.99, 0.98, 0.90, 0.89, 0.88])
    master = MASTER.replace(resolution=32)

    def measure(spec):
        return probe_latency(spec, batch=16, runs=5, warmup=1, rounds=1).ms_per_image

    # a budget between the small and the huge structures by a wide margin either side, so load on
    # the machine (other test workers) cannot move a structure across it
    fast, slow = measure(candidates.spec(master, 3)), measure(candidates.spec(master, 1))
    assert slow > 8 * fast
    budget = float(np.sqrt(fast * slow))
    choice = select(master, candidates, accuracy, np.zeros(6), budget, measure, top_k=2)
    assert choice.measured_latency <= budget
    assert [m["row"] for m in choice.measured] == [1, 2, 3, 4]
    assert all(m["measured_latency"] > budget for m in choice.measured[:2])
    assert choice.row == 3 and choice.predicted_accuracy == 0.90
    with pytest.raises(RuntimeError, match="no structure fits the budget"):
        select(master, candidates, accuracy, np.ones(6), 0.5, measure)  # predicted over budget: none measured


def test_scored_candidates_respect_the_table_and_model(tiny_table):
    keys, table = tiny_table
    coefficients = {(0, "XX-k3-r1"): (0.01, 0.002, 0.0), (1, "BL-k3-r0.25"): (0.01, 0.001, 0.0),
                    (1, "DW-k3-r3"): (0.01, 0.001, 0.01), (2, "DW-k3-r3"): (0.01, 0.001, 0.0)}
    model = fit_local_linear_model(MASTER, 0.7, synthetic_samples(MASTER, coefficients, np.random.default_rng(2)))
    candidates = sample_candidates(MASTER, keys, SPACE, 500, seed=1)
    accuracy = predict_accuracy(model, candidates)
    assert accuracy[0] == pytest.approx(0.7)  # row 0 is the MasterNet
    for row in (1, 17, 300):
        assert accuracy[row] == pytest.approx(model.predict(candidates.spec(MASTER, row)), abs=1e-9)
    again = sample_candidates(MASTER, keys, SPACE, 500, seed=1)
    np.testing.assert_array_equal(candidates.widths, again.widths)


def test_spec_key_is_stable_and_structural():
    assert spec_key(MASTER) == spec_key(NetworkSpec.from_json(MASTER.to_json()))
    assert spec_key(MASTER) != spec_key(MASTER.replace(resolution=32))
    assert len(spec_key(MASTER)) == 16 and os.sep not in spec_key(MASTER)


# ---- NAS validation split --------------------------------------------------------------------
def test_holdout_split_is_seeded_disjoint_and_used_for_evaluation():
    from configs.default import get_config
    from genet_jax.data.sources import DataError, digits_source
    from genet_jax.data.subsets import holdout_split
    from genet_jax.training.config import ConfigError
    from genet_jax.training.inputs import open_sources

    source = digits_source("train")
    rest, held = holdout_split(source, 200, seed=5)
    assert len(rest) + len(held) == len(source) and len(held) == 200
    ids = lambda part: {part.records.indices[i] for i in range(len(part))}  # noqa: E731
    assert not ids(rest) & ids(held)
    assert ids(holdout_split(source, 200, seed=5)[1]) == ids(held) != ids(holdout_split(source, 200, seed=6)[1])
    np.testing.assert_array_equal(held[0][0], source[int(held.records.indices[0])][0])
    with pytest.raises(DataError, match="cannot hold out"):
        holdout_split(source, len(source), 0)

    config = get_config()
    config.data.holdout_size = 150
    config.data.eval_split = "holdout"
    train_source, eval_source = open_sources(config)
    assert len(eval_source) == 150 and len(train_source) == len(source) - 150
    config.data.holdout_size = 0
    with pytest.raises(ConfigError, match="data.eval_split"):
        open_sources(config)
