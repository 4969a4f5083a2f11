"""The authors' one-line structure string, parsed into and emitted from a NetworkSpec.

Grammar (GENet/GENet_*.txt in the authors' release): a concatenation of `Name(ID|a,b,...)`
tokens, the `ID|` part optional. A GENet is
    ConvKX(3,stem,k,s) BN(stem) RELU(stem)
    SuperRes<T>(in,out,k,stride,ratio,depth) ...       T in KXKX (XX), K1KXK1 (BL), K1DWK1 (DW)
    ConvKX(last,final,1,1) BN(final) RELU(final) [AdaptiveAvgPool(final,1)]
The string carries no class count or resolution; those are arguments of `parse_structure_string`.
"""
from __future__ import annotations

import re
import uuid

from genet_jax.arch.spec import NetworkSpec, SpecError, SuperBlockSpec

SUPER_BLOCK_TOKENS = {"SuperResKXKX": "XX", "SuperResK1KXK1": "BL", "SuperResK1DWK1": "DW"}
TOKEN_FOR_TYPE = {v: k for k, v in SUPER_BLOCK_TOKENS.items()}

_TOKEN = re.compile(r"\s*([A-Za-z][A-Za-z0-9]*)\(([^()]*)\)\s*")
_ID_NAMESPACE = uuid.UUID("6a4f3f0e-8f0e-4c1e-9a55-2b9d4a6c0e11")


class StructureStringError(SpecError):
    def __init__(self, message: str):
        super().__init__("structure_string", message)


def _tokenize(text: str) -> list[tuple[str, list[str], int]]:
    tokens, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise StructureStringError(f"cannot read a block at character {pos}: {text[pos:pos + 40]!r}")
        name, body = match.group(1), match.group(2)
        if "|" in body:
            body = body.split("|", 1)[1]
        args = [a.strip() for a in body.split(",")] if body.strip() else []
        tokens.append((name, args, pos))
        pos = match.end()
    return tokens


def _ints(name: str, args: list[str], count: int, pos: int) -> list[int]:
    if len(args) != count:
        raise StructureStringError(f"{name} at character {pos} takes {count} arguments, got {len(args)}")
    try:
        return [int(a) for a in args]
    except ValueError:
        raise StructureStringError(f"{name} at character {pos}: arguments must be integers, "
                                   f"got {args}") from None


def parse_structure_string(text: str, num_classes: int = 1000, resolution: int = 224) -> NetworkSpec:
    """Parse the authors' structure string into a validated NetworkSpec."""
    tokens = _tokenize(text)
    names = [t[0] for t in tokens]
    if names[:3] != ["ConvKX", "BN", "RELU"]:
        raise StructureStringError(f"must start with ConvKX BN RELU (the stem), got {names[:3]}")
    if names and names[-1] == "AdaptiveAvgPool":
        tokens = tokens[:-1]
        names = names[:-1]
    if len(names) < 7 or names[-3:] != ["ConvKX", "BN", "RELU"]:
        raise StructureStringError("must end with ConvKX BN RELU (the final 1x1 conv) and an optional "
                                   f"AdaptiveAvgPool, got {names[-3:]}")

    in_channels, stem_width, stem_k, stem_s = _ints("ConvKX", tokens[0][1], 4, tokens[0][2])
    width = stem_width
    blocks = []
    for name, args, pos in tokens[3:-3]:
        if name not in SUPER_BLOCK_TOKENS:
            raise StructureStringError(
                f"unsupported block {name!r} at character {pos}; GENet super-blocks are "
                f"{sorted(SUPER_BLOCK_TOKENS)}")
        if len(args) != 6:
            raise StructureStringError(f"{name} at character {pos} takes 6 arguments, got {len(args)}")
        try:
            cin, cout, k, s, ratio, depth = (int(args[0]), int(args[1]), int(args[2]), int(args[3]),
                                             float(args[4]), int(args[5]))
        except ValueError:
            raise StructureStringError(f"{name} at character {pos}: cannot read arguments {args}") from None
        if cin != width:
            raise StructureStringError(f"{name} at character {pos} takes {cin} channels but the "
                                       f"previous block gives {width}")
        blocks.append(SuperBlockSpec(SUPER_BLOCK_TOKENS[name], depth, cout, s, k, ratio))
        width = cout

    (cin, final_width, k, s), final_pos = _ints("ConvKX", tokens[-3][1], 4, tokens[-3][2]), tokens[-3][2]
    if cin != width:
        raise StructureStringError(f"final ConvKX at character {final_pos} takes {cin} channels but "
                                   f"the last super-block gives {width}")
    if (k, s) != (1, 1):
        raise StructureStringError(f"final ConvKX at character {final_pos} must be 1x1 stride 1, "
                                   f"got kernel {k} stride {s}")
    return NetworkSpec(stem_width=stem_width, blocks=tuple(blocks), final_width=final_width,
                       num_classes=num_classes, resolution=resolution, in_channels=in_channels,
                       stem_kernel_size=stem_k, stem_stride=stem_s)


def to_structure_string(spec: NetworkSpec) -> str:
    """Emit the authors' structure string for any spec; IDs are derived from the structure, so
    the same network always gives the same string."""
    layers = [("ConvKX", (spec.in_channels, spec.stem_width, spec.stem_kernel_size, spec.stem_stride)),
              ("BN", (spec.stem_width,)), ("RELU", (spec.stem_width,))]
    width = spec.stem_width
    for block in spec.blocks:
        layers.append((TOKEN_FOR_TYPE[block.block_type], (width, block.width, block.kernel_size,
                                                          block.stride, float(block.ratio), block.depth)))
        width = block.width
    layers += [("ConvKX", (width, spec.final_width, 1, 1)), ("BN", (spec.final_width,)),
               ("RELU", (spec.final_width,))]
    body = ";".join(f"{name}{args}" for name, args in layers)
    parts = []
    for index, (name, args) in enumerate(layers):
        ident = uuid.uuid5(_ID_NAMESPACE, f"{body}#{index}").hex
        parts.append(f"{name}(uuid{ident}|{','.join(str(a) for a in args)})")
    parts.append(f"AdaptiveAvgPool({spec.final_width},1)")
    return "".join(parts)
