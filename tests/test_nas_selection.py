"""Selection: candidates scored by the model, and a pick never over the measured budget."""
import numpy as np
import pytest

from genet_jax.latency import probe_latency
from genet_jax.nas.candidates import Candidates, predict_accuracy, sample_candidates, select
from genet_jax.nas.local_linear import fit_local_linear_model
from tests.nas_helpers import MASTER, SPACE, synthetic_samples


def test_selection_never_returns_a_structure_over_the_measured_budget():
    # the table (here: 0 for everyone) calls all feasible; the two most accurate are far over the
    # budget by the real probe and must be rejected, the next round's best that fits is picked
    keys = [["XX-k3-r1"], ["BL-k3-r0.5"], ["DW-k3-r6"]]
    huge, small = ([3, 5, 4], [128, 256, 256]), ([1, 1, 1], [16, 16, 16])
    candidates = Candidates(keys, np.zeros((6, 3), int), np.asarray([[1, 3, 2], huge[0], huge[0], small[0],
                                                                     small[0], small[0]]),
                            np.asarray([[16, 32, 32], huge[1], huge[1], small[1], small[1], small[1]]))
    accuracy = np.asarray([0.7, 0.99, 0.98, 0.90, 0.89, 0.88])
    master = MASTER.replace(resolution=32)

    def measure(spec):
        return probe_latency(spec, batch=16, runs=5, warmup=1, rounds=1).ms_per_image

    # a budget between the small and the huge structures by a wide margin either side, so load on
    # the machine (other test workers) cannot move a structure across it
    fast, slow = measure(candidates.spec(master, 3)), measure(candidates.spec(master, 1))
    assert slow > 8 * fast
    budget = float(np.sqrt(fast * slow))
    choice = select(master, candidates, accuracy, np.zeros(6), budget, measure, top_k=2)
    assert choice.measured_latency <= budget
    assert [m["row"] for m in choice.measured] == [1, 2, 3, 4]
    assert all(m["measured_latency"] > budget for m in choice.measured[:2])
    assert choice.row == 3 and choice.predicted_accuracy == 0.90
    with pytest.raises(RuntimeError, match="no structure fits the budget"):
        select(master, candidates, accuracy, np.ones(6), 0.5, measure)  # predicted over budget: none measured


def test_scored_candidates_respect_the_table_and_model(tiny_table):
    keys, table = tiny_table
    coefficients = {(0, "XX-k3-r1"): (0.01, 0.002, 0.0), (1, "BL-k3-r0.25"): (0.01, 0.001, 0.0),
                    (1, "DW-k3-r3"): (0.01, 0.001, 0.01), (2, "DW-k3-r3"): (0.01, 0.001, 0.0)}
    model = fit_local_linear_model(MASTER, 0.7, synthetic_samples(MASTER, coefficients, np.random.default_rng(2)))
    candidates = sample_candidates(MASTER, keys, SPACE, 500, seed=1)
    accuracy = predict_accuracy(model, candidates)
    assert accuracy[0] == pytest.approx(0.7)  # row 0 is the MasterNet
    for row in (1, 17, 300):
        assert accuracy[row] == pytest.approx(model.predict(candidates.spec(MASTER, row)), abs=1e-9)
    again = sample_candidates(MASTER, keys, SPACE, 500, seed=1)
    np.testing.assert_array_equal(candidates.widths, again.widths)
