"""The NAS validation split: training images held out by a seeded permutation, used for evaluation."""
import numpy as np
import pytest

from configs.default import get_config
from genet_jax.data.sources import DataError, digits_source
from genet_jax.data.subsets import holdout_split
from genet_jax.training.config import ConfigError
from genet_jax.training.inputs import open_sources


def test_holdout_split_is_seeded_disjoint_and_used_for_evaluation():
    source = digits_source("train")
    rest, held = holdout_split(source, 200, seed=5)
    assert len(rest) + len(held) == len(source) and len(held) == 200
    ids = lambda part: {part.records.indices[i] for i in range(len(part))}  # noqa: E731
    assert not ids(rest) & ids(held)
    assert ids(holdout_split(source, 200, seed=5)[1]) == ids(held) != ids(holdout_split(source, 200, seed=6)[1])
    np.testing.assert_array_equal(held[0][0], source[int(held.records.indices[0])][0])
    with pytest.raises(DataError, match="cannot hold out"):
        holdout_split(source, len(source), 0)

    config = get_config()
    config.data.holdout_size = 150
    config.data.eval_split = "holdout"
    train_source, eval_source = open_sources(config)
    assert len(eval_source) == 150 and len(train_source) == len(source) - 150
    config.data.holdout_size = 0
    with pytest.raises(ConfigError, match="data.eval_split"):
        open_sources(config)
