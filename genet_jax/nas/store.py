"""What the search persists. The fine-tune results store: one JSON line per finished fine-tune,
appended and fsynced the moment it finishes, one file per shard; a line cut short by a kill is
ignored (that fine-tune is redone). Every other file is a JSON document replaced atomically."""
from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
from typing import Any, Callable, Iterable, Optional, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils

from genet_jax import outputs as output

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


def _as_stored(record: dict, source: str) -> dict:
    return record


def read_results(paths: Iterable[str], parse: Callable[[dict, str], Any] = _as_stored) -> dict[str, Any]:
    """{key: parse(record, "file:line")} over every file; the first record of a key wins; unreadable
    lines are skipped with a warning naming file and line (a kill while writing leaves at most one
    such line); what `parse` raises of a whole line goes up."""
    results: dict[str, Any] = {}
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
                if key not in results:
                    results[key] = parse(record, f"{path}:{number}")
    return results


def load_results(directory: str, parse: Callable[[dict, str], Any] = _as_stored) -> dict[str, Any]:
    return read_results(glob.glob(os.path.join(directory, PATTERN)), parse)


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
    killed run loses none and a re-run repeats none. In a multi-process job process 0 alone measures
    and looks up; every lookup is a collective that hands its values to all processes (each makes the
    same lookups in the same order), so all hold the same numbers, from one device. `measured`
    counts the measurements this instance made."""

    def __init__(self, path: str):
        self.path = path
        self.entries: dict[str, float] = read_json(path) if os.path.exists(path) else {}
        self.measured = 0

    def get(self, key: str, measure: Callable[[], float]) -> float:
        return self.get_many([key], lambda missing: [measure()])[0]

    def get_many(self, keys: Sequence[str], measure: Callable[[list[str]], Sequence[float]]) -> list[float]:
        """The values of `keys`; those not stored yet measured together by `measure(missing keys)`."""
        if not keys:
            return []
        values = None
        together_with_every_process()
        if jax.process_index() == 0:
            missing = [key for key in dict.fromkeys(keys) if key not in self.entries]
            if missing:
                self.put(dict(zip(missing, (float(v) for v in measure(missing)))))
            values = [self.entries[key] for key in keys]
        values = floats_from_process_zero(values, len(keys))
        self.entries.update(zip(keys, values))
        return values

    def put(self, measurements: dict[str, float]) -> None:
        self.entries.update(measurements)
        self.measured += len(measurements)
        write_json(self.path, self.entries)


def floats_from_process_zero(values: Optional[Sequence[float]], count: int) -> list[float]:
    """Process 0's `count` floats on every process (the others pass None), bit for bit: sent as the
    float64s' 32-bit words, which survive JAX's default 32-bit types."""
    if jax.process_count() == 1:
        return list(values)
    words = np.asarray(values if values is not None else np.zeros(count), np.float64).view(np.uint32)
    received = np.asarray(multihost_utils.broadcast_one_to_all(words), np.uint32)
    return [float(v) for v in received.view(np.float64)]


def together_with_every_process() -> None:
    """Return once every process has called this (a barrier: a one-word broadcast, the collective
    above): what process 0 wrote before it, the others read after it. The processes connect for a
    collective the first time they run it and give up when one is 30 s late (gloo, on CPU devices),
    so MeasurementCache connects here, all present, before process 0 measures for as long as it
    takes while the others wait."""
    if jax.process_count() > 1:
        multihost_utils.broadcast_one_to_all(np.zeros(1, np.uint32))
