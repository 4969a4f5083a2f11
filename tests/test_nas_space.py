"""LLR-NAS search space: perturbation ranges, determinism and shards, width and depth choices,
the structure key."""
import os

import pytest

from genet_jax import NetworkSpec
from genet_jax.nas.space import perturbations, shard_jobs, spec_key
from tests.nas_helpers import MASTER, SPACE


def test_perturbations_stay_in_the_papers_ranges():
    jobs = perturbations(MASTER, 9, seed=3, space=SPACE)
    assert len(jobs) == 9 * len(MASTER.blocks)
    allowed = {(t.block_type, t.kernel_size, t.ratio) for t in SPACE.block_types()}
    assert allowed == {("XX", k, 1.0) for k in (3, 5)} | {("BL", k, r) for k in (3, 5) for r in (0.25, 0.5)} | \
        {("DW", k, r) for k in (3, 5) for r in (3.0, 6.0, 9.0)}
    for job in jobs:
        original, new = MASTER.blocks[job.block], job.spec.blocks[job.block]
        assert new != original
        assert (new.block_type, new.kernel_size, new.ratio) in allowed
        assert 0.5 * original.width <= new.width <= 2 * original.width and new.width % SPACE.width_multiple == 0
        assert max(1, original.depth - 2) <= new.depth <= original.depth + 2
        assert new.stride == original.stride
        assert [b for i, b in enumerate(job.spec.blocks) if i != job.block] == \
               [b for i, b in enumerate(MASTER.blocks) if i != job.block]
    for block in range(len(MASTER.blocks)):
        keys = [job.key for job in jobs if job.block == block]
        assert len(set(keys)) == len(keys) == 9  # distinct within a super-block
    depths = {job.spec.blocks[0].depth for job in jobs if job.block == 0}
    assert depths <= {1, 2, 3}  # depth 1 - 2 clamps to 1


def test_perturbations_are_reproducible_and_seeded():
    a, b = perturbations(MASTER, 5, 0, SPACE), perturbations(MASTER, 5, 0, SPACE)
    assert [j.key for j in a] == [j.key for j in b]
    assert [j.key for j in a] != [j.key for j in perturbations(MASTER, 5, 1, SPACE)]
    more = perturbations(MASTER, 7, 0, SPACE)  # more per block keeps the earlier draws
    for block in range(3):
        assert [j.key for j in a if j.block == block] == [j.key for j in more if j.block == block][:5]


def test_shards_are_disjoint_and_cover_every_job():
    jobs = perturbations(MASTER, 4, 0, SPACE)
    shards = [shard_jobs(jobs, i, 3) for i in range(3)]
    keys = [j.key for s in shards for j in s]
    assert sorted(keys) == sorted(j.key for j in jobs) and len(set(keys)) == len(keys)
    with pytest.raises(ValueError, match="shard"):
        shard_jobs(jobs, 3, 3)


def test_width_choices_are_multiples_in_range():
    assert SPACE.widths(32).tolist() == [16, 24, 32, 40, 48, 56, 64]
    assert SPACE.widths(10).tolist() == [8, 16]  # never below one multiple
    assert SPACE.depths(1).tolist() == [1, 2, 3]


def test_spec_key_is_stable_and_structural():
    assert spec_key(MASTER) == spec_key(NetworkSpec.from_json(MASTER.to_json()))
    assert spec_key(MASTER) != spec_key(MASTER.replace(resolution=32))
    assert len(spec_key(MASTER)) == 16 and os.sep not in spec_key(MASTER)
