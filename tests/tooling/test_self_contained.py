"""The course cites no document its learners do not have.

Module pages, the docs and the site are read by learners who only hold the student flavour of this
repository: a reference such as "the course SPEC" or "../SPEC" points at nothing they can open. The
numerical conventions are stated in module 15 and the module plan in LEARNING_PATH.md.
"""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from _tooling import REPO

READ_BY_LEARNERS = ("modules", "docs", "site", "README.md", "LEARNING_PATH.md")
TEXT_SUFFIXES = {".py", ".md", ".yml", ".yaml", ".txt", ".css", ".html", ".ipynb", ".json", ".toml", ""}
# the word SPEC standing alone (not QSPEC, SPEC_X or spec): how an outside document is cited
OUTSIDE_DOCUMENT = re.compile(r"\bSPEC\b")


def tracked_files() -> list[str]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the tracked files are unknown")
    listing = subprocess.run(["git", "ls-files", "-z", "--", *READ_BY_LEARNERS], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout
    return [name for name in listing.split("\0") if name]


def test_the_search_sees_the_course():
    files = tracked_files()
    assert "README.md" in files and "LEARNING_PATH.md" in files and "site/course.yml" in files
    assert any(name.startswith("modules/15_quantization/") for name in files)
    assert any(name.startswith("docs/") for name in files)
    assert OUTSIDE_DOCUMENT.search("the numerical conventions are in the course SPEC.")
    assert OUTSIDE_DOCUMENT.search("see ../SPEC")
    assert not OUTSIDE_DOCUMENT.search("QSPEC, SPEC_VERSION and a spec are other words")


def test_no_page_cites_a_document_learners_do_not_have():
    found = []
    for name in tracked_files():
        path = REPO / name
        if path.suffix not in TEXT_SUFFIXES or not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE_DOCUMENT.search(line):
                found.append(f"{name}:{number}: {line.strip()}")
    assert not found, ("these lines cite SPEC, a document learners do not have (state the fact, or point to "
                       "module 15 or LEARNING_PATH.md):\n" + "\n".join(found))
