"""One job per workdir: the lock train.py and search.py hold on their workdir while they run.

The lock is an operating-system record lock (POSIX `fcntl.lockf`) on a file in the workdir, so the
kernel drops it the moment its holder dies (kill -9, an out-of-memory kill), and on NFS the lock
manager once the lost host's lease expires (about 90 s on NFSv4): no lock is left behind that blocks
the next run for good. The file also holds the holder's
description (host, pid, start time, command), written when the lock is taken and cleared when it is
released, so that

- a second run on a workdir in use stops at once, in one line naming the holder, and
- a run that finds a description but no lock knows its holder ended without releasing it, and says so.

A multi-process job holds one lock: process 0 takes it and tells the others whether it got it, so
that every process of a refused job stops, and none of them waits in a collective for the others.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import fcntl
import json
import logging
import os
import socket
import sys
import threading
from typing import Iterator, Optional

import jax
import numpy as np
from jax.experimental import multihost_utils

from genet_jax.errors import InputError

log = logging.getLogger("genet_jax.workdir")

WORKDIR_LOCK_FILE = "workdir.lock"  # train.py, and search.py unless sharded
COMMAND_CHARS = 120  # of the holder's command line, in its description
# File systems without record locks (some FUSE mounts) answer with one of these: the run goes on unguarded.
LOCKS_UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)
# What process 0 tells the others: the lock is held by this job, held by another run, or could not be taken.
_HELD, _IN_USE, _FAILED = 0, 1, 2


def shard_lock_file(shard: int, num_shards: int) -> str:
    """The lock of one fine-tune shard of a search (shards of one search run side by side)."""
    return f"workdir-shard-{shard}-of-{num_shards}.lock"


def create_workdir(path: str, field: str = "config.workdir") -> str:
    """`path` made absolute and created (with its parents); a path that cannot be one is an
    InputError naming `field`."""
    workdir = os.path.abspath(path)
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise InputError(f"{field}: {workdir} is a file, not a directory")
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as e:
        raise InputError(f"{field}: cannot create {workdir} ({e.strerror})") from None
    return workdir


class WorkdirInUse(InputError, RuntimeError):
    """Another run holds the workdir; the message names it."""


@dataclasses.dataclass(frozen=True)
class LockHolder:
    """Who holds (or last held) a workdir lock."""

    host: str
    pid: int
    started: str  # UTC, ISO 8601 to the second
    command: str
    processes: int = 1  # of the job

    @classmethod
    def this_process(cls) -> "LockHolder":
        command = " ".join([os.path.basename(sys.executable)] + sys.argv)
        if len(command) > COMMAND_CHARS:
            command = command[:COMMAND_CHARS - 3] + "..."
        return cls(host=socket.gethostname(), pid=os.getpid(),
                   started=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                   command=command, processes=jax.process_count())

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Optional["LockHolder"]:
        """The holder a lock file describes; None for an empty (released) or unreadable file."""
        try:
            return cls(**json.loads(text))
        except (ValueError, TypeError):
            return None

    def describe(self) -> str:
        job = f", process 0 of {self.processes}" if self.processes > 1 else ""
        return f"pid {self.pid} on {self.host}{job}, started {self.started} ({self.command})"


class WorkdirLock:
    """The lock on `directory` (which must exist) through its file `name`, for this process.

    `acquire` raises WorkdirInUse when another process holds it, and returns the holder it replaced
    when that one ended without releasing it (else None). A `shared` lock (the fine-tune shards of a
    search, side by side) excludes only exclusive holders, and describes no holder. Record locks
    belong to a process, not to a file descriptor: a second WorkdirLock on the same file in the same
    process is refused here, since the kernel would grant it (or convert the first)."""

    _held_here: set[str] = set()  # lock files this process holds (real paths)
    _held_here_guard = threading.Lock()

    def __init__(self, directory: str, name: str = WORKDIR_LOCK_FILE, shared: bool = False):
        self.path = os.path.join(os.path.realpath(directory), name)
        self.shared = shared
        self._fd: Optional[int] = None

    def holder(self) -> Optional[LockHolder]:
        """Who the lock file describes, read through the held descriptor (opening the file anew and
        closing it would drop this process's lock)."""
        return LockHolder.from_json(_read(self._fd)) if self._fd is not None else None

    def acquire(self) -> Optional[LockHolder]:
        with self._held_here_guard:
            if self.path in self._held_here:
                raise WorkdirInUse(f"{os.path.dirname(self.path)} is in use by this process already "
                                   f"({self.path}); give the second run another workdir")
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise InputError(f"{os.path.dirname(self.path)}: cannot write in this workdir "
                                 f"({e.strerror})") from None
            try:
                previous = self._lock(fd)
            except BaseException:
                os.close(fd)  # closing any descriptor of the file drops this process's lock on it
                raise
            self._fd = fd
            self._held_here.add(self.path)
        return previous

    def _lock(self, fd: int) -> Optional[LockHolder]:
        try:
            fcntl.lockf(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EAGAIN):
                holder = LockHolder.from_json(_read(fd))  # none: held shared, by fine-tune shards
                raise WorkdirInUse(in_use_message(os.path.dirname(self.path), holder)) from None
            if e.errno not in LOCKS_UNSUPPORTED:
                raise
            log.warning("%s: this file system has no locks (%s), so a second run on this workdir would not be "
                        "noticed", self.path, e.strerror)
            return None  # whoever the file describes may be running still
        previous = LockHolder.from_json(_read(fd))  # described, yet not holding the lock: it ended without release
        _write(fd, "" if self.shared else LockHolder.this_process().to_json())
        return previous

    def release(self) -> None:
        if self._fd is None:
            return
        with self._held_here_guard:
            try:
                if not self.shared:
                    os.ftruncate(self._fd, 0)  # a released lock describes no holder
            finally:
                os.close(self._fd)  # and drops the lock
                self._fd = None
                self._held_here.discard(self.path)


def in_use_message(workdir: str, holder: Optional[LockHolder]) -> str:
    named = holder.describe() if holder else "the fine-tune shards of a search (--shard)"
    return f"{workdir} is in use by {named}: wait for it to end, or give this run another workdir"


def _read(fd: int) -> str:
    """The lock file's text, through `fd`: opening and closing the file anew (or a duplicate of
    `fd`) would drop this process's lock on it."""
    return os.pread(fd, os.fstat(fd).st_size, 0).decode("utf-8", "replace")


def _write(fd: int, text: str) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode(), 0)
    os.fsync(fd)


@contextlib.contextmanager
def hold_workdir(directory: str, name: str = WORKDIR_LOCK_FILE, shared: bool = False) -> Iterator[None]:
    """Hold the lock on `directory` for the `with` block, once for the whole job (process 0 takes it);
    every process raises WorkdirInUse when another run holds it. A lock left by a holder that died is
    taken over, with a warning naming that holder."""
    lock = WorkdirLock(directory, name, shared) if jax.process_index() == 0 else None
    outcome, error = _HELD, None
    if lock is not None:
        try:
            previous = lock.acquire()
        except WorkdirInUse as e:
            outcome, error = _IN_USE, e
        except BaseException as e:
            outcome, error = _FAILED, e
        else:
            if previous is not None:
                log.warning("took over the lock of %s from %s, which ended without releasing it (killed, or its "
                            "host lost)", directory, previous.describe())
    outcome = _agreed(outcome)
    if error is not None:
        raise error
    if outcome == _IN_USE:
        raise WorkdirInUse(_seen_from_another_process(os.path.join(os.path.abspath(directory), name)))
    if outcome == _FAILED:
        raise InputError(f"{directory}: process 0 could not take the workdir lock (its error says why)")
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def _agreed(outcome: int) -> int:
    """Process 0's outcome, on every process."""
    if jax.process_count() == 1:
        return outcome
    return int(multihost_utils.broadcast_one_to_all(np.asarray([outcome], np.int32))[0])


def _seen_from_another_process(path: str) -> str:
    """The in-use message of a process other than 0, from the lock file (read by path: this process
    holds no lock on it, so closing the file drops nothing)."""
    try:
        with open(path) as f:
            holder = LockHolder.from_json(f.read())
    except OSError:
        holder = None
    return in_use_message(os.path.dirname(path), holder)
