"""Weight inheritance for a perturbed network (paper: 'the rest of the network inherited').

Rule, per tensor of the new network (params and BN statistics alike):
  * same path and shape in the MasterNet -> copied;
  * same path, same rank, different shape (a width or kernel change) -> the overlapping block is
    copied (leading channels; kernels centred, so a 3x3 sits in the middle of a 5x5) and the rest
    keeps its fresh initialisation;
  * otherwise (a new unit, a new projection shortcut, or any tensor of a super-block whose block
    type changed: XX/BL/DW layers mean different things) -> fresh initialisation.
Fresh residual units start with a zero last-BN scale when the model was built with
zero_init_last_bn, so an added unit begins as an identity and does not disturb the inherited ones.
"""
from __future__ import annotations

import collections
from typing import Mapping

import numpy as np
from flax import traverse_util

from genet_jax.arch.paths import stage_of
from genet_jax.arch.spec import NetworkSpec

COPIED, PARTIAL, FRESH = "copied", "partial", "fresh"


def _overlap_slices(old_shape, new_shape, centred_dims: int) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    old_index, new_index = [], []
    for dim, (o, n) in enumerate(zip(old_shape, new_shape)):
        size = min(o, n)
        if dim < centred_dims:
            old_index.append(slice((o - size) // 2, (o - size) // 2 + size))
            new_index.append(slice((n - size) // 2, (n - size) // 2 + size))
        else:
            old_index.append(slice(0, size))
            new_index.append(slice(0, size))
    return tuple(old_index), tuple(new_index)


def _changed_type_stages(master: NetworkSpec, new: NetworkSpec) -> set[int]:
    """Super-blocks of `new` that are new or changed type."""
    stages = {i for i, (a, b) in enumerate(zip(master.blocks, new.blocks)) if a.block_type != b.block_type}
    stages.update(range(min(len(master.blocks), len(new.blocks)), len(new.blocks)))
    return stages


def inherit_variables(master_variables: Mapping, fresh_variables: Mapping, master: NetworkSpec,
                      new: NetworkSpec) -> tuple[dict, dict[str, str]]:
    """(variables of `new` built from the MasterNet's, {path: copied|partial|fresh})."""
    skip = _changed_type_stages(master, new)
    old_flat = traverse_util.flatten_dict(master_variables)
    new_flat = traverse_util.flatten_dict(fresh_variables)
    out, report = {}, {}
    for key, fresh in new_flat.items():  # key: (collection, module names..., leaf)
        fresh, path = np.asarray(fresh), "/".join(key)
        old = old_flat.get(key)
        if old is None or stage_of(key[1:]) in skip:
            out[path], report[path] = fresh, FRESH
            continue
        old = np.asarray(old)
        if old.shape == fresh.shape:
            out[path], report[path] = old.copy(), COPIED
        elif old.ndim == fresh.ndim:
            merged = fresh.copy()
            old_index, new_index = _overlap_slices(old.shape, fresh.shape, 2 if fresh.ndim == 4 else 0)
            merged[new_index] = old[old_index]
            out[path], report[path] = merged, PARTIAL
        else:
            out[path], report[path] = fresh, FRESH
    return traverse_util.unflatten_dict(out, sep="/"), report


def summarize(report: Mapping[str, str]) -> dict[str, int]:
    return dict(collections.Counter(report.values()))
