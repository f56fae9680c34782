"""run.json's git state: the commit, and whether code (not results/, the records) changed."""

from __future__ import annotations

import subprocess
from pathlib import Path

from lab.callbacks.run_record import git_state


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_a_new_record_in_results_leaves_the_tree_clean_and_a_code_change_does_not(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "runs.csv").write_text("run\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    (tmp_path / "results" / "runs.csv").write_text("run\nversion_0\n")
    (tmp_path / "results" / "benchmarks.csv").write_text("name\n")
    state = git_state(tmp_path / "results")  # from a subfolder too: the whole tree counts
    assert len(state["commit"]) == 40 and state["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_state(tmp_path / "results")["dirty"] is True
