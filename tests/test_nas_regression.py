"""The local linear model: recovery of known pseudo-gradients, held-out predictions, fit quality."""
import numpy as np
import pytest

from genet_jax.nas.local_linear import Sample, fit_local_linear_model, fit_quality, leave_one_out
from genet_jax.nas.space import BlockType, make_block
from tests.nas_helpers import MASTER, synthetic_samples


def test_regression_recovers_known_per_type_coefficients():
    coefficients = {(0, "XX-k3-r1"): (0.004, 0.0010, 0.0), (0, "BL-k5-r0.5"): (-0.002, 0.0005, -0.01),
                    (1, "BL-k3-r0.25"): (0.006, -0.0002, 0.0), (1, "DW-k3-r6"): (0.001, 0.0003, 0.02),
                    (2, "DW-k3-r3"): (-0.003, 0.0004, 0.0)}
    samples = synthetic_samples(MASTER, coefficients, np.random.default_rng(0))
    model = fit_local_linear_model(MASTER, 0.7, samples, ridge=0.0)
    for (block, key), (g_d, g_c, b) in coefficients.items():
        fit = model.fits[(block, key)]
        assert fit.g_depth == pytest.approx(g_d, abs=1e-6)   # tolerance: the tiny stabilising ridge
        assert fit.g_width == pytest.approx(g_c, abs=1e-7)
        assert fit.intercept == pytest.approx(b, abs=1e-6)
    spec = MASTER.with_block(1, make_block(BlockType.from_key("DW-k3-r6"), 2, 48, 2))
    assert model.predict(spec) == pytest.approx(0.7 + 0.001 * -1 + 0.0003 * 16 + 0.02, abs=1e-5)
    with pytest.raises(KeyError, match="super-block 0"):
        model.predict(MASTER.with_block(0, make_block(BlockType.from_key("DW-k5-r9"), 1, 16, 2)))


def test_shared_slopes_with_type_intercepts_and_held_out_predictions():
    # one slope pair per block, types differ only by intercept: the default ridge recovers it exactly,
    # and leave-one-out predictions of noise-free data are exact (Spearman 1)
    coefficients = {(1, "BL-k3-r0.25"): (0.005, 0.0002, 0.0), (1, "BL-k5-r0.25"): (0.005, 0.0002, -0.01),
                    (1, "DW-k3-r3"): (0.005, 0.0002, 0.015)}
    samples = synthetic_samples(MASTER, coefficients, np.random.default_rng(1), per_type=4)
    model = fit_local_linear_model(MASTER, 0.7, samples)
    assert model.fits[(1, "DW-k3-r3")].intercept == pytest.approx(0.015, abs=1e-6)
    held_out = leave_one_out(MASTER, 0.7, samples)
    np.testing.assert_allclose(held_out, [s.accuracy for s in samples], atol=1e-6)
    quality = fit_quality([s.accuracy for s in samples], held_out)
    assert quality["pairs"] == len(samples) and quality["spearman"] == pytest.approx(1.0)
    noisy = synthetic_samples(MASTER, coefficients, np.random.default_rng(1), per_type=4, noise=0.01)
    assert fit_quality([s.accuracy for s in noisy], leave_one_out(MASTER, 0.7, noisy))["rmse"] > 1e-3


def test_a_type_seen_once_has_no_held_out_prediction():
    samples = [Sample(0, make_block(BlockType.from_key("DW-k3-r3"), 1, 16, 2), 0.6),
               Sample(0, make_block(BlockType.from_key("XX-k3-r1"), 2, 16, 2), 0.72)]
    held_out = leave_one_out(MASTER, 0.7, samples)
    assert np.isnan(held_out[0]) and np.isfinite(held_out[1])
