"""Hostile-but-honest probes of every command-line tool (issue 27: "nothing lost, one line").

Each probe gives one tool one bad input (a config value, a config file, a workdir, a checkpoint, an
image, a flag, a missing optional package) and checks the project's promise: exit code 2 (1 for
predict's skipped images, as its usage says), a last stderr line `error: ...` (argparse's
`PROG: error: ...` too) that names the field, file or path at fault, no traceback, at most
MAX_MESSAGE_LINES lines of stderr besides INFO logging, and nothing lost: the files a probe lists
are byte for byte the same afterwards.

    python -m tests.hostile_probes [--repo DIR] [--only NAME ...] [--markdown]

runs them against the checkout at DIR (default: this one) in PARALLEL_PROBES subprocesses at a time,
from a scratch folder, and prints a table and the stderr tail of each broken probe. The probes are
tests/probe_table.py PROBES; tests/test_hostile_probes.py runs them all.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

from genet_jax.errors import INPUT_ERROR_EXIT_CODE

REPO_ROOT = Path(__file__).resolve().parent.parent
PARALLEL_PROBES = 2  # subprocesses at a time: CI's runners and this machine have 2 cores
MAX_MESSAGE_LINES = 25  # of stderr, INFO log records excluded
PROBE_TIMEOUT_SECONDS = 240  # a probe the checkout does not refuse may start training
TAIL_LINES = 8  # of a broken probe's stderr, in the report
TRAINED_STEP = 4  # the shared workdir's one checkpoint: step 4 of a 4-step run
XLA_CACHE = "xla_cache"  # the probes' persistent compilation cache, in their scratch folder
LAST_LINE = re.compile(r"^(?:python -m [\w.]+: )?error: ")
# The start of a log record: absl's (I1206 16:16:01.306857 140594297006976 loop.py:160] ...) and
# logging.basicConfig's as genet_jax.cli sets it (2024-12-06 16:16:01,306 INFO name: ...).
LOG_RECORD = re.compile(r"^(?:([DIWEF])\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\]|"
                        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) )")
# A line that never continues an INFO record: an error, a traceback, a Python warning.
OWN_LINE = re.compile(r"^(?:\S.*: )?error: |^Traceback |^\S+:\d+: \w+Warning: ")

# Run with `python -c HIDE_PACKAGES TOP_NAMES TOOL ARGS...`: TOOL (a script or a module) as it runs
# where the top-level packages TOP_NAMES (comma-separated) are not installed.
HIDE_PACKAGES = """
import importlib.machinery, runpy, sys
hidden = set(sys.argv[1].split(","))

class PathFinderWithoutHidden(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] in hidden:
            return None
        return super().find_spec(name, path, target)

sys.meta_path[sys.meta_path.index(importlib.machinery.PathFinder)] = PathFinderWithoutHidden
tool, sys.argv = sys.argv[2], sys.argv[2:]
if tool.endswith(".py"):
    runpy.run_path(tool, run_name="__main__")
else:
    runpy.run_module(tool, run_name="__main__", alter_sys=True)
"""


@dataclasses.dataclass
class Scene:
    """Where one probe runs: its scratch folder `tmp` (the working directory), `workdir` (a copy of
    the shared trained workdir, for probes that need one), `ro` (a folder nobody can write in)."""

    tmp: Path
    workdir: Path
    ro: Path
    repo: Path
    cleanups: list = dataclasses.field(default_factory=list)

    def fill(self, text: str) -> str:
        for key in ("tmp", "workdir", "ro", "repo"):
            text = text.replace("{" + key + "}", str(getattr(self, key)))
        return text


@dataclasses.dataclass(frozen=True)
class Probe:
    """One bad input to one tool and what must hold. `argv`, `names`, `unchanged` and `stdout_names`
    may hold {tmp}, {workdir}, {ro} and {repo}."""

    name: str
    tool: str  # a script of the repository (train.py) or a module (genet_jax.export)
    argv: tuple[str, ...]
    names: tuple[str, ...]  # each in the last stderr line
    setup: Optional[Callable[[Scene], None]] = None  # makes the bad input under scene.tmp
    needs_workdir: bool = False
    unchanged: tuple[str, ...] = ()  # files or folders whose bytes must be the same afterwards
    hidden_packages: tuple[str, ...] = ()
    exit_code: int = INPUT_ERROR_EXIT_CODE
    stdout_names: tuple[str, ...] = ()  # each on stdout (what must still work beside the bad input)


@dataclasses.dataclass(frozen=True)
class Outcome:
    probe: Probe
    exit_code: Optional[int]  # None: killed at PROBE_TIMEOUT_SECONDS
    stderr: str
    stdout: str
    seconds: float
    broken: tuple[str, ...]  # the promises not kept, in words

    @property
    def kept(self) -> bool:
        return not self.broken

    @property
    def message_lines(self) -> int:
        return len(message_lines(self.stderr))

    @property
    def tracebacks(self) -> int:
        return self.stderr.count("Traceback (most recent call last)")

    def tail(self, lines: int = TAIL_LINES) -> str:
        """The last lines of stderr, after its `error:` lines above them; stdout's where stderr is empty."""
        if not self.stderr.strip():
            return "(stderr empty; stdout:)\n" + "\n".join(self.stdout.splitlines()[-lines:])
        every = self.stderr.rstrip("\n").splitlines()
        errors = [line for line in every[:-lines] if OWN_LINE.match(line) and "error: " in line]
        return "\n".join(errors + (["..."] if errors else []) + every[-lines:])


def message_lines(stderr: str) -> list[str]:
    """The non-empty lines of `stderr` that are not part of an INFO (or DEBUG) log record."""
    kept, in_info_record = [], False
    for line in stderr.splitlines():
        record = LOG_RECORD.match(line)
        if record:
            in_info_record = (record.group(1) or record.group(2)) in ("I", "D", "INFO", "DEBUG")
        elif OWN_LINE.match(line):
            in_info_record = False
        if line.strip() and not in_info_record:
            kept.append(line)
    return kept


def broken_promises(probe: Probe, scene: Scene, exit_code: Optional[int], stderr: str, stdout: str,
                    changed: Sequence[str]) -> tuple[str, ...]:
    """The promises `probe`'s run broke, in words (paths as the probe writes them: {tmp}/...)."""
    broken = []
    if exit_code is None:
        broken.append(f"no exit in {PROBE_TIMEOUT_SECONDS} s")
    elif exit_code != probe.exit_code:
        broken.append(f"exit {exit_code}, not {probe.exit_code}")
    lines = message_lines(stderr)
    last = lines[-1] if lines else ""
    if not LAST_LINE.match(last):
        broken.append("last line is not 'error: ...'")
    missing = [name for name in probe.names if scene.fill(name) not in last]
    if missing:
        broken.append(f"last line does not name {', '.join(missing)}")
    if "Traceback" in stderr:
        broken.append("traceback")
    if len(lines) > MAX_MESSAGE_LINES:
        broken.append(f"{len(lines)} lines")
    broken += [f"{path} changed" for path in changed]
    broken += [f"stdout lacks {name}" for name in probe.stdout_names if scene.fill(name) not in stdout]
    return tuple(broken)


def fingerprint(path: Path) -> Optional[dict]:
    """{relative path: sha256} of the file or every file under the folder `path`; None if absent."""
    if not path.exists():
        return None
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def command(probe: Probe, scene: Scene) -> list[str]:
    tool = str(scene.repo / probe.tool) if probe.tool.endswith(".py") else probe.tool
    argv = [scene.fill(arg) for arg in probe.argv]
    if probe.hidden_packages:
        return [sys.executable, "-c", HIDE_PACKAGES, ",".join(probe.hidden_packages), tool, *argv]
    return [sys.executable, tool, *argv] if probe.tool.endswith(".py") else [sys.executable, "-m", tool, *argv]


def probe_environment(repo: Path, compilation_cache: Optional[Path] = None) -> dict:
    """This environment with the checkout first on the import path (ahead of an editable install) and,
    unless one is set (tests/conftest.py sets one), `compilation_cache` as the processes' persistent
    XLA cache: those that compile the shared network then load what building its workdir compiled."""
    path = os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    if compilation_cache and "JAX_COMPILATION_CACHE_DIR" not in env:
        env.update(JAX_COMPILATION_CACHE_DIR=str(compilation_cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    return env


def run_probe(probe: Probe, base: Path, repo: Path, read_only: Path, trained_workdir: Optional[Path]) -> Outcome:
    scene = Scene(tmp=base / probe.name, workdir=base / probe.name / "workdir", ro=read_only, repo=repo)
    scene.tmp.mkdir(parents=True)
    started = time.perf_counter()
    try:
        try:
            if probe.needs_workdir:
                shutil.copytree(trained_workdir, scene.workdir, symlinks=True)
            if probe.setup:
                probe.setup(scene)
        except Exception as e:  # the probe's own fault, reported as its outcome
            return Outcome(probe, None, repr(e), "", 0.0, (f"setup failed: {e!r}",))
        before = [fingerprint(Path(scene.fill(path))) for path in probe.unchanged]
        exit_code, stderr, stdout = _run(command(probe, scene), scene.tmp, probe_environment(repo, base / XLA_CACHE))
        changed = [path for path, was in zip(probe.unchanged, before)
                   if fingerprint(Path(scene.fill(path))) != was]
        broken = broken_promises(probe, scene, exit_code, stderr, stdout, changed)
        return Outcome(probe, exit_code, stderr, stdout, time.perf_counter() - started, broken)
    finally:
        for cleanup in reversed(scene.cleanups):
            cleanup()


def _run(argv: list[str], cwd: Path, env: dict) -> tuple[Optional[int], str, str]:
    """(exit code, or None when killed at PROBE_TIMEOUT_SECONDS; stderr; stdout)."""
    try:
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=PROBE_TIMEOUT_SECONDS,
                              stdin=subprocess.DEVNULL)
        return done.returncode, done.stderr, done.stdout
    except subprocess.TimeoutExpired as e:
        return None, _text(e.stderr), _text(e.stdout)


def _text(output) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else (output or "")


def build_trained_workdir(repo: Path, base: Path) -> Path:
    """A finished TRAINED_STEP-step train.py run of a tiny network (one checkpoint) under `base`, by the
    checkout's own train.py; probes get copies of it."""
    from tests.helpers import tiny_args
    workdir = base / "trained" / "workdir"
    workdir.parent.mkdir()
    done = subprocess.run([sys.executable, str(repo / "train.py"), *tiny_args(workdir, steps=TRAINED_STEP)],
                          cwd=workdir.parent, env=probe_environment(repo, base / XLA_CACHE), capture_output=True,
                          text=True, timeout=PROBE_TIMEOUT_SECONDS)
    if done.returncode != 0:
        raise RuntimeError(f"train.py could not build the shared workdir:\n{done.stderr[-3000:]}")
    return workdir


@contextlib.contextmanager
def read_only_folder(base: Path) -> Iterator[Path]:
    """A folder whose children cannot be created: a read-only tmpfs where this process may mount one
    (root), else a folder without write permission (not root), else /proc (root, no mounts)."""
    folder = base / "read_only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                             capture_output=True).returncode == 0
    if not mounted:
        yield Path("/proc")
        return
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def run_probes(probes: Sequence[Probe], repo: Path = REPO_ROOT) -> list[Outcome]:
    """Every probe against the checkout `repo`, PARALLEL_PROBES at a time, in table order (those that
    need the shared trained workdir last, while it is built)."""
    repo = repo.resolve()
    with tempfile.TemporaryDirectory(prefix="genet-jax-probes-") as scratch:
        base = Path(scratch)
        with read_only_folder(base) as read_only, \
                concurrent.futures.ThreadPoolExecutor(PARALLEL_PROBES) as pool:
            needing = [p for p in probes if p.needs_workdir]
            build = pool.submit(build_trained_workdir, repo, base) if needing else None
            order = [p for p in probes if not p.needs_workdir] + needing
            futures = {p.name: pool.submit(_after_build, build, p, base, repo, read_only) for p in order}
            return [futures[p.name].result() for p in probes]


def _after_build(build: Optional[concurrent.futures.Future], probe: Probe, base: Path, repo: Path,
                 read_only: Path) -> Outcome:
    trained = None
    if probe.needs_workdir:
        try:
            trained = build.result()
        except Exception as e:  # reported with each probe that needed it
            return Outcome(probe, None, str(e), "", 0.0, ("the shared trained workdir could not be built",))
    return run_probe(probe, base, repo, read_only, trained)


def table(outcomes: Sequence[Outcome], markdown: bool = False) -> str:
    header = ["probe", "tool", "seconds", "exit code", "stderr lines", "tracebacks", "promise kept?"]
    rows = [[o.probe.name, o.probe.tool, f"{o.seconds:.1f}", "timeout" if o.exit_code is None else str(o.exit_code),
             str(o.message_lines), str(o.tracebacks), "yes" if o.kept else "no: " + "; ".join(o.broken)]
            for o in outcomes]
    if markdown:
        escape = lambda cell: cell.replace("|", "\\|")  # noqa: E731
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(escape(c) for c in row) + " |" for row in rows])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1] for row in [header, *rows])


def broken_report(outcomes: Sequence[Outcome]) -> str:
    """Each broken probe with its stderr tail."""
    parts = [f"{o.probe.name} ({'; '.join(o.broken)}):\n" + "\n".join("    " + line for line in o.tail().splitlines())
             for o in outcomes if not o.kept]
    return "\n".join(parts)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.hostile_probes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=REPO_ROOT, help="the checkout to probe (default: this one)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run these probes only")
    parser.add_argument("--markdown", action="store_true", help="the table in Markdown")
    args = parser.parse_args(argv)
    from tests.probe_table import PROBES  # the table builds on this module's records
    unknown = set(args.only or ()) - {p.name for p in PROBES}
    if unknown:
        parser.error(f"no probes named {', '.join(sorted(unknown))}")
    probes = [p for p in PROBES if not args.only or p.name in args.only]
    started = time.perf_counter()
    outcomes = run_probes(probes, args.repo)
    print(table(outcomes, args.markdown))
    kept = sum(o.kept for o in outcomes)
    print(f"\n{kept} of {len(outcomes)} promises kept in {time.perf_counter() - started:.0f} s ({args.repo.resolve()})")
    if kept < len(outcomes):
        fence = "```\n" if args.markdown else ""
        print(f"\n{fence}{broken_report(outcomes)}\n{fence}", end="")
    return 0 if kept == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
