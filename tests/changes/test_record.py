"""The record and the note: what they say, and what they never do."""

from __future__ import annotations

import os
import subprocess


def _git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"})


def test_files_touched_keeps_whole_names_of_modified_files_and_leaves_out_untracked_ones(tmp_path):
    from pgsteady.changes import files

    repo = tmp_path / "repo"
    (repo / "changes").mkdir(parents=True)
    _git(repo, "init", "-q")
    (repo / "wd.err").write_text("one\n")
    (repo / "app.py").write_text("x = 1\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "first")
    path = repo / "changes" / "c.toml"
    path.write_text(files.template(path, "c"))
    _git(repo, "add", "changes/c.toml")
    _git(repo, "commit", "-qm", "the change")
    (repo / "wd.err").write_text("two\n")  # modified, unstaged: porcelain " M wd.err"
    (repo / "app.py").write_text("x = 2\n")
    _git(repo, "add", "app.py")  # modified, staged: "M  app.py"
    (repo / "scratch.txt").write_text("not part of it\n")
    (repo / "changes" / "notes.tmp").write_text("nor this\n")
    change = files.load(path)
    change.files = None
    touched = files.files_touched(change)
    assert touched == ["app.py", "changes/c.toml", "wd.err"], touched
