"""What the search persists: the fine-tune results store, and the stored keys, pinned to the values
existing workdirs hold."""
from genet_jax.nas import store
from genet_jax.nas.space import spec_key
from genet_jax.nas.store import fingerprint, sha256_key
from tests.nas_helpers import MASTER


def test_results_store_survives_a_line_cut_short(tmp_path):
    path = store.shard_file(str(tmp_path), 0, 1)
    store.append_result(path, {"key": "a", "accuracy": 0.5})
    with open(path, "a") as f:
        f.write('{"key": "b", "accur')  # killed mid-write
    store.append_result(path, {"key": "c", "accuracy": 0.7})
    store.append_result(store.shard_file(str(tmp_path), 1, 2), {"key": "a", "accuracy": 0.1})
    results = store.load_results(str(tmp_path))
    assert sorted(results) == ["a", "c"] and results["a"]["accuracy"] == 0.5


class Unserialisable:
    def __str__(self):
        return "x-object"


def test_stored_keys_keep_their_values():
    # the values genet_jax gave before sha256_key was shared: keys in existing workdirs must still match
    assert spec_key(MASTER) == "9d841bd22338524d"
    assert spec_key(MASTER.replace(resolution=32)) == "cae699f11d47ee41"
    assert fingerprint(MASTER.to_dict(), [["XX-k3-r1"]], "abc", 0.25, 7, {"b": 1, "a": (1, 2)}, None) == \
        "3e96eec9577f03e1"
    assert fingerprint({"z": 1, "a": [1.5, "q"]}, Unserialisable()) == "2f908802ab9c39c7"
    assert sha256_key("") == "e3b0c44298fc1c14" and len(sha256_key("abc")) == store.KEY_HEX_DIGITS
