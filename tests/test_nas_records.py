"""The records the LLR-NAS stages hand each other (genet_jax.nas.records), against the files of a
search made before they carried a schema version (tests/fixtures/nas_workdir_v0): each loads,
round-trips and is written back as it was (plus its schema version); the select stage resumes from
them; a file of another version, or short of a field, is refused with one line naming it."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from genet_jax.errors import INPUT_ERROR_EXIT_CODE
from genet_jax.nas import store
from genet_jax.nas.context import open_context
from genet_jax.nas.final import best_resolution
from genet_jax.nas.master import load_master
from genet_jax.nas.records import (SCHEMA_VERSION, SCHEMA_VERSION_FIELD, FinetuneRecord, MasterRecord, RecordError,
                                   RegressionRecord, ResolutionPick, SearchResult, SelectionRecord, load_record)
from genet_jax.nas.regression import fit_regression
from genet_jax.nas.store import read_json
from tests.conftest import REPO_ROOT

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "nas_workdir_v0")
RESULTS = os.path.join(FIXTURE, "results")
RECORD_FILES = [(MasterRecord, "master.json"), (RegressionRecord, "pseudo_gradients.json"),
                (SelectionRecord, "selection_r16.json"), (SearchResult, "search_result.json")]
NUM_JOBS = 3  # the fixture's fine-tunes: the baseline and one perturbation per super-block


def without_version(stored: dict) -> dict:
    return {k: v for k, v in stored.items() if k != SCHEMA_VERSION_FIELD}


def through_json_text(stored: dict) -> dict:
    return json.loads(json.dumps(stored))


def fixture_search_config(workdir):
    """The search config the fixture was made with, on `workdir`."""
    namespace = {}
    with open(os.path.join(FIXTURE, "search_config.py")) as f:
        exec(f.read(), namespace)
    config = namespace["get_config"]()
    config.workdir = str(workdir)
    return config


@pytest.mark.parametrize("record_class, name", RECORD_FILES)
def test_each_record_file_of_a_v0_workdir_loads_round_trips_and_is_written_as_it_was(record_class, name):
    path = os.path.join(FIXTURE, name)
    record = load_record(record_class, path)
    stored = record.to_json()
    assert stored[SCHEMA_VERSION_FIELD] == SCHEMA_VERSION
    assert without_version(stored) == read_json(path)
    assert record_class.from_json(through_json_text(stored), "again") == record


def test_each_fine_tune_line_of_a_v0_workdir_loads_round_trips_and_is_written_as_it_was():
    records, lines = store.load_results(RESULTS, FinetuneRecord.from_json), store.load_results(RESULTS)
    assert len(records) == NUM_JOBS and sorted(records) == sorted(lines)
    for key, record in records.items():
        stored = record.to_json()
        assert without_version(stored) == lines[key] and record.key == key
        assert FinetuneRecord.from_json(through_json_text(stored), "again") == record


def test_the_select_stage_resumes_from_a_v0_workdir(tmp_path):
    """The regression over the fixture's fine-tunes gives the model, quality and fits it recorded, bit
    for bit; its selection and trained pick make the search result it recorded."""
    workdir = tmp_path / "search"
    shutil.copytree(FIXTURE, workdir)
    ctx = open_context(fixture_search_config(workdir))
    assert fit_regression(ctx) == load_record(RegressionRecord, os.path.join(FIXTURE, "pseudo_gradients.json"))
    result = load_record(SearchResult, os.path.join(FIXTURE, "search_result.json"))
    (recorded_pick,) = result.resolutions
    selection = load_record(SelectionRecord, os.path.join(FIXTURE, "selection_r16.json"))
    pick = ResolutionPick.of(selection, recorded_pick.trained)
    assert pick == recorded_pick and best_resolution([pick]) == (pick, result.resolution_choice)
    assert (result.selected.spec, result.selected.trained_accuracy) == (pick.spec, pick.trained.accuracy)
    assert load_master(ctx).accuracy == result.master.accuracy


def refusal(record_class, path) -> str:
    with pytest.raises(RecordError) as refused:
        load_record(record_class, str(path))
    message = str(refused.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


@pytest.mark.parametrize("change, why", [
    (lambda d: {**d, SCHEMA_VERSION_FIELD: SCHEMA_VERSION + 1},
     f"schema_version {SCHEMA_VERSION + 1} is not one this genet_jax reads"),
    (lambda d: {**d, SCHEMA_VERSION_FIELD: "1"}, "schema_version '1' is not one"),
    (lambda d: without_version({k: v for k, v in d.items() if k != "checkpoint_step"}),
     "missing field(s) checkpoint_step"),
    (lambda d: {**d, "checkpoint_epoch": 3}, "unknown field(s) checkpoint_epoch"),
    (lambda d: {**d, "spec": {**d["spec"], "blocks": []}}, "spec: blocks: must be a non-empty"),
])
def test_a_master_json_of_another_version_or_other_fields_is_refused_in_one_line_naming_it(tmp_path, change, why):
    path = tmp_path / "master.json"
    path.write_text(json.dumps(change(read_json(os.path.join(FIXTURE, "master.json")))))
    assert why in refusal(MasterRecord, path)


def test_a_nested_record_short_of_a_field_is_named_by_its_place_in_the_file(tmp_path):
    stored = read_json(os.path.join(FIXTURE, "search_result.json"))
    del stored["resolutions"][0]["trained"]["top5"]
    path = tmp_path / "search_result.json"
    path.write_text(json.dumps(stored))
    assert refusal(SearchResult, path) == f"{path}: resolutions[0]: trained: missing field(s) top5"
    path.write_text('{"selected": ')
    assert "not valid JSON" in refusal(SearchResult, path)


def test_fine_tune_lines_older_cut_short_and_newer(tmp_path):
    """A line from before fine-tunes named their weights holds the raw weights' top-1; a line cut
    short by a kill is skipped; a line of a newer version is refused naming file and line."""
    with open(os.path.join(RESULTS, "finetunes-0000-of-0001.jsonl")) as f:
        older, newer = (json.loads(line) for line in f.readlines()[:2])
    del older["weights"]
    path = store.shard_file(str(tmp_path), 0, 1)
    store.append_result(path, older)
    with open(path, "a") as f:
        f.write('{"key": "b", "accur')  # killed mid-write
    assert store.load_results(str(tmp_path), FinetuneRecord.from_json)[older["key"]].weights == "raw"
    store.append_result(path, {**newer, SCHEMA_VERSION_FIELD: SCHEMA_VERSION + 1})
    with pytest.raises(RecordError, match=f"^{path}:3: schema_version {SCHEMA_VERSION + 1} is not one"):
        store.load_results(str(tmp_path), FinetuneRecord.from_json)


def test_search_py_refuses_a_master_json_of_a_newer_version_in_one_line(tmp_path):
    workdir = tmp_path / "search"
    shutil.copytree(FIXTURE, workdir)
    master = workdir / "master.json"
    master.write_text(json.dumps({**read_json(str(master)), SCHEMA_VERSION_FIELD: SCHEMA_VERSION + 1}))
    run = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "search.py"),
                          f"--config={os.path.join(FIXTURE, 'search_config.py')}", f"--config.workdir={workdir}",
                          "--stage=select"], capture_output=True, text=True, cwd=REPO_ROOT)
    assert run.returncode == INPUT_ERROR_EXIT_CODE, run.stderr[-3000:]
    assert run.stderr.strip().splitlines()[-1] == (
        f"error: {master}: schema_version {SCHEMA_VERSION + 1} is not one this genet_jax reads (none or "
        f"{SCHEMA_VERSION}): written by a newer genet_jax?")
