"""Every network of the paper as a named NetworkSpec, plus user registration and loading."""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
from typing import Optional, Union

from genet_jax.arch.spec import NetworkSpec, SpecError, SuperBlockSpec
from genet_jax.arch.structure_string import parse_structure_string


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    name: str
    spec: NetworkSpec
    description: str = ""
    paper_top1: Optional[float] = None  # ImageNet top-1 (%) the paper reports, where it does


_REGISTRY: dict[str, ModelEntry] = {}
_ALIASES: dict[str, str] = {}


def register_model(name: str, spec: NetworkSpec, description: str = "",
                   paper_top1: Optional[float] = None, overwrite: bool = False) -> ModelEntry:
    """Register a spec under `name` so create_model and resolve_spec accept it in this Python process.

    A registration lasts only as long as the process: a command-line tool runs in a new one, so pass it
    the spec's .json file (spec.save(path)) instead of the name."""
    if not isinstance(spec, NetworkSpec):
        raise TypeError(f"register_model({name!r}): spec must be a NetworkSpec, got {type(spec).__name__}")
    if not overwrite and (name in _REGISTRY or name in _ALIASES):
        raise ValueError(f"model {name!r} is already registered (pass overwrite=True to replace it)")
    entry = ModelEntry(name, spec, description, paper_top1)
    _REGISTRY[name] = entry
    return entry


def list_models() -> list[str]:
    """Registered names in natural order (table6_net2 before table6_net10)."""
    return sorted(_REGISTRY, key=lambda n: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", n)])


def get_entry(name: str) -> ModelEntry:
    key = _ALIASES.get(name, name)
    if key not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY) + list(_ALIASES), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise SpecError("model", f"unknown architecture {name!r}{hint}. Known: {', '.join(list_models())}; "
                                 "or give a path to a spec .json or an authors' structure-string .txt")
    return _REGISTRY[key]


def resolve_spec(name_or_spec: Union[str, os.PathLike, NetworkSpec], *,
                 num_classes: Optional[int] = None, resolution: Optional[int] = None) -> NetworkSpec:
    """A NetworkSpec from a spec, a registered name, inline spec JSON, a spec JSON file or a
    structure-string file."""
    if isinstance(name_or_spec, NetworkSpec):
        spec = name_or_spec
    elif isinstance(name_or_spec, (str, os.PathLike)):
        text = os.fspath(name_or_spec)
        if text.lstrip().startswith("{"):
            spec = NetworkSpec.from_json(text)
        elif text in _REGISTRY or text in _ALIASES:
            spec = get_entry(text).spec
        elif text.endswith(".json") or os.path.isfile(text):
            spec = _load_file(text)
        else:
            spec = get_entry(text).spec
    else:
        raise SpecError("model", f"expected a name, a path or a NetworkSpec, got {type(name_or_spec).__name__}")
    changes = {}
    if num_classes is not None:
        changes["num_classes"] = num_classes
    if resolution is not None:
        changes["resolution"] = resolution
    return spec.replace(**changes) if changes else spec


def _load_file(path: str) -> NetworkSpec:
    if not os.path.isfile(path):
        raise SpecError("model", f"spec file {path!r} does not exist")
    if path.endswith(".json"):
        return NetworkSpec.load(path)
    with open(path) as f:
        text = f.read()
    if text.lstrip().startswith("{"):
        return NetworkSpec.load(path)
    try:
        return parse_structure_string(text)
    except SpecError as e:
        raise SpecError(e.field, f"{e.reason} (in {path})") from None


# ---- the paper's networks --------------------------------------------------------------------

def _net(stem: int, blocks: list[tuple], final: int, resolution: int) -> NetworkSpec:
    return NetworkSpec(stem_width=stem, blocks=tuple(SuperBlockSpec(*b) for b in blocks),
                       final_width=final, resolution=resolution)


# Table 2: (type, depth, width, stride, kernel, ratio)
_GENETS = {
    "genet_light": (13, [("XX", 1, 48, 2, 3, 1.0), ("XX", 3, 48, 2, 3, 1.0), ("BL", 7, 384, 2, 3, 0.25),
                         ("DW", 2, 560, 2, 3, 3.0), ("DW", 1, 256, 1, 3, 3.0)], 1920, 192, 75.7),
    "genet_normal": (32, [("XX", 1, 128, 2, 3, 1.0), ("XX", 2, 192, 2, 3, 1.0), ("BL", 6, 640, 2, 3, 0.25),
                          ("DW", 4, 640, 2, 3, 3.0), ("DW", 1, 640, 1, 3, 3.0)], 2560, 192, 80.0),
    "genet_large": (32, [("XX", 1, 128, 2, 3, 1.0), ("XX", 2, 192, 2, 3, 1.0), ("BL", 6, 640, 2, 3, 0.25),
                         ("DW", 5, 640, 2, 3, 3.0), ("DW", 4, 640, 1, 3, 3.0)], 2560, 256, 81.3),
}

# Table 6: block types, depths, widths, strides, top-1. The first entry is the stem conv (k=3) and
# the last the final 1x1 conv; super-blocks use k=5, BL r=1/4, DW r=6 (section 4.1).
_TABLE6 = [
    ("CXXBDDC", "1,1,4,8,4,2,1", "32,64,96,512,320,320,1280", "2,2,2,2,2,1,1", 77.6),
    ("CXXDDDC", "1,1,4,8,4,2,1", "32,48,64,160,320,320,1280", "2,2,2,2,2,1,1", 77.6),
    ("CXXDDC", "1,1,4,8,6,1", "32,48,64,160,320,1280", "2,2,2,2,2,1", 77.5),
    ("CXBBDC", "1,1,4,8,6,1", "32,64,256,512,320,1280", "2,2,2,2,2,1", 77.4),
    ("CXBDDDC", "1,1,4,8,4,2,1", "32,32,256,144,288,288,1280", "2,2,2,2,2,1,1", 77.4),
    ("CXXBDC", "1,1,4,8,6,1", "32,64,96,512,320,1280", "2,2,2,2,2,1", 77.3),
    ("CXBDDC", "1,1,4,8,6,1", "32,32,256,144,288,1280", "2,2,2,2,2,1", 77.3),
    ("CDDDDDC", "1,1,4,8,4,2,1", "32,24,64,128,256,256,1280", "2,2,2,2,2,1,1", 77.2),
    ("CXXDDDC", "1,1,4,4,4,4,1", "32,48,64,160,160,320,1280", "2,2,2,2,1,2,1", 77.1),
    ("CDDDDC", "1,1,4,8,6,1", "32,24,64,128,256,1280", "2,2,2,2,2,1", 77.0),
    ("CXXDDDC", "1,1,4,6,2,4,1", "32,48,64,160,160,320,1280", "2,2,2,2,1,2,1", 76.9),
    ("CXXBBDC", "1,1,4,6,2,4,1", "32,64,96,512,512,320,1280", "2,2,2,2,1,2,1", 76.9),
    ("CXXBBDC", "1,1,4,4,4,4,1", "32,64,96,512,512,320,1280", "2,2,2,2,1,2,1", 76.8),
    ("CXBDDDC", "1,1,4,6,2,4,1", "32,32,256,144,144,288,1280", "2,2,2,2,1,2,1", 76.7),
    ("CXXBBBC", "1,1,4,8,4,2,1", "32,64,96,512,1024,1024,1280", "2,2,2,2,2,1,1", 76.6),
    ("CDDDDDC", "1,1,4,6,2,4,1", "32,24,64,128,128,256,1280", "2,2,2,2,1,2,1", 76.5),
    ("CXBBBC", "1,1,4,8,6,1", "32,64,256,512,1024,1280", "2,2,2,2,2,1", 76.3),
    ("CXXBBBC", "1,1,4,6,2,4,1", "32,64,96,512,512,1024,1280", "2,2,2,2,1,2,1", 76.0),
    ("CXXBBC", "1,1,4,8,6,1", "32,64,96,512,1024,1280", "2,2,2,2,2,1", 76.0),
    ("CXXBBBC", "1,1,4,4,4,4,1", "32,64,96,512,512,1024,1280", "2,2,2,2,1,2,1", 75.8),
]
_TABLE6_TYPES = {"X": ("XX", 1.0), "B": ("BL", 0.25), "D": ("DW", 6.0)}
_TABLE6_RESOLUTION = 224  # section 3.2's benchmark resolution; the paper gives none for Table 6


def _table6_spec(types: str, depths: str, widths: str, strides: str) -> NetworkSpec:
    d, c, s = ([int(v) for v in field.split(",")] for field in (depths, widths, strides))
    blocks = [(_TABLE6_TYPES[t][0], d[i], c[i], s[i], 5, _TABLE6_TYPES[t][1])
              for i, t in enumerate(types) if 0 < i < len(types) - 1]
    return _net(c[0], blocks, c[-1], _TABLE6_RESOLUTION)


# Table 5: 8 XX super-blocks of k=3 between a 16-wide stem and a 4096-wide final conv.
_PROFILINGNET132 = [("XX", 3, 32, 2, 3, 1.0), ("XX", 3, 48, 2, 3, 1.0), ("XX", 3, 72, 2, 3, 1.0),
                    ("XX", 6, 128, 1, 3, 1.0), ("XX", 6, 256, 2, 3, 1.0), ("XX", 8, 512, 1, 3, 1.0),
                    ("XX", 8, 1024, 1, 3, 1.0), ("XX", 4, 2048, 1, 3, 1.0)]


def _register_paper_networks() -> None:
    for name, (stem, blocks, final, res, top1) in _GENETS.items():
        register_model(name, _net(stem, blocks, final, res), f"GENet-{name[6:]} (Table 2) @{res}", top1)
    for i, (types, d, c, s, top1) in enumerate(_TABLE6, start=1):
        register_model(f"table6_net{i}", _table6_spec(types, d, c, s),
                       f"Table 6 Net{i}: {','.join(types)}", top1)
    register_model("masternet", _table6_spec(*_TABLE6[0][:4]),
                   "LLR-NAS starting point: Table 6 Net1 (k=5, BL r=1/4, DW r=6), section 4.1", 77.6)
    register_model("profilingnet132", _net(16, _PROFILINGNET132, 4096, 224),
                   "ProfilingNet-132 (Table 5), all-XX network of section 3.3")
    _ALIASES.update({"genet_small": "genet_light", "gernet_s": "genet_light",
                     "gernet_m": "genet_normal", "gernet_l": "genet_large"})


_register_paper_networks()
