"""The fine-tune results store: one JSON line per finished fine-tune, appended and fsynced the moment
it finishes, one file per shard. A line cut short by a kill is ignored (that fine-tune is redone)."""
from __future__ import annotations

import glob
import json
import logging
import os
from typing import Iterable

log = logging.getLogger(__name__)

PATTERN = "finetunes-*.jsonl"


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
