"""Flax variables <-> PyTorch state_dicts in three key layouts, as NumPy arrays (no torch needed).

- "torch":    genet_jax.interop.torch_model.TorchGENet; keys are the Flax paths (`stage0.unit0.conv1.conv.weight`)
- "official": the authors' PlainNet (`module_list.{n}...`, `fc_linear.*`)
- "timm":     timm's ByobNet gernet_s/m/l (`stages.{i}.{j}.conv1_kxk.conv.weight`, `head.fc.*`)

Tensors: conv HWIO <-> OIHW (depthwise (k,k,1,C) <-> (C,1,k,k)); Dense (in,out) <-> Linear (out,in);
BN scale/bias/mean/var <-> weight/bias/running_mean/running_var. PyTorch's num_batches_tracked has
no Flax counterpart: it travels in `extras` so torch -> JAX -> torch is exact.
"""
from __future__ import annotations

from typing import Any, Iterator, Mapping

import numpy as np
from flax import traverse_util

from genet_jax.arch.paths import FINAL, HEAD, STEM, UnitLayerPath
from genet_jax.arch.registry import resolve_spec
from genet_jax.arch.spec import SHORTCUT, NetworkSpec
from genet_jax.errors import InputError

LAYOUTS = ("torch", "official", "timm")
_BN_FIELDS = {("params", "scale"): "weight", ("params", "bias"): "bias",
              ("batch_stats", "mean"): "running_mean", ("batch_stats", "var"): "running_var"}


class StateDictError(InputError, ValueError):
    """A state_dict that does not fit the architecture; the message names the key(s)."""


def _conv_bn_prefixes(spec: NetworkSpec) -> Iterator[tuple[tuple[str, ...], str, tuple[int, ...]]]:
    """(Flax path, block type or layer role, PyTorch OIHW weight shape) of every conv-BN pair."""
    k = spec.stem_kernel_size
    yield (STEM,), STEM, (spec.stem_width, spec.in_channels, k, k)
    for i in range(len(spec.blocks)):
        for j, unit in enumerate(spec.units(i)):
            for conv in unit.conv_layers():
                yield UnitLayerPath(i, j, conv.name).names, unit.block_type, conv.torch_weight_shape
    yield (FINAL,), FINAL, (spec.final_width, spec.blocks[-1].width, 1, 1)


def _layer_names(path: tuple[str, ...], block_type: str, spec: NetworkSpec, layout: str) -> tuple[str, str]:
    """(conv module name, BN module name) of a conv-BN pair in `layout`."""
    torch_name = ".".join(path)
    if layout == "torch":
        return f"{torch_name}.conv", f"{torch_name}.bn"
    n = len(spec.blocks)
    if path[0] in (STEM, FINAL):
        if layout == "timm":
            module = "stem" if path[0] == STEM else "final_conv"  # timm's names
            return f"{module}.conv", f"{module}.bn"
        index = 0 if path[0] == STEM else 3 + n
        return f"module_list.{index}.netblock", f"module_list.{index + 1}.netblock"
    stage, unit, conv = UnitLayerPath.parse(path)
    if layout == "timm":
        kind = {"conv1": "1x1" if block_type != "XX" else "kxk", "conv2": "kxk", "conv3": "1x1"}
        name = "shortcut" if conv == SHORTCUT else f"{conv}_{kind[conv]}"
        return f"stages.{stage}.{unit}.{name}.conv", f"stages.{stage}.{unit}.{name}.bn"
    base = f"module_list.{3 + stage}"
    if conv == SHORTCUT:
        return f"{base}.shortcut_list.{unit}.0", f"{base}.shortcut_list.{unit}.1"
    index = {"conv1": 0, "conv2": 3, "conv3": 6}[conv]
    return f"{base}.conv_list.{unit}.{index}", f"{base}.conv_list.{unit}.{index + 1}"


def head_name(layout: str) -> str:
    return {"torch": "head", "official": "fc_linear", "timm": "head.fc"}[layout]


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


def state_dict_keys(spec: NetworkSpec, layout: str) -> list[str]:
    """Every key of the state_dict of `spec` in `layout`, in module order."""
    _check_layout(layout)
    keys = []
    for path, block_type, _ in _conv_bn_prefixes(spec):
        conv, bn = _layer_names(path, block_type, spec, layout)
        keys.append(f"{conv}.weight")
        keys += [f"{bn}.{f}" for f in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]
    head = head_name(layout)
    return keys + [f"{head}.weight", f"{head}.bias"]


def to_state_dict(spec: NetworkSpec, variables: Mapping, layout: str = "torch",
                  extras: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Flax {'params', 'batch_stats'} (unfolded) -> {key: NumPy array} in `layout`.

    extras: {'num_batches_tracked': {key: int}} from `from_state_dict`, else the counters are 0.
    """
    _check_layout(layout)
    params = traverse_util.flatten_dict(dict(variables["params"]))
    stats = traverse_util.flatten_dict(dict(variables["batch_stats"]))
    tracked = dict((extras or {}).get("num_batches_tracked", {}))
    out: dict[str, np.ndarray] = {}
    for path, block_type, _ in _conv_bn_prefixes(spec):
        conv, bn = _layer_names(path, block_type, spec, layout)
        kernel = np.asarray(params[path + ("conv", "kernel")])
        out[f"{conv}.weight"] = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))
        for (collection, leaf), field in _BN_FIELDS.items():
            source = params if collection == "params" else stats
            out[f"{bn}.{field}"] = np.asarray(source[path + ("bn", leaf)])
        canonical = ".".join(path) + ".bn.num_batches_tracked"
        out[f"{bn}.num_batches_tracked"] = np.asarray(tracked.get(canonical, 0), dtype=np.int64)
    head = head_name(layout)
    out[f"{head}.weight"] = np.ascontiguousarray(np.asarray(params[(HEAD, "kernel")]).T)
    out[f"{head}.bias"] = np.asarray(params[(HEAD, "bias")])
    return out


def _as_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor; avoid importing torch here
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def from_state_dict(spec: NetworkSpec, state_dict: Mapping[str, Any],
                    layout: str = "torch") -> tuple[dict, dict]:
    """{key: tensor} in `layout` -> (Flax {'params', 'batch_stats'}, extras). Strict: every key of
    the architecture must be present with its shape, and no other key may be."""
    _check_layout(layout)
    expected = state_dict_keys(spec, layout)
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in set(expected)]
    if missing or unexpected:
        raise StateDictError(f"state_dict does not match the {layout!r} layout of this architecture: "
                             f"{len(missing)} missing key(s) {missing[:5]}, {len(unexpected)} unexpected "
                             f"key(s) {unexpected[:5]}")
    params, stats, tracked = {}, {}, {}

    def take(key: str, shape: tuple[int, ...]) -> np.ndarray:
        value = _as_numpy(state_dict[key])
        if value.shape != tuple(shape):
            raise StateDictError(f"{key}: the checkpoint holds shape {tuple(value.shape)}, the architecture "
                                 f"needs {tuple(shape)}")
        return value

    for path, block_type, shape in _conv_bn_prefixes(spec):
        conv, bn = _layer_names(path, block_type, spec, layout)
        weight = take(f"{conv}.weight", shape)
        cout = shape[0]
        params[path + ("conv", "kernel")] = weight.transpose(2, 3, 1, 0).astype(np.float32)
        for (collection, leaf), field in _BN_FIELDS.items():
            target = params if collection == "params" else stats
            target[path + ("bn", leaf)] = take(f"{bn}.{field}", (cout,)).astype(np.float32)
        tracked[".".join(path) + ".bn.num_batches_tracked"] = int(_as_numpy(state_dict[f"{bn}.num_batches_tracked"]).item())
    head = head_name(layout)
    params[(HEAD, "kernel")] = take(f"{head}.weight", (spec.num_classes, spec.final_width)).T.astype(np.float32)
    params[(HEAD, "bias")] = take(f"{head}.bias", (spec.num_classes,)).astype(np.float32)
    variables = {"params": traverse_util.unflatten_dict(params),
                 "batch_stats": traverse_util.unflatten_dict(stats)}
    return variables, {"num_batches_tracked": tracked}


def convert_state_dict(state_dict: Mapping[str, Any], spec: NetworkSpec, source: str, target: str) -> dict:
    """Rename keys between layouts (official <-> timm <-> torch); values are passed through."""
    source_keys, target_keys = state_dict_keys(spec, source), state_dict_keys(spec, target)
    missing = [k for k in source_keys if k not in state_dict]
    if missing or len(state_dict) != len(source_keys):
        raise StateDictError(f"state_dict does not match the {source!r} layout: missing {missing[:5]}")
    return {t: state_dict[s] for s, t in zip(source_keys, target_keys)}


def detect_layout(state_dict: Mapping[str, Any]) -> str:
    keys = set(state_dict)
    if "module_list.0.netblock.weight" in keys and "fc_linear.weight" in keys:
        return "official"
    if "stem.conv.weight" in keys and "head.fc.weight" in keys:
        return "timm"
    if "stem.conv.weight" in keys and "head.weight" in keys:
        return "torch"
    raise StateDictError("not a GENet state_dict: expected the authors' (module_list.*), timm's (stem.conv.*, "
                         f"head.fc.*) or genet_jax's (stem.conv.*, head.*) keys; first keys: {sorted(keys)[:5]}")


TIMM_NAMES = {"genet_light": "gernet_s", "genet_normal": "gernet_m", "genet_large": "gernet_l"}


def _timm_make_divisible(value: float, divisor: int = 8) -> int:
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def timm_model_name(spec: NetworkSpec) -> str | None:
    """'gernet_s' / 'gernet_m' / 'gernet_l' when `spec` is one of timm's models (any class count)."""
    for ours, theirs in TIMM_NAMES.items():
        if resolve_spec(ours).replace(num_classes=spec.num_classes, resolution=spec.resolution) == spec:
            return theirs
    return None


def timm_config(spec: NetworkSpec) -> dict:
    """The fields of timm's ByoModelCfg / ByoBlockCfg that build `spec` in timm's ByobNet.

    timm rounds inner widths with make_divisible(width * br, 8); `exact` says whether that gives
    the same widths as the authors' round(width * ratio) for every super-block.
    """
    blocks, exact = [], True
    for b in spec.blocks:
        block = {"type": "basic" if b.block_type == "XX" else "bottle", "d": b.depth, "c": b.width, "s": b.stride,
                 "gs": 1 if b.block_type == "DW" else 0, "br": float(b.ratio)}
        if b.kernel_size != 3:
            block["block_kwargs"] = {"kernel_size": b.kernel_size}
        exact &= _timm_make_divisible(b.width * b.ratio) == b.mid_width
        blocks.append(block)
    exact &= (spec.stem_kernel_size, spec.stem_stride, spec.in_channels) == (3, 2, 3)
    return {"blocks": blocks, "stem_chs": spec.stem_width, "stem_pool": None,
            "num_features": spec.final_width, "num_classes": spec.num_classes, "exact": bool(exact)}
