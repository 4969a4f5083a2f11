"""The latency lookup table: interpolation, exact sums of parts, dense lines, calibration, a killed
build resumed from its part probes, part-probe keys made of the parts' fields, the table of real
probes round-tripped."""
import dataclasses
import json
import logging

import numpy as np
import pytest

from genet_jax.arch.spec import UnitConfig
from genet_jax.latency import timing
from genet_jax.latency.parts import StemPart, TailPart, UnitPart
from genet_jax.latency.timing import DeviceIdentity, ProbeSettings
from genet_jax.nas.candidates import predict_latency, sample_candidates
from genet_jax.nas.calibration import rows_near_budget
from genet_jax.nas.latency_table import (LatencyTable, PartProbeCache, _bilinear, _ProjectedUnit, build_latency_table,
                                         part_key, stage_input_sizes)
from genet_jax.nas.space import BlockType, make_block
from tests.nas_helpers import MASTER, SPACE


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
    def part_ms(part, shape, settings):
        return 1e-3 * (1 + abs(hash((part.key(), shape))) % 1000)

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
    tail = TailPart(MASTER.final_width, MASTER.num_classes)
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

    def part_ms(part, shape, settings):  # deterministic, distinct per part
        calls.append(shape)
        return 1e-3 * (len(part.key()) + sum(shape))

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


# A device no host reports, so that keys do not depend on the host running the test.
KEY_TEST_DEVICE = DeviceIdentity("cpu", "cpu", "0.0.0")
# The measurement context's fingerprint of ProbeSettings(batch=8) on KEY_TEST_DEVICE: the part of
# the key that is not the part's, identical to the keys stored before parts were keyed by their fields.
CONTEXT_FINGERPRINT = "c6ebc9d4471fdf41"


def test_part_keys_are_made_of_the_parts_fields(monkeypatch):
    monkeypatch.setattr(timing, "current_device", lambda: KEY_TEST_DEVICE)
    settings, shape, unit = ProbeSettings(batch=8), (8, 8, 8, 8), UnitConfig("BL", 8, 16, 4, 2, 3)
    key = part_key(UnitPart(unit), shape, settings)
    assert key == f"unit BL 8->16 mid4 k3 s2 projection@[8, 8, 8, 8]/{CONTEXT_FINGERPRINT}"
    assert part_key(UnitPart(UnitConfig("BL", 8, 16, 4, 2, 3)), shape, ProbeSettings(batch=8)) == key
    assert part_key(StemPart(8, 3, 2), (8, 16, 16, 3), settings).startswith("stem w8 k3 s2@[8, 16, 16, 3]/")
    assert part_key(TailPart(32, 10), (8, 2, 2, 16), settings).startswith("tail w32 classes10@[8, 2, 2, 16]/")
    changed = [UnitPart(dataclasses.replace(unit, **{field: value})) for field, value in (
        ("block_type", "DW"), ("in_width", 16), ("width", 24), ("mid_width", 8), ("stride", 1), ("kernel_size", 5))]
    keys = {part_key(part, shape, settings) for part in changed} | {
        part_key(UnitPart(unit), (8, 16, 16, 8), settings), part_key(UnitPart(unit), (4, 8, 8, 8), settings),
        part_key(UnitPart(unit), shape, ProbeSettings(batch=8, dtype="bfloat16"))}
    assert len(keys | {key}) == len(changed) + 3 + 1  # any field, the input or a setting: another key
    square = UnitConfig("XX", 16, 16, 16, 1, 3)  # a stride-1 unit, timed with and without its projection
    assert part_key(UnitPart(_ProjectedUnit(*dataclasses.astuple(square))), shape, settings) == \
        part_key(UnitPart(square), shape, settings).replace("@", " projection@")


def test_part_probes_keyed_by_a_module_repr_are_ignored_with_one_line(tmp_path, caplog):
    path = tmp_path / "parts_r16.json"
    current = f"stem w8 k3 s2@[8, 16, 16, 3]/{CONTEXT_FINGERPRINT}"
    stored_by_an_older_version = ("_Layer( # attributes dtype = float32 conv_impl = 'taps' stem = (8, 3, 2) "
                                  f"unit = None )@[8, 16, 16, 3]/{CONTEXT_FINGERPRINT}")
    path.write_text(json.dumps({stored_by_an_older_version: 1.0, current: 2.0}))
    with caplog.at_level(logging.WARNING, "genet_jax.search"):
        cache = PartProbeCache(str(path), lambda *_: 3.0)
    (message,) = [r.getMessage() for r in caplog.records]
    assert message.startswith(f"{path}: 1 part probes keyed by a Flax module's repr") and "\n" not in message
    assert cache.entries == {current: 2.0}
    caplog.clear()
    path.write_text(json.dumps({current: 2.0}))
    with caplog.at_level(logging.WARNING, "genet_jax.search"):
        PartProbeCache(str(path))
    assert not caplog.records


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


def test_near_budget_rows_are_drawn_from_the_window_and_filled_with_the_nearest():
    """The table check always gets its probes: random rows within 0.7..1.3 of the budget, then the rows
    nearest to it in ratio when the window holds too few; never row 0 (the MasterNet)."""
    predicted = np.array([1.0, 0.2, 0.95, 1.1, 5.0, 1.25, 0.5, 3.0])
    in_window = {2, 3, 5}
    drawn = rows_near_budget(predicted, 1.0, 2, seed=0)
    assert len(drawn) == 2 and set(drawn) <= in_window and drawn == sorted(drawn)
    assert drawn == rows_near_budget(predicted, 1.0, 2, seed=0)
    assert rows_near_budget(predicted, 1.0, 5, seed=0) == [2, 3, 5, 6, 7]  # 0.5 and 3.0: ratio 2 and 3
    assert rows_near_budget(predicted, 100.0, 2, seed=0) == [4, 7]  # none near a far budget: the nearest
    assert rows_near_budget(predicted, 1.0, 20, seed=0) == [1, 2, 3, 4, 5, 6, 7]
    assert rows_near_budget(predicted, 1.0, 0, seed=0) == []
