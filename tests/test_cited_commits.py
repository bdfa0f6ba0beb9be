"""Commit ids that the docs and benchmark records cite are on the checkout's history.

A figure's or decision's commit must be one a reader can check out: an id from before a
rebase (the same change, another id) is not in a clone of main. Only ids git knows as
commits are checked: the original's commit (TheoViel/kaggle_islr 148ccb9) and digest prefixes
are no commits here.
"""

import pathlib
import re
import shutil
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
CITING = [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md")),
          REPO / "benchmarks" / "README.md", *sorted((REPO / "benchmarks" / "results").glob("*.json"))]
# An abbreviated id: 7-12 hex digits as a word, with at least one letter (a bare number is not).
COMMIT_ID = re.compile(r"\b(?=[0-9a-f]*[a-f])[0-9a-f]{7,12}\b")


def _git(*args, **kwargs):
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, **kwargs)


def test_cited_commits_are_ancestors_of_the_checkout():
    if shutil.which("git") is None or _git("rev-parse", "HEAD").returncode != 0:
        pytest.skip("not a git checkout")
    if _git("rev-parse", "--is-shallow-repository").stdout.strip() == "true":
        pytest.skip("a shallow clone has only part of the history")
    cited = {}
    for path in CITING:
        for token in COMMIT_ID.findall(path.read_text()):
            cited.setdefault(token, path.relative_to(REPO).as_posix())
    tokens = list(cited)
    kinds = _git("cat-file", "--batch-check", input="\n".join(tokens) + "\n").stdout.splitlines()
    assert len(kinds) == len(tokens), kinds  # one answer a line, in order
    commits = [token for token, kind in zip(tokens, kinds) if kind.split()[1:2] == ["commit"]]
    assert commits, "no cited commit found: the pattern or the pages changed"
    elsewhere = [f"{cited[c]}: {c}" for c in commits
                 if _git("merge-base", "--is-ancestor", c, "HEAD").returncode != 0]
    assert not elsewhere, f"cited commits not on this history (rebased away?): {elsewhere}"
