"""What a damaged or unwritable orbax checkpoint leaves to say, said once: one-line causes of orbax's and
TensorStore's errors, and the noise they leave behind (orbax's log records from every thread an error
passes through, asyncio's unretrieved task exceptions, unawaited coroutines collected at exit)
dropped, so that a CheckpointError is the one line the user reads."""
from __future__ import annotations

import contextlib
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


class OrbaxLogFilter(logging.Filter):
    """Drops orbax's log records from `level` up while a TrainCheckpointer is open: an error of a
    background save is logged with its traceback by every thread it passes through, and asyncio reports
    each of its tasks the error ended, then it is raised (here: one CheckpointWriteError line); a step
    that does not restore is one warning (`quiet_from`). After a failed save, for good: its threads may
    log after close."""

    def __init__(self):
        super().__init__()
        self.level = logging.ERROR

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "asyncio":
            return not record.getMessage().partition("\n")[0].endswith("exception was never retrieved")
        return record.levelno < self.level or f"{os.sep}orbax{os.sep}" not in record.pathname

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
