"""The code examples of README.md and docs/: every python and shell block carries a marker on the line
before its opening fence, `<!-- example: run -->` (tests/test_docs_examples.py runs it) or
`<!-- example: not run here: REASON -->`."""
from __future__ import annotations

import dataclasses
import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parent.parent
DOC_FILES = ("README.md",)
DOCS_DIR = "docs"
EXAMPLE_LANGUAGES = frozenset({"python", "py", "bash", "sh", "shell", "console"})
SHELL_LANGUAGES = frozenset({"bash", "sh", "shell", "console"})
RUN_MARKER = "run"
NOT_RUN_PREFIX = "not run here:"
MIN_REASON_CHARS = 10  # "needs a GPU" is about the shortest honest reason

FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")
MARKER = re.compile(r"^\s*<!--\s*example:\s*(?P<body>.*?)\s*-->\s*$")


@dataclasses.dataclass(frozen=True)
class Example:
    """One fenced block of a page: where it is, its language, its code and its marker."""
    page: str
    line: int
    language: str
    code: str
    marker: str | None  # "run", "not run here: REASON", or None when the line before is no marker

    @property
    def runs(self) -> bool:
        return self.marker == RUN_MARKER

    @property
    def is_shell(self) -> bool:
        return self.language in SHELL_LANGUAGES

    def where(self) -> str:
        return f"{self.page}:{self.line}"


def doc_pages(repo: pathlib.Path = REPO) -> list[pathlib.Path]:
    """README.md and every page under docs/, in a stable order."""
    pages = [repo / name for name in DOC_FILES]
    return pages + sorted((repo / DOCS_DIR).rglob("*.md"))


def examples_of(path: pathlib.Path, repo: pathlib.Path = REPO) -> tuple[list[Example], list[str]]:
    """The example blocks of one page, and the problems found: markers with no block after them."""
    lines = path.read_text(encoding="utf-8").splitlines()
    page = str(path.relative_to(repo))
    found, problems = [], []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            if MARKER.match(lines[i]) and not (i + 1 < len(lines) and FENCE.match(lines[i + 1])):
                problems.append(f"{page}:{i + 1}: an example marker must be on the line right before a fence")
            i += 1
            continue
        end = _closing_fence(lines, i, opening)
        language = opening["lang"].lower()
        if language in EXAMPLE_LANGUAGES:
            indent = len(opening["indent"])
            code = "\n".join(line[indent:] if not line[:indent].strip() else line.lstrip()
                             for line in lines[i + 1:end])
            marker = MARKER.match(lines[i - 1]) if i else None
            found.append(Example(page, i + 1, language, code + "\n", marker["body"] if marker else None))
        i = end + 1
    return found, problems


def _closing_fence(lines: list[str], start: int, opening: re.Match) -> int:
    fence = opening["fence"]
    for j in range(start + 1, len(lines)):
        stripped = lines[j].strip()
        if stripped.startswith(fence[0] * len(fence)) and not stripped.lstrip(fence[0]):
            return j
    return len(lines)


def marker_problem(example: Example) -> str | None:
    """Why the example's marker is not acceptable; None when it is."""
    if example.marker is None:
        return (f"{example.where()}: a {example.language} block without a marker: put "
                f"'<!-- example: run -->' or '<!-- example: not run here: REASON -->' on the line before it")
    if example.marker == RUN_MARKER:
        return None
    if example.marker.startswith(NOT_RUN_PREFIX):
        reason = example.marker[len(NOT_RUN_PREFIX):].strip()
        if len(reason) >= MIN_REASON_CHARS:
            return None
        return f"{example.where()}: 'not run here' needs its reason (at least {MIN_REASON_CHARS} characters)"
    return f"{example.where()}: unknown example marker {example.marker!r}"


def all_examples(repo: pathlib.Path = REPO) -> tuple[list[Example], list[str]]:
    examples, problems = [], []
    for path in doc_pages(repo):
        found, page_problems = examples_of(path, repo)
        examples += found
        problems += page_problems
    return examples, problems
