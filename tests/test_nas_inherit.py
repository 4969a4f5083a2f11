"""Weight inheritance from the MasterNet into a perturbed network."""
import numpy as np

from genet_jax import create_model
from genet_jax.arch.spec import SuperBlockSpec
from genet_jax.models.network import init_variables
from genet_jax.nas.inherit import COPIED, FRESH, PARTIAL, inherit_variables
from tests.helpers import random_variables
from tests.nas_helpers import MASTER


def flat(tree, prefix=""):
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict) or hasattr(v, "items"):
            out.update(flat(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = np.asarray(v)
    return out


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
