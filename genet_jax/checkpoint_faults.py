"""What a damaged or unwritable orbax checkpoint leaves to say, said once: one-line causes of orbax's and
TensorStore's errors, and the noise they leave behind (orbax's log records from every thread an error
passes through, asyncio's unretrieved task exceptions, unawaited coroutines collected at exit)
dropped, so that a CheckpointError is the one line the user reads."""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import sys
import warnings
from typing import Callable, Iterator

ERROR_TEXT_CHARS = 300  # of an orbax error's first line, quoted in a CheckpointError
# The status codes of TensorStore's errors (ValueErrors) that come from the storage beneath a checkpoint
STORAGE_STATUS = re.compile(r"(RESOURCE_EXHAUSTED|PERMISSION_DENIED|NOT_FOUND|UNAVAILABLE|DATA_LOSS|DEADLINE_EXCEEDED"
                            r"|ABORTED|UNKNOWN): ")


# The system's words for a storage that cannot take a write (in orbax's log records of one)
STORAGE_STRERRORS = re.compile(r"No space left on device|Disk quota exceeded|Read-only file system|Permission denied"
                               r"|Input/output error")
# TensorStore's status codes of a read that may succeed if tried again, or that no other step would pass either
NOT_DAMAGE_STATUS = re.compile(r"\b(UNAVAILABLE|DEADLINE_EXCEEDED|ABORTED|CANCELLED|RESOURCE_EXHAUSTED|"
                               r"PERMISSION_DENIED)\b")
# OSErrors of a step's missing files (a truncated or half-deleted step), not of the storage beneath it
MISSING_FILE_ERRNOS = (errno.ENOENT, errno.ENOTDIR, errno.EISDIR)


def is_damage(error: BaseException) -> bool:
    """Whether `error` (of restoring one checkpoint step) says the step's files do not hold what they
    should (missing, truncated, of another shape or model): then an older step may do. A transient or
    permission error of the storage, an out-of-memory or a bug is not damage: it is raised."""
    if isinstance(error, OSError):
        return error.errno in MISSING_FILE_ERRNOS
    if isinstance(error, (ValueError, KeyError, EOFError)):
        return not NOT_DAMAGE_STATUS.search(str(error))
    return False


UNRETRIEVED_TASK_ERROR = "exception was never retrieved"  # ends the first line of asyncio's record of one


def is_unretrieved_task_error(record: logging.LogRecord) -> bool:
    """Whether `record` is asyncio's report of a task whose exception nobody retrieved."""
    return record.name == "asyncio" and record.getMessage().partition("\n")[0].endswith(UNRETRIEVED_TASK_ERROR)


class OrbaxLogFilter(logging.Filter):
    """While a TrainCheckpointer is open, drops orbax's error records about the storage beneath it
    (and asyncio's about orbax's tasks): an error of a background save is logged with its traceback
    by every thread it passes through, then raised (here: one CheckpointWriteError line). Any other
    orbax error stays visible. Within `quiet_from(level)` (a restore attempt, whose failure is one
    warning of the caller's), every orbax record from `level` up is dropped."""

    def __init__(self):
        super().__init__()
        self.level = None  # quiet_from's

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        about_storage = (error is not None and is_storage_error(error)) or bool(
            STORAGE_STATUS.search(record.getMessage()) or STORAGE_STRERRORS.search(record.getMessage()))
        if record.name == "asyncio":
            return not (is_unretrieved_task_error(record) and about_storage)
        if f"{os.sep}orbax{os.sep}" not in record.pathname:
            return True
        if self.level is not None and record.levelno >= self.level:
            return False
        return not (record.levelno >= logging.ERROR and about_storage)

    @contextlib.contextmanager
    def quiet_from(self, level: int) -> Iterator[None]:
        previous, self.level = self.level, level
        try:
            yield
        finally:
            self.level = previous

    def install(self) -> None:
        for name in ("absl", "asyncio"):
            logging.getLogger(name).addFilter(self)

    def remove(self) -> None:
        for name in ("absl", "asyncio"):
            logging.getLogger(name).removeFilter(self)


class FailedReadLeftovers(logging.Filter):
    """Drops asyncio's records of unretrieved task exceptions that name a checkpoint step whose read
    failed and was reported. orbax reads a step's arrays as concurrent TensorStore tasks; after the
    first error, the others may fail too and nobody retrieves their errors. asyncio logs each, with a
    traceback, when the task is collected, which may be after the report (at exit on a loaded machine)."""

    def __init__(self):
        super().__init__()
        self.step_dirs: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not is_unretrieved_task_error(record):
            return True
        text = record.getMessage() + (str(record.exc_info[1]) if record.exc_info else "")
        return not any(step_dir in text for step_dir in self.step_dirs)


_FAILED_READ_LEFTOVERS = FailedReadLeftovers()


def drop_leftovers_of_failed_read(step_dir: str) -> None:
    """After reading the checkpoint step `step_dir` failed and the caller reports it: the leftovers of
    that read stay silent for the rest of the process (asyncio's records of its tasks, its unawaited
    coroutines). Records about any other path still appear."""
    _FAILED_READ_LEFTOVERS.step_dirs.add(os.path.join(os.path.abspath(step_dir), ""))
    asyncio_log = logging.getLogger("asyncio")
    if _FAILED_READ_LEFTOVERS not in asyncio_log.filters:
        asyncio_log.addFilter(_FAILED_READ_LEFTOVERS)
    ignore_unawaited_coroutines()


def drop_orbax_leftovers() -> Callable[[], None]:
    """Installs, while a checkpointer is open, an unraisable-exception hook that drops what a failed
    orbax read or write leaves behind: its coroutines whose exception nobody awaited, TensorStore
    callbacks into the event loop orbax has closed. Python would print each with a traceback (a
    TensorStore spec) when it collects them, at exit too; the error that matters is raised (one
    CheckpointError line). Any other unraisable exception reaches the previous hook. Returns the
    function that puts the previous hook back."""
    previous = sys.unraisablehook

    def hook(unraisable):
        code = getattr(unraisable.object, "cr_code", None)
        from_orbax = code is not None and f"{os.sep}orbax{os.sep}" in code.co_filename
        closed_loop = (unraisable.object is None and isinstance(unraisable.exc_value, RuntimeError)
                       and str(unraisable.exc_value) == "Event loop is closed")
        if not (from_orbax or closed_loop):
            previous(unraisable)

    def restore() -> None:
        if sys.unraisablehook is hook:
            sys.unraisablehook = previous

    sys.unraisablehook = hook
    return restore


def ignore_unawaited_coroutines() -> None:
    """After an orbax read or write failed: the coroutines it left unawaited warn when collected (at exit)."""
    warnings.filterwarnings("ignore", r"coroutine '.*' was never awaited", RuntimeWarning)


def first_line(error: BaseException, chars: int = ERROR_TEXT_CHARS) -> str:
    """An error's first sentence without TensorStore's bracketed details (its spec dump), shortened."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return re.split(r"\s*\[[a-z_]+=|\s*See full TensorStore details|\.\s", text)[0][:chars]


def is_storage_error(error: BaseException) -> bool:
    """An OSError, or TensorStore's ValueError for one (by its status code), not a programming error."""
    return isinstance(error, OSError) or bool(STORAGE_STATUS.match(str(error)))


def storage_cause(error: BaseException) -> str:
    """'No space left on device', 'Permission denied', ... of an OSError or of TensorStore's ValueError
    (its message ends in the system's)."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return first_line(error, chars=len(str(error))).rsplit(": ", 1)[-1][:ERROR_TEXT_CHARS]


def none_restores(root: str, failed: dict[int, str]) -> str:
    """One line: why each step (newest first) does not restore, and what to do."""
    steps_by_reason: dict[str, list[str]] = {}
    for step, reason in failed.items():
        steps_by_reason.setdefault(reason, []).append(str(step))
    causes = "; ".join(f"step{'s' if len(steps) > 1 else ''} {', '.join(steps)}: {reason}"
                       for reason, steps in steps_by_reason.items())
    directories = ", ".join(os.path.join(root, str(step)) for step in failed)
    return (f"cannot resume from {root}, no step restores ({causes}). If config.model or config.optim differ "
            f"from the run that wrote them, use another config.workdir; if they are damaged, move or delete "
            f"{directories} to start afresh")
