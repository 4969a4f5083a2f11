"""Names in a network's parameter tree, built and parsed here only.

    stem/{conv,bn}
    stage{i}/unit{j}/{conv1,conv2,conv3,shortcut}/{conv,bn}
    final/{conv,bn}
    head/{kernel,bias}

The Flax MasterNet, the PyTorch module (its state_dict keys are these paths joined by '.'), the
state_dict layouts and weight inheritance all name stages and units through these functions.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

STEM, FINAL, HEAD = "stem", "final", "head"  # the network's modules outside the super-blocks
STAGE_PREFIX = "stage"
UNIT_PREFIX = "unit"


def stage_name(index: int) -> str:
    """'stage{index}': the module of super-block `index`."""
    return f"{STAGE_PREFIX}{index}"


def unit_name(index: int) -> str:
    """'unit{index}': residual unit `index` of a super-block."""
    return f"{UNIT_PREFIX}{index}"


def _parse_index(name: str, prefix: str) -> int:
    digits = name[len(prefix):] if name.startswith(prefix) else ""
    if not digits.isdigit():
        raise ValueError(f"{name!r} is not a {prefix}{{index}} name")
    return int(digits)


def parse_stage(name: str) -> int:
    """'stage3' -> 3; ValueError for any other name."""
    return _parse_index(name, STAGE_PREFIX)


def parse_unit(name: str) -> int:
    """'unit2' -> 2; ValueError for any other name."""
    return _parse_index(name, UNIT_PREFIX)


def stage_of(module_path: Sequence[str]) -> Optional[int]:
    """The super-block a module path (collection excluded) lies in; None for stem, final and head."""
    try:
        return parse_stage(module_path[0]) if module_path else None
    except ValueError:
        return None


class UnitLayerPath(NamedTuple):
    """One conv-BN of a residual unit: stage{stage}/unit{unit}/{layer}."""

    stage: int
    unit: int
    layer: str  # a ConvLayer name: conv1, conv2, conv3 or shortcut

    @property
    def names(self) -> tuple[str, str, str]:
        return stage_name(self.stage), unit_name(self.unit), self.layer

    @classmethod
    def parse(cls, names: Sequence[str]) -> "UnitLayerPath":
        """('stage1', 'unit0', 'conv2', ...) -> UnitLayerPath(1, 0, 'conv2'); names past the layer are ignored."""
        if len(names) < 3:
            raise ValueError(f"{'/'.join(names)!r} is not a stage{{i}}/unit{{j}}/layer path")
        return cls(parse_stage(names[0]), parse_unit(names[1]), names[2])
