"""The GENet design space as plain, immutable, validated data.

A network is a stem conv, a sequence of super-blocks, a final 1x1 conv and a linear head
(paper Fig. 1a). A super-block stacks `depth` residual units of one type; unit 0 carries the
stride and the width change, units 1.. keep the shape.
"""
from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
from typing import Any, Iterator, Mapping

from genet_jax.errors import InputError

BLOCK_TYPES = ("XX", "BL", "DW")
SHORTCUT = "shortcut"  # the ConvLayer name of a unit's projection conv

BLOCK_TYPE_NAMES = {
    "XX": "full kxk conv pair",
    "BL": "1x1 -> kxk -> 1x1 bottleneck",
    "DW": "1x1 -> depthwise kxk -> 1x1 inverted bottleneck",
}


class SpecError(InputError, ValueError):
    """An invalid architecture spec; `field` names the offending field (e.g. 'blocks[2].stride')."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}")


def _check_int(field: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise SpecError(field, f"must be an integer, got {value!r}")
    if value < minimum:
        raise SpecError(field, f"must be >= {minimum}, got {value}")


def _check_kernel(field: str, value: Any) -> None:
    _check_int(field, value, 1)
    if value % 2 == 0:
        raise SpecError(field, f"must be odd (symmetric padding needs it), got {value}")


def _check_stride(field: str, value: Any) -> None:
    if isinstance(value, bool) or value not in (1, 2):
        raise SpecError(field, f"must be 1 or 2, got {value!r}")


def _check_blocks(blocks: Any) -> None:
    if not isinstance(blocks, tuple) or not blocks:
        raise SpecError("blocks", "must be a non-empty sequence of super-blocks")
    for i, block in enumerate(blocks):
        if not isinstance(block, SuperBlockSpec):
            raise SpecError(f"blocks[{i}]", f"must be a SuperBlockSpec, got {type(block).__name__}")
        block.validate(prefix=f"blocks[{i}].")


def mid_width(width: int, ratio: float) -> int:
    """Width of a unit's inner layers; Python's round() as the authors' code uses."""
    return int(round(width * ratio))


@dataclasses.dataclass(frozen=True)
class SuperBlockSpec:
    """`depth` stacked residual units of `block_type`, `width` output channels.

    ratio: inner width / output width. XX: 0 < r <= 1 (the paper's XX uses 1), BL: 0 < r <= 1,
    DW: r >= 1 (the expansion of the depthwise layer).
    """

    block_type: str
    depth: int
    width: int
    stride: int = 1
    kernel_size: int = 3
    ratio: float = 1.0

    def __post_init__(self):
        self.validate()

    def validate(self, prefix: str = "") -> None:
        field = lambda name: f"{prefix}{name}"  # noqa: E731
        if self.block_type not in BLOCK_TYPES:
            raise SpecError(field("block_type"),
                            f"unknown block type {self.block_type!r}; expected one of {BLOCK_TYPES}")
        _check_int(field("depth"), self.depth, 1)
        _check_int(field("width"), self.width, 1)
        _check_stride(field("stride"), self.stride)
        _check_kernel(field("kernel_size"), self.kernel_size)
        ratio = self.ratio
        if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not math.isfinite(ratio):
            raise SpecError(field("ratio"), f"must be a finite number, got {ratio!r}")
        if self.block_type in ("XX", "BL") and not 0 < ratio <= 1:
            raise SpecError(field("ratio"), f"{self.block_type} blocks need 0 < ratio <= 1, got {ratio}")
        if self.block_type == "DW" and ratio < 1:
            raise SpecError(field("ratio"), f"DW blocks need ratio >= 1, got {ratio}")
        if mid_width(self.width, ratio) < 1:
            raise SpecError(field("ratio"),
                            f"width {self.width} x ratio {ratio} rounds to an empty inner layer")

    @property
    def mid_width(self) -> int:
        return mid_width(self.width, self.ratio)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class UnitConfig:
    """One residual unit, fully resolved: what the builder and the counters consume."""

    block_type: str
    in_width: int
    width: int
    mid_width: int
    stride: int
    kernel_size: int

    @property
    def has_projection(self) -> bool:
        return self.stride != 1 or self.in_width != self.width

    def conv_layers(self) -> tuple["ConvLayer", ...]:
        """Every conv of the unit, main path first, then the projection shortcut if any."""
        k, s = self.kernel_size, self.stride
        if self.block_type == "XX":
            layers = [ConvLayer("conv1", self.in_width, self.mid_width, k, s),
                      ConvLayer("conv2", self.mid_width, self.width, k, 1, after_stride=True)]
        else:
            groups = self.mid_width if self.block_type == "DW" else 1
            layers = [ConvLayer("conv1", self.in_width, self.mid_width, 1, 1),
                      ConvLayer("conv2", self.mid_width, self.mid_width, k, s, groups),
                      ConvLayer("conv3", self.mid_width, self.width, 1, 1, after_stride=True)]
        if self.has_projection:
            layers.append(ConvLayer(SHORTCUT, self.in_width, self.width, 1, s))
        return tuple(layers)


@dataclasses.dataclass(frozen=True)
class ConvLayer:
    """One conv (+BN) of a residual unit; `after_stride`: it sees the unit's output resolution
    (only the main path's last conv does)."""

    name: str
    in_width: int
    out_width: int
    kernel_size: int
    stride: int
    groups: int = 1
    after_stride: bool = False

    @property
    def is_shortcut(self) -> bool:
        return self.name == SHORTCUT

    @property
    def is_last(self) -> bool:
        """The main path's last conv (the one after the stride): no ReLU, and the BN whose scale
        `zero_init_last_bn` zeroes."""
        return self.after_stride and not self.is_shortcut

    @property
    def relu(self) -> bool:
        """ReLU after the BN: every main-path conv but the last; the ReLU follows the residual add."""
        return not (self.is_shortcut or self.is_last)

    @property
    def torch_weight_shape(self) -> tuple[int, int, int, int]:
        return self.out_width, self.in_width // self.groups, self.kernel_size, self.kernel_size


class _NetworkSpecJson:
    """NetworkSpec's JSON form (a mixin, so that the dataclass below reads as the data it holds)."""

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["blocks"] = [b.to_dict() for b in self.blocks]
        return d

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "NetworkSpec":
        if not isinstance(data, Mapping):
            raise SpecError("spec", f"must be a JSON object, got {type(data).__name__}")
        _reject_unknown_keys("", data, cls)
        if "blocks" not in data:
            raise SpecError("blocks", "missing")
        raw_blocks = data["blocks"]
        if not isinstance(raw_blocks, (list, tuple)):
            raise SpecError("blocks", f"must be a list, got {type(raw_blocks).__name__}")
        blocks = tuple(_block_from_dict(f"blocks[{i}]", raw) for i, raw in enumerate(raw_blocks))
        fields = {k: v for k, v in data.items() if k != "blocks"}
        for required in ("stem_width", "final_width"):
            if required not in fields:
                raise SpecError(required, "missing")
        return cls(blocks=blocks, **fields)

    @classmethod
    def from_json(cls, text: str) -> "NetworkSpec":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise SpecError("spec", f"not valid JSON: {e}") from None
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "w") as f:
            f.write(self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "NetworkSpec":
        with open(path) as f:
            text = f.read()
        try:
            return cls.from_json(text)
        except SpecError as e:
            raise SpecError(e.field, f"{e.reason} (in {os.fspath(path)})") from None


def _block_from_dict(field: str, raw: Any) -> SuperBlockSpec:
    if not isinstance(raw, Mapping):
        raise SpecError(field, f"must be an object, got {type(raw).__name__}")
    _reject_unknown_keys(f"{field}.", raw, SuperBlockSpec)
    for required in ("block_type", "depth", "width"):
        if required not in raw:
            raise SpecError(f"{field}.{required}", "missing")
    try:
        return SuperBlockSpec(**raw)
    except SpecError as e:
        raise SpecError(f"{field}.{e.field}", e.reason) from None


@dataclasses.dataclass(frozen=True)
class NetworkSpec(_NetworkSpecJson):
    """A whole MasterNet-shaped network (JSON form: to_dict / from_dict / to_json / from_json / save / load)."""

    stem_width: int
    blocks: tuple[SuperBlockSpec, ...]
    final_width: int
    num_classes: int = 1000
    resolution: int = 224
    in_channels: int = 3
    stem_kernel_size: int = 3
    stem_stride: int = 2

    def __post_init__(self):
        if isinstance(self.blocks, list):
            object.__setattr__(self, "blocks", tuple(self.blocks))
        self.validate()

    def validate(self) -> None:
        _check_int("in_channels", self.in_channels, 1)
        _check_int("stem_width", self.stem_width, 1)
        _check_kernel("stem_kernel_size", self.stem_kernel_size)
        _check_stride("stem_stride", self.stem_stride)
        _check_blocks(self.blocks)
        _check_int("final_width", self.final_width, 1)
        _check_int("num_classes", self.num_classes, 1)
        _check_int("resolution", self.resolution, 1)
        if self.resolution < self.total_stride:
            raise SpecError("resolution", f"{self.resolution} is smaller than the network's total "
                                          f"stride {self.total_stride}")

    @property
    def total_stride(self) -> int:
        return self.stem_stride * math.prod(b.stride for b in self.blocks)

    @property
    def num_units(self) -> int:
        return sum(b.depth for b in self.blocks)

    def replace(self, **changes) -> "NetworkSpec":
        return dataclasses.replace(self, **changes)

    def with_block(self, index: int, block: SuperBlockSpec) -> "NetworkSpec":
        blocks = list(self.blocks)
        blocks[index] = block
        return self.replace(blocks=tuple(blocks))

    def block_in_width(self, index: int) -> int:
        return self.stem_width if index == 0 else self.blocks[index - 1].width

    def units(self, index: int) -> Iterator[UnitConfig]:
        """The resolved residual units of super-block `index`."""
        block = self.blocks[index]
        in_width = self.block_in_width(index)
        for u in range(block.depth):
            yield UnitConfig(block.block_type, in_width if u == 0 else block.width, block.width,
                             block.mid_width, block.stride if u == 0 else 1, block.kernel_size)


def _reject_unknown_keys(prefix: str, data: Mapping[str, Any], cls: type) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            raise SpecError(f"{prefix}{key}", f"unknown field; expected one of {sorted(known)}")
