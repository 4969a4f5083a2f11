"""Per-super-block latency lookup table, measured on the settings' engine at the target batch, dtype
and resolution.

A network's latency is modelled as the sum of its parts: stem + per super-block (first unit, which
carries the stride and the width change, + (depth - 1) x a repeated unit) + final conv and head.
Each part (genet_jax.latency.parts) is timed alone by the paper's protocol on the engine
(genet_jax.latency.engines) and kept under a key made of its fields (`part_key`).
One-dimensional parts (repeated units over their width, the tail over its input width, first units
fed by the stem) are measured on a dense line of widths (by default every allowed width: compiled
code's cost is not smooth in the channel count, e.g. XLA:CPU's); first units fed by a searched
width on a coarser (input width, output width) grid. Candidates in between are interpolated
(linear / bilinear). A calibration against a few full-network probes absorbs what a sum of
separately timed parts misses (launch overheads, fusion across unit boundaries).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Optional, Sequence

import numpy as np
from tqdm import tqdm

from genet_jax.arch.counting import conv_out_size
from genet_jax.arch.spec import NetworkSpec, UnitConfig, mid_width
from genet_jax.latency.engines import engine_named
from genet_jax.latency.parts import Part, StemPart, TailPart, UnitPart
from genet_jax.latency.timing import ProbeSettings, measurement_context
from genet_jax.nas.space import BlockType, SearchSpace
from genet_jax.nas.store import MeasurementCache, fingerprint

log = logging.getLogger("genet_jax.search")

PartTimer = Callable[[Part, tuple, ProbeSettings], float]
# How part-probe keys began before they were made from a part's fields (the repr of a Flax module).
REPR_KEY_PREFIXES = ("_Layer(", "_Tail(")


@dataclasses.dataclass(frozen=True)
class _ProjectedUnit(UnitConfig):
    """A first unit timed with its projection shortcut even where in_width == width, so the whole
    first-unit grid of a stride-1 super-block is one smooth surface (candidates with
    in_width == width are priced as repeated units instead)."""

    @property
    def has_projection(self) -> bool:
        return True


def time_part(part: Part, input_shape: Sequence[int], settings: ProbeSettings) -> float:
    """Trimmed-mean milliseconds per image of `part` on one device, on the settings' engine."""
    return engine_named(settings.engine).time_part(part, input_shape, settings)


def part_key(part: Part, input_shape: Sequence[int], settings: ProbeSettings) -> str:
    """A part probe's key: the part's fields, the input shape (batch, size, size, width) and the
    measurement context (device, JAX, resolved settings, engine: `timing.measurement_context`)."""
    return f"{part.key()}@{list(input_shape)}/{fingerprint(measurement_context(settings))}"


class PartProbeCache(MeasurementCache):
    """A part timer (`time_part` by default) whose results are kept in a JSON file, keyed by
    `part_key`: a table build killed half-way resumes where it stopped, a rebuild for other types
    re-times only new parts, and a workdir moved to another device, JAX or engine re-times all."""

    def __init__(self, path: str, timer: Optional[PartTimer] = None):
        super().__init__(path)
        self.timer = timer or time_part
        stale = [key for key in self.entries if key.startswith(REPR_KEY_PREFIXES)]
        if stale:
            log.warning("%s: %d part probes keyed by a Flax module's repr (stored by an older genet-jax) are "
                        "ignored, keys now name the parts' fields: those parts are re-timed", path, len(stale))
            for key in stale:
                del self.entries[key]

    def __call__(self, part: Part, input_shape: Sequence[int], settings: ProbeSettings) -> float:
        return self.get(part_key(part, input_shape, settings), lambda: self.timer(part, input_shape, settings))


def stage_input_sizes(spec: NetworkSpec) -> list[int]:
    """Spatial size entering each super-block, plus the size after the last (kernel-independent)."""
    size = conv_out_size(spec.resolution, spec.stem_kernel_size, spec.stem_stride)
    sizes = [size]
    for block in spec.blocks:
        size = conv_out_size(size, block.kernel_size, block.stride)
        sizes.append(size)
    return sizes


def width_grid(width: int, space: SearchSpace, points: int) -> np.ndarray:
    """`points` allowed widths spread evenly over the range (`points` <= 0: all of them)."""
    allowed = space.widths(width)
    if points <= 0:
        return allowed
    picks = np.unique(np.round(np.linspace(0, len(allowed) - 1, max(1, points))).astype(int))
    return allowed[picks]


class _LatencyTableJson:
    """LatencyTable's JSON form (a mixin, so that the dataclass below reads as the table)."""

    def to_dict(self) -> dict:
        return {"resolution": self.resolution, "settings": dataclasses.asdict(self.settings), "stem": self.stem,
                "in_grids": [g.tolist() for g in self.in_grids], "out_grids": [g.tolist() for g in self.out_grids],
                "blocks": [{k: {p: v.tolist() for p, v in parts.items()} for k, parts in b.items()}
                           for b in self.blocks],
                "tail": self.tail.tolist(), "strides": list(self.strides), "scale": self.scale,
                "exponent": self.exponent, "rest_grids": [g.tolist() for g in self.rest_grids]}

    @classmethod
    def from_dict(cls, d: dict) -> "LatencyTable":
        return cls(d["resolution"], ProbeSettings(**d["settings"]), d["stem"],
                   [np.asarray(g) for g in d["in_grids"]], [np.asarray(g) for g in d["out_grids"]],
                   [{k: {p: np.asarray(v) for p, v in parts.items()} for k, parts in b.items()} for b in d["blocks"]],
                   np.asarray(d["tail"]), list(d["strides"]), d["scale"], d["exponent"],
                   [np.asarray(g) for g in d["rest_grids"]])


@dataclasses.dataclass
class LatencyTable(_LatencyTableJson):
    """ms/image parts; `blocks[i][type_key]` = {'first': (len(in_grids[i]), len(out_grids[i])),
    'rest': (len(rest_grids[i]),)}."""

    resolution: int
    settings: ProbeSettings
    stem: float
    in_grids: list[np.ndarray]  # per super-block, first units: input widths (the previous block's grid, or the stem's)
    out_grids: list[np.ndarray]  # first units: output widths
    blocks: list[dict[str, dict[str, np.ndarray]]]
    tail: np.ndarray  # over rest_grids[-1]
    strides: list[int]  # per super-block: a stride-1 first unit with in_width == width is a repeated unit
    scale: float = 1.0  # calibration: ms = scale * sum_of_parts ** exponent
    exponent: float = 1.0
    rest_grids: Optional[list[np.ndarray]] = None  # repeated units' widths (default: out_grids)

    def __post_init__(self):
        if self.rest_grids is None:
            self.rest_grids = list(self.out_grids)

    def block_latency(self, index: int, type_key: str, depth, in_width, width) -> np.ndarray:
        parts = self.blocks[index][type_key]
        first = _bilinear(self.in_grids[index], self.out_grids[index], parts["first"], in_width, width)
        rest = np.interp(width, self.rest_grids[index], parts["rest"])
        if self.strides[index] == 1:  # no projection shortcut: exactly a repeated unit
            first = np.where(np.asarray(in_width) == np.asarray(width), rest, first)
        return first + (np.asarray(depth) - 1) * rest

    def raw_predict(self, type_keys: Sequence[Sequence[str]], types: np.ndarray, depths: np.ndarray,
                    widths: np.ndarray, stem_width: int) -> np.ndarray:
        """Uncalibrated ms/image for n structures: types[n, M] index type_keys[block], depths/widths [n, M]."""
        total = np.full(len(types), self.stem, float)
        for i, keys in enumerate(type_keys):
            in_width = np.full(len(types), stem_width) if i == 0 else widths[:, i - 1]
            for t, key in enumerate(keys):
                rows = types[:, i] == t
                if rows.any():
                    total[rows] += self.block_latency(i, key, depths[rows, i], in_width[rows], widths[rows, i])
        return total + np.interp(widths[:, -1], self.rest_grids[-1], self.tail)

    def predict(self, *args, **kwargs) -> np.ndarray:
        return self.scale * self.raw_predict(*args, **kwargs) ** self.exponent

    def predict_spec(self, spec: NetworkSpec) -> float:
        keys = [[BlockType.of(b).key] for b in spec.blocks]
        return float(self.predict(keys, np.zeros((1, len(spec.blocks)), int),
                                  np.asarray([[b.depth for b in spec.blocks]]),
                                  np.asarray([[b.width for b in spec.blocks]]), spec.stem_width)[0])

    def calibrate(self, raw: Sequence[float], measured: Sequence[float]) -> None:
        """Set scale and exponent from (sum of parts, measured) pairs: `fit_power_law`."""
        self.scale, self.exponent = fit_power_law(raw, measured)

    def uncalibrated(self, predicted: np.ndarray) -> np.ndarray:
        return (np.asarray(predicted) / self.scale) ** (1.0 / self.exponent)


# A power-law fit needs this many calibration structures, their latencies spread over this factor.
POWER_LAW_MIN_POINTS = 3
POWER_LAW_MIN_SPREAD = 2.0
# First units fed by a searched width are probed on a grid of this many widths per axis.
DEFAULT_GRID_POINTS = 3


def fit_power_law(raw: Sequence[float], measured: Sequence[float]) -> tuple[float, float]:
    """(scale, exponent) of measured ~ scale * raw ** exponent, by least squares in log space: the sum of
    separately timed parts is off both by per-part overheads and by a factor, and full-network
    latencies span orders of magnitude, so a multiplicative fit is not dominated by the slowest
    structures. With fewer than 3 points, latencies within a factor of 2 of each other (structures near
    the budget) or a non-positive slope: exponent 1, scale the median ratio. Median, not mean: a
    minority of networks run far slower than the sum of their parts (fusion across unit boundaries;
    measured here up to 1.5x), and a mean would let those few shift every prediction."""
    log_raw, log_measured = np.log(np.asarray(raw, float)), np.log(np.asarray(measured, float))
    if len(log_raw) >= POWER_LAW_MIN_POINTS and np.ptp(log_raw) >= np.log(POWER_LAW_MIN_SPREAD):
        exponent, log_scale = np.polyfit(log_raw, log_measured, 1)
        if exponent > 0:
            return float(np.exp(log_scale)), float(exponent)
    return float(np.exp(np.median(log_measured - log_raw))), 1.0


def _bilinear(xs: np.ndarray, ys: np.ndarray, table: np.ndarray, x, y) -> np.ndarray:
    x, y = np.asarray(x, float), np.asarray(y, float)

    def locate(grid, v):
        if len(grid) == 1:
            return np.zeros(v.shape, int), np.zeros(v.shape)
        i = np.clip(np.searchsorted(grid, v) - 1, 0, len(grid) - 2)
        return i, np.clip((v - grid[i]) / (grid[i + 1] - grid[i]), 0.0, 1.0)

    ix, tx = locate(xs, x)
    iy, ty = locate(ys, y)
    ix1, iy1 = np.minimum(ix + 1, len(xs) - 1), np.minimum(iy + 1, len(ys) - 1)
    return ((1 - tx) * (1 - ty) * table[ix, iy] + tx * (1 - ty) * table[ix1, iy]
            + (1 - tx) * ty * table[ix, iy1] + tx * ty * table[ix1, iy1])


def build_latency_table(master: NetworkSpec, type_keys: Sequence[Sequence[str]], space: SearchSpace,
                        resolution: int, settings: ProbeSettings, grid_points: int = DEFAULT_GRID_POINTS, progress: bool = True,
                        timer: Optional[PartTimer] = None,
                        line_points: Optional[int] = None) -> LatencyTable:
    """Measure every part for the given per-block types at `resolution` (stride pattern of `master`):
    first units fed by a searched width on a `grid_points` x `grid_points` grid, the one-dimensional
    parts on `line_points` widths (<= 0: every allowed width; None: `grid_points`)."""
    timer = timer or time_part
    settings = settings.resolved()
    spec = master.replace(resolution=resolution)
    b = settings.batch
    sizes = stage_input_sizes(spec)
    line_points = grid_points if line_points is None else line_points
    coarse = [width_grid(block.width, space, grid_points) for block in spec.blocks]
    rest_grids = [width_grid(block.width, space, line_points) for block in spec.blocks]
    in_grids = [np.asarray([spec.stem_width])] + coarse[:-1]
    out_grids = [rest_grids[i] if len(in_grids[i]) == 1 else coarse[i] for i in range(len(spec.blocks))]
    total = 1 + len(rest_grids[-1]) + sum(len(keys) * (len(in_grids[i]) * len(out_grids[i]) + len(rest_grids[i]))
                                          for i, keys in enumerate(type_keys))
    bar = tqdm(total=total, desc=f"latency table @{resolution}", unit="probe", disable=not progress, leave=False)

    def probe(part, shape):
        bar.update(1)
        return timer(part, tuple(int(s) for s in shape), settings)

    stem = probe(StemPart(spec.stem_width, spec.stem_kernel_size, spec.stem_stride),
                 (b, resolution, resolution, spec.in_channels))
    blocks = []
    for i, keys in enumerate(type_keys):
        stride, entries = spec.blocks[i].stride, {}
        for key in keys:
            block_type = BlockType.from_key(key)

            def unit(cin, cout, s, config_class=UnitConfig):
                return UnitPart(config_class(block_type.block_type, int(cin), int(cout),
                                             mid_width(int(cout), block_type.ratio), s, block_type.kernel_size))

            first = np.asarray([[probe(unit(cin, cout, stride, _ProjectedUnit), (b, sizes[i], sizes[i], cin))
                                 for cout in out_grids[i]] for cin in in_grids[i]])
            rest = np.asarray([probe(unit(cout, cout, 1), (b, sizes[i + 1], sizes[i + 1], cout))
                               for cout in rest_grids[i]])
            entries[key] = {"first": first, "rest": rest}
        blocks.append(entries)
    tail = np.asarray([probe(TailPart(spec.final_width, spec.num_classes),
                             (b, sizes[-1], sizes[-1], cin)) for cin in rest_grids[-1]])
    bar.close()
    return LatencyTable(resolution, settings, stem, in_grids, out_grids, blocks, tail,
                        [block.stride for block in spec.blocks], rest_grids=rest_grids)
