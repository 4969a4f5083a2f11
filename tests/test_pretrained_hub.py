"""`pretrained=True` through huggingface_hub for real, offline: a Hugging Face cache laid out as
huggingface_hub lays it out (HF_HOME, HF_HUB_OFFLINE) and a local HTTP endpoint (HF_ENDPOINT) serving
weights made here. Each load runs in a fresh process (huggingface_hub reads those variables when it is
imported) and its logits must equal those of the same weights through the `.pth` import (<= 1e-6
relative: the same float32 arrays through the same XLA program). Failures: one line, exit code 2 from
the CLI, nothing partial left in the cache."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import genet_jax
from genet_jax.interop.pth_files import read_pth
from genet_jax.pretrained.catalog import HUB_WEIGHTS_FILE, pretrained_weights
from tests.conftest import REPO_ROOT
from tests.pretrained_helpers import (COMMIT, LOGITS_SCRIPT, cache_files, hub_endpoint, hub_environment,
                                      lay_out_hub_cache, safetensors_bytes, sha256)

pytestmark = pytest.mark.usefixtures("full_float32_products")  # tolerances of full float32 (no TF32)

torch = pytest.importorskip("torch", reason="torch: the reference .pth import (requirements-dev.txt installs it)")

NAME = "genet_light"
REPO = pretrained_weights(NAME).hub_repo
INPUT_SIZE = 64  # the network is convolutional; a small input keeps each process quick
RELATIVE_TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """(safetensors bytes, inputs .npy, reference logits) of genet_light with seeded random weights."""
    where = tmp_path_factory.mktemp("published")
    model = genet_jax.create_model(NAME)
    variables = genet_jax.init_variables(model, 7)
    data = safetensors_bytes(model.spec, variables, where / HUB_WEIGHTS_FILE)
    state = genet_jax.interop.to_state_dict(model.spec, variables, "timm")
    torch.save({k: torch.from_numpy(v.copy()) for k, v in state.items()}, where / "gernet_s.pth")
    spec, pth_variables, _, layout = read_pth(str(where / "gernet_s.pth"))
    assert layout == "timm" and spec == model.spec
    inputs = np.random.default_rng(0).normal(size=(2, INPUT_SIZE, INPUT_SIZE, 3)).astype(np.float32)
    np.save(where / "inputs.npy", inputs)
    return data, str(where / "inputs.npy"), np.asarray(model.apply(pth_variables, inputs))


def load_in_fresh_process(env: dict, out, inputs: str, name: str = NAME, pretrained: str = "True") -> dict:
    done = subprocess.run([sys.executable, "-c", LOGITS_SCRIPT, name, pretrained, inputs, str(out)],
                          capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def assert_same_logits(path, reference):
    np.testing.assert_allclose(np.load(path), reference, rtol=RELATIVE_TOLERANCE, atol=RELATIVE_TOLERANCE)


def predict_cli(env: dict, image: str, pretrained: str = NAME) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "genet_jax.predict", "--pretrained", pretrained, image],
                          capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=300)


def test_an_offline_hub_cache_loads_with_pretrained_true(published, tmp_path):
    data, inputs, reference = published
    lay_out_hub_cache(tmp_path / "hf", REPO, {HUB_WEIGHTS_FILE: data})
    info = load_in_fresh_process(hub_environment(tmp_path / "hf", offline=True), tmp_path / "out.npy", inputs)
    assert_same_logits(tmp_path / "out.npy", reference)
    assert info == {"source": f"{REPO}@main ({HUB_WEIGHTS_FILE})", "sha256": sha256(data), "classes": 1000}


def test_a_local_hub_endpoint_is_downloaded_verified_and_cached(published, tmp_path):
    data, inputs, reference = published
    with hub_endpoint({REPO: {HUB_WEIGHTS_FILE: data}}) as endpoint:
        info = load_in_fresh_process(hub_environment(tmp_path / "hf", endpoint), tmp_path / "out.npy", inputs)
    assert_same_logits(tmp_path / "out.npy", reference)
    assert info["sha256"] == sha256(data)
    repo_dir = f"models--{REPO.replace('/', '--')}"
    assert [f for f in cache_files(tmp_path / "hf") if f.startswith(repo_dir)] == sorted([
        f"{repo_dir}/blobs/{sha256(data)}", f"{repo_dir}/refs/main", f"{repo_dir}/snapshots/{COMMIT}/{HUB_WEIGHTS_FILE}"])
    # the endpoint is gone: the cache serves the same weights, offline
    load_in_fresh_process(hub_environment(tmp_path / "hf", offline=True), tmp_path / "again.npy", inputs)
    assert_same_logits(tmp_path / "again.npy", reference)


def test_a_hub_repo_written_by_save_pretrained_loads_by_its_id(published, tmp_path):
    data, inputs, reference = published
    model = genet_jax.create_model(NAME)
    genet_jax.save_pretrained(str(tmp_path / "folder"), model.spec, genet_jax.init_variables(model, 7))
    files = {name: (tmp_path / "folder" / name).read_bytes() for name in (HUB_WEIGHTS_FILE, "config.json")}
    with hub_endpoint({"someone/my-genet": files}) as endpoint:
        info = load_in_fresh_process(hub_environment(tmp_path / "hf", endpoint), tmp_path / "out.npy", inputs,
                                     name="", pretrained="hf-hub:someone/my-genet")
    assert_same_logits(tmp_path / "out.npy", reference)
    assert info["source"] == f"someone/my-genet@main ({HUB_WEIGHTS_FILE})"


def test_a_download_whose_bytes_differ_from_the_published_hash_leaves_nothing_behind(published, sample_jpegs,
                                                                                       tmp_path):
    data, _, _ = published
    tampered = bytearray(data)
    tampered[-1] ^= 0xFF  # same size: only the hash can tell
    with hub_endpoint({REPO: {HUB_WEIGHTS_FILE: bytes(tampered)}}, {f"{REPO}/{HUB_WEIGHTS_FILE}": sha256(data)}) as url:
        done = predict_cli(hub_environment(tmp_path / "hf", url), sample_jpegs[0])
    assert done.returncode == 2, done.stderr[-3000:]
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and "corrupt download" in line and sha256(data) in line, line
    assert not [f for f in cache_files(tmp_path / "hf") if "/blobs/" in f or "/snapshots/" in f]


def test_offline_and_not_cached_says_how_to_prefetch(sample_jpegs, tmp_path):
    done = predict_cli(hub_environment(tmp_path / "hf", offline=True), sample_jpegs[0])
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert f"hf download {REPO} {HUB_WEIGHTS_FILE}" in line and "pretrained='path/to/model.safetensors'" in line
    assert not [f for f in cache_files(tmp_path / "hf") if "/blobs/" in f or "/snapshots/" in f]


def test_the_authors_pth_source_reads_their_layout_from_its_cache(published, tmp_path):
    """source="pth": the authors' file name in the cache directory is used as is (no download)."""
    _, inputs, reference = published
    model = genet_jax.create_model(NAME)
    state = genet_jax.interop.to_state_dict(model.spec, genet_jax.init_variables(model, 7), "official")
    torch.save({"state_dict": {k: torch.from_numpy(v.copy()) for k, v in state.items()}},
               tmp_path / pretrained_weights(NAME).authors_file)
    loaded = genet_jax.load_pretrained(NAME, source="pth", cache_dir=str(tmp_path))
    np.testing.assert_allclose(np.asarray(loaded.model.apply(loaded.variables, np.load(inputs))), reference,
                               rtol=RELATIVE_TOLERANCE, atol=RELATIVE_TOLERANCE)
    assert loaded.source.startswith(pretrained_weights(NAME).authors_url) and os.path.isfile(
        tmp_path / pretrained_weights(NAME).authors_file)
