"""The design space as data: validation, JSON, the authors' structure string, the registry."""
import json

import pytest

import genet_jax as g
from genet_jax.arch import paths
from genet_jax.arch.counting import conv_out_size
from genet_jax.arch.spec import NetworkSpec, SpecError, SuperBlockSpec

GOOD_BLOCK = dict(block_type="BL", depth=2, width=64, stride=2, kernel_size=3, ratio=0.25)
GOOD_NET = dict(stem_width=16, blocks=[dict(block_type="XX", depth=1, width=32, stride=2),
                                       GOOD_BLOCK,
                                       dict(block_type="DW", depth=1, width=64, stride=2, ratio=3.0)],
                final_width=128, num_classes=10, resolution=64)


def _net_with(**changes):
    data = json.loads(json.dumps(GOOD_NET))
    data.update(changes)
    return data


def _net_with_block(index, **changes):
    data = _net_with()
    data["blocks"][index].update(changes)
    return data


INVALID = [
    ("unknown block type", _net_with_block(0, block_type="XY"), "blocks[0].block_type"),
    ("depth zero", _net_with_block(1, depth=0), "blocks[1].depth"),
    ("depth not an integer", _net_with_block(1, depth=2.5), "blocks[1].depth"),
    ("depth a bool", _net_with_block(1, depth=True), "blocks[1].depth"),
    ("width zero", _net_with_block(2, width=0), "blocks[2].width"),
    ("stride three", _net_with_block(0, stride=3), "blocks[0].stride"),
    ("even kernel", _net_with_block(1, kernel_size=4), "blocks[1].kernel_size"),
    ("kernel zero", _net_with_block(1, kernel_size=0), "blocks[1].kernel_size"),
    ("BL ratio above 1", _net_with_block(1, ratio=2.0), "blocks[1].ratio"),
    ("DW ratio below 1", _net_with_block(2, ratio=0.5), "blocks[2].ratio"),
    ("XX ratio zero", _net_with_block(0, ratio=0.0), "blocks[0].ratio"),
    ("ratio NaN", _net_with_block(2, ratio=float("nan")), "blocks[2].ratio"),
    ("inner width rounds to 0", _net_with_block(1, width=1, ratio=0.25), "blocks[1].ratio"),
    ("missing depth", {**_net_with(), "blocks": [dict(block_type="XX", width=8)]}, "blocks[0].depth"),
    ("unknown block field", _net_with_block(0, expansion=2), "blocks[0].expansion"),
    ("no blocks", _net_with(blocks=[]), "blocks"),
    ("stem width zero", _net_with(stem_width=0), "stem_width"),
    ("final width negative", _net_with(final_width=-3), "final_width"),
    ("no classes", _net_with(num_classes=0), "num_classes"),
    ("resolution zero", _net_with(resolution=0), "resolution"),
    ("resolution below total stride", _net_with(resolution=8), "resolution"),
    ("resolution a string", _net_with(resolution="224"), "resolution"),
    ("stem stride four", _net_with(stem_stride=4), "stem_stride"),
    ("unknown network field", _net_with(dropout=0.1), "dropout"),
]


def test_valid_spec_builds():
    spec = NetworkSpec.from_dict(GOOD_NET)
    assert spec.total_stride == 16 and spec.num_units == 4
    assert [u.has_projection for u in spec.units(1)] == [True, False]
    assert spec.blocks[1].mid_width == 16


@pytest.mark.parametrize("case,data,field", INVALID, ids=[c[0] for c in INVALID])
def test_invalid_spec_names_the_field(case, data, field):
    with pytest.raises(SpecError) as info:
        NetworkSpec.from_dict(data)
    assert info.value.field == field
    assert str(info.value).startswith(field + ":")


def test_direct_construction_validates():
    with pytest.raises(SpecError, match="stride"):
        SuperBlockSpec("XX", 1, 32, stride=3)
    with pytest.raises(SpecError, match=r"blocks\[1\]"):
        NetworkSpec(8, (SuperBlockSpec("XX", 1, 8), "not a block"), 16)


@pytest.mark.parametrize("name", g.list_models())
def test_json_round_trip(name, tmp_path):
    spec = g.resolve_spec(name)
    assert NetworkSpec.from_json(spec.to_json()) == spec
    path = tmp_path / f"{name}.json"
    spec.save(path)
    assert g.resolve_spec(str(path)) == spec
    assert hash(spec) == hash(NetworkSpec.from_json(spec.to_json()))


def test_bad_json_file_names_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"stem_width": 8, "blocks": [{"block_type": "XX", "depth": 0, "width": 8}], '
                    '"final_width": 16}')
    with pytest.raises(SpecError) as info:
        g.resolve_spec(str(path))
    assert info.value.field == "blocks[0].depth" and "broken.json" in str(info.value)
    path.write_text("{not json")
    with pytest.raises(SpecError, match="not valid JSON"):
        g.resolve_spec(str(path))
    with pytest.raises(SpecError, match="does not exist"):
        g.resolve_spec(str(tmp_path / "missing.json"))


# ---- the authors' structure string ---------------------------------------------------------

def _official(stem, blocks, final, with_ids=True):
    """A string in the authors' format (GENet/GENet_*.txt); IDs made up here, as in their files."""
    counter = iter(range(100))
    ident = (lambda: f"uuid{next(counter):032x}|") if with_ids else (lambda: "")
    s = f"ConvKX({ident()}3,{stem},3,2)BN({ident()}{stem})RELU({ident()}{stem})"
    width = stem
    for token, out, k, stride, r, d in blocks:
        s += f"{token}({ident()}{width},{out},{k},{stride},{r},{d})"
        width = out
    return s + f"ConvKX({ident()}{width},{final},1,1)BN({ident()}{final})RELU({ident()}{final})" \
               f"AdaptiveAvgPool({final},1)"


OFFICIAL = {
    "genet_light": _official(13, [("SuperResKXKX", 48, 3, 2, 1.0, 1), ("SuperResKXKX", 48, 3, 2, 1.0, 3),
                                  ("SuperResK1KXK1", 384, 3, 2, 0.25, 7), ("SuperResK1DWK1", 560, 3, 2, 3.0, 2),
                                  ("SuperResK1DWK1", 256, 3, 1, 3.0, 1)], 1920),
    "genet_normal": _official(32, [("SuperResKXKX", 128, 3, 2, 1.0, 1), ("SuperResKXKX", 192, 3, 2, 1.0, 2),
                                   ("SuperResK1KXK1", 640, 3, 2, 0.25, 6), ("SuperResK1DWK1", 640, 3, 2, 3.0, 4),
                                   ("SuperResK1DWK1", 640, 3, 1, 3.0, 1)], 2560),
    "genet_large": _official(32, [("SuperResKXKX", 128, 3, 2, 1.0, 1), ("SuperResKXKX", 192, 3, 2, 1.0, 2),
                                  ("SuperResK1KXK1", 640, 3, 2, 0.25, 6), ("SuperResK1DWK1", 640, 3, 2, 3.0, 5),
                                  ("SuperResK1DWK1", 640, 3, 1, 3.0, 4)], 2560, with_ids=False),
}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_string_round_trip(name):
    reference = g.resolve_spec(name)
    parsed = g.parse_structure_string(OFFICIAL[name], resolution=reference.resolution)
    assert parsed == reference
    emitted = g.to_structure_string(parsed)
    assert g.parse_structure_string(emitted, resolution=reference.resolution) == reference
    assert emitted == g.to_structure_string(reference)  # deterministic IDs
    assert emitted.count("uuid") == 3 + len(reference.blocks) + 3


@pytest.mark.parametrize("name", g.list_models())
def test_every_spec_emits_a_parseable_string(name, tmp_path):
    spec = g.resolve_spec(name)
    text = g.to_structure_string(spec)
    assert g.parse_structure_string(text, spec.num_classes, spec.resolution) == spec
    path = tmp_path / "net.txt"
    path.write_text(text)
    assert g.resolve_spec(str(path), resolution=spec.resolution) == spec


@pytest.mark.parametrize("text,message", [
    ("ConvKX(3,8,3,2)RELU(8)", "must start with ConvKX BN RELU"),
    (_official(8, [("SuperResK1KX", 16, 3, 2, 1.0, 1)], 32), "unsupported block 'SuperResK1KX'"),
    (_official(8, [("SuperResKXKX", 16, 3, 2, 1.0, 1)], 32).replace("|8,16,", "|9,16,"),
     "takes 9 channels but the previous block gives 8"),
    (_official(8, [("SuperResKXKX", 16, 3, 2, 1.0, 1)], 32).replace(",1.0,1)", ",1.0)"), "takes 6 arguments"),
    (_official(8, [("SuperResKXKX", 16, 4, 2, 1.0, 1)], 32), "kernel_size"),
    ("ConvKX(3,8,3,2)BN(8)RELU(8)garbage", "cannot read a block"),
])
def test_bad_structure_string(text, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        g.parse_structure_string(text)


# ---- registry -----------------------------------------------------------------------------

def test_registry_holds_the_papers_networks():
    names = g.list_models()
    assert {"genet_light", "genet_normal", "genet_large", "masternet", "profilingnet132"} <= set(names)
    assert [f"table6_net{i}" for i in range(1, 21)] == [n for n in names if n.startswith("table6_")]
    assert g.resolve_spec("gernet_m") == g.resolve_spec("genet_normal")
    assert g.resolve_spec("genet_small") == g.resolve_spec("genet_light")


def test_masternet_is_net1_with_k5():
    master = g.resolve_spec("masternet")
    assert master == g.resolve_spec("table6_net1")
    assert [(b.block_type, b.depth, b.width, b.stride, b.kernel_size, b.ratio) for b in master.blocks] == [
        ("XX", 1, 64, 2, 5, 1.0), ("XX", 4, 96, 2, 5, 1.0), ("BL", 8, 512, 2, 5, 0.25),
        ("DW", 4, 320, 2, 5, 6.0), ("DW", 2, 320, 1, 5, 6.0)]
    assert (master.stem_width, master.final_width) == (32, 1280)


def test_table6_rows_decode():
    net9 = g.resolve_spec("table6_net9")
    assert [b.stride for b in net9.blocks] == [2, 2, 2, 1, 2]
    assert [b.block_type for b in g.resolve_spec("table6_net8").blocks] == ["DW"] * 5
    assert g.get_entry("table6_net20").paper_top1 == 75.8
    prof = g.resolve_spec("profilingnet132")
    assert all(b.block_type == "XX" and b.kernel_size == 3 for b in prof.blocks)
    assert (prof.stem_width, prof.final_width, prof.total_stride) == (16, 4096, 32)


def test_unknown_architecture_suggests():
    with pytest.raises(SpecError) as info:
        g.create_model("genet_nromal")
    assert info.value.field == "model" and "did you mean genet_normal" in str(info.value)


def test_register_user_spec():
    spec = NetworkSpec.from_dict(GOOD_NET)
    g.register_model("test_user_net", spec, "a user's network", overwrite=True)
    assert g.create_model("test_user_net").spec == spec
    with pytest.raises(ValueError, match="already registered"):
        g.register_model("test_user_net", spec)
    assert g.resolve_spec("test_user_net", num_classes=3).num_classes == 3


def test_table6_rows_that_are_the_same_network():
    """docs/results/models.md's note: these Table 6 rows build identical unit sequences; all others differ."""
    def units(name):
        s = g.resolve_spec(name)
        return s.stem_width, s.final_width, tuple(u for i in range(len(s.blocks)) for u in s.units(i))

    names = [f"table6_net{i}" for i in range(1, 21)]
    same = {(a, b) for i, a in enumerate(names) for b in names[i + 1:] if units(a) == units(b)}
    assert same == {(f"table6_net{a}", f"table6_net{b}") for a, b in
                    [(1, 6), (2, 3), (5, 7), (8, 10), (9, 11), (12, 13), (15, 19), (18, 20)]}


def test_parameter_path_names_round_trip():
    assert (paths.stage_name(3), paths.unit_name(12)) == ("stage3", "unit12")
    assert (paths.parse_stage("stage3"), paths.parse_unit("unit12")) == (3, 12)
    for bad in ("stage", "stagex", "unit1", "final"):
        with pytest.raises(ValueError):
            paths.parse_stage(bad)
    assert [paths.stage_of(p) for p in (("stage2", "unit0"), ("stem", "conv"), ("head",), ())] == [2, None, None, None]
    path = paths.UnitLayerPath(1, 4, "shortcut")
    assert path.names == ("stage1", "unit4", "shortcut")
    assert paths.UnitLayerPath.parse(path.names + ("bn", "scale")) == path


def test_conv_out_size_symmetric_and_explicit_padding():
    assert [conv_out_size(s, 3, 2) for s in (7, 8)] == [4, 4]  # pad 1 each side
    assert conv_out_size(9, 5, 1) == 9 and conv_out_size(4, 1, 2) == 2
    assert conv_out_size(8, 3, 2, (0, 1)) == 4 and conv_out_size(8, 3, 1, (0, 0)) == 6
