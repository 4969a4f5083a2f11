"""The documentation site builds with `mkdocs build --strict` (broken links, anchors and API references
fail it), and the README stays a short front page: at most ~200 lines, no issue numbers or history,
no paths a clone lacks, and every link into docs/ resolves."""
from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.docs_examples import REPO, doc_pages

README_MAX_LINES = 210
MKDOCS_TIMEOUT_S = 300
ISSUE_REFERENCE = re.compile(r"\bissues?\s*#?\d+|(?<![\w/])#\d+\b", re.IGNORECASE)
PATHS_A_CLONE_LACKS = ("../shared", "shared/reference", "GENET_FACTS")
RELATIVE_LINK = re.compile(r"\]\((?!https?://|#|mailto:)(?P<target>[^)#\s]+)(?:#[^)]*)?\)")


def test_the_site_builds_strictly(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=REPO, capture_output=True, text=True, timeout=MKDOCS_TIMEOUT_S,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-6000:]
    assert (tmp_path / "site" / "index.html").exists()
    assert (tmp_path / "site" / "api" / "index.html").exists()


def test_the_readme_is_a_short_front_page():
    assert len((REPO / "README.md").read_text(encoding="utf-8").splitlines()) <= README_MAX_LINES


def test_no_page_cites_issue_numbers_or_paths_a_clone_lacks():
    problems = []
    for page in doc_pages():
        text = page.read_text(encoding="utf-8")
        problems += [f"{page.name}: {hit}" for hit in ISSUE_REFERENCE.findall(text)]
        problems += [f"{page.name}: {path}" for path in PATHS_A_CLONE_LACKS if path in text]
    assert not problems, problems


def test_every_relative_link_of_the_readme_resolves():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    targets = [match["target"] for match in RELATIVE_LINK.finditer(text)]
    assert targets, "the README links into the docs"
    missing = [target for target in targets if not (REPO / target).exists()]
    assert not missing, missing
