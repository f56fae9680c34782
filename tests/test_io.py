"""lab.io: the one atomic write (the temporary file, the rename, the file's mode)."""

from __future__ import annotations

import os
import stat

import pytest

from lab.io import atomic_path, atomic_write_text


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_file_gets_the_mode_open_would_give_it(tmp_path):
    atomic_write_text(tmp_path / "a.csv", "x\n")
    with open(tmp_path / "plain.csv", "w") as handle:
        handle.write("x\n")
    assert mode(tmp_path / "a.csv") == mode(tmp_path / "plain.csv")  # not mkstemp's 0600


def test_a_rewritten_file_keeps_its_mode_and_a_failed_write_leaves_it(tmp_path):
    target = tmp_path / "run.json"
    atomic_write_text(target, "old")
    target.chmod(0o640)
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and mode(target) == 0o640
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("the writer failed")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == [
        "run.json"
    ]
