"""What the search persists. The fine-tune results store: one JSON line per finished fine-tune,
appended and fsynced the moment it finishes, one file per shard; a line cut short by a kill is
ignored (that fine-tune is redone). Every other file is a JSON document replaced atomically."""
from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
from typing import Callable, Iterable

import jax

from genet_jax.measure import output

log = logging.getLogger(__name__)

PATTERN = "finetunes-*.jsonl"
KEY_HEX_DIGITS = 16  # of a stored key's sha256: 64 bits, short enough for file names, collisions out of reach


def shard_file(directory: str, shard: int, num_shards: int) -> str:
    return os.path.join(directory, f"finetunes-{shard:04d}-of-{num_shards:04d}.jsonl")


def append_result(path: str, record: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    with open(path, "ab+") as f:
        if f.seek(0, os.SEEK_END) > 0:  # a kill mid-write can leave an unterminated line: never glue onto it
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                line = b"\n" + line
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read_results(paths: Iterable[str]) -> dict[str, dict]:
    """{key: record} over every file; the first record of a key wins; unreadable lines are skipped
    with a warning naming file and line (a kill while writing leaves at most one such line)."""
    results: dict[str, dict] = {}
    for path in sorted(paths):
        with open(path) as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    key = record["key"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    log.warning("%s:%d: unreadable result line ignored (interrupted write?)", path, number)
                    continue
                results.setdefault(key, record)
    return results


def load_results(directory: str) -> dict[str, dict]:
    return read_results(glob.glob(os.path.join(directory, PATTERN)))


def sha256_key(text: str) -> str:
    """The short hash every stored key uses: the first KEY_HEX_DIGITS hex digits of sha256(text)."""
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_HEX_DIGITS]


def fingerprint(*parts) -> str:
    """The inputs a stored result was made from (JSON of `parts`; non-JSON values by str())."""
    return sha256_key(json.dumps(parts, sort_keys=True, default=str))


def write_json(path: str, data) -> None:
    if jax.process_index() != 0:  # multi-host: one writer
        return
    output.write_json(path, data)


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


class MeasurementCache:
    """Measurements kept in a JSON file {key: value}, each written the moment it is made, so a
    killed run loses none and a re-run repeats none. `measured` counts those made by this instance."""

    def __init__(self, path: str):
        self.path = path
        self.entries: dict[str, float] = read_json(path) if os.path.exists(path) else {}
        self.measured = 0

    def get(self, key: str, measure: Callable[[], float]) -> float:
        if key not in self.entries:
            self.put({key: measure()})
        return self.entries[key]

    def put(self, measurements: dict[str, float]) -> None:
        self.entries.update(measurements)
        self.measured += len(measurements)
        write_json(self.path, self.entries)
