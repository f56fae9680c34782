"""lab.io: the one atomic write (the temporary file, the rename, the file's mode, and a
full disk or read-only folder as one WriteError naming the file)."""

from __future__ import annotations

import errno
import os
import re
import signal
import stat
import subprocess
import sys

import pytest

from lab.errors import LabError, WriteError
from lab.io import atomic_path, atomic_write_text, remove_temporaries


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


def test_a_full_disk_is_a_write_error_naming_the_file_and_leaves_the_old_one(tmp_path):
    target = tmp_path / "metrics.csv"
    atomic_write_text(target, "old\n")
    with pytest.raises(WriteError) as raised, atomic_path(target) as tmp, open(tmp, "w") as out:
        out.write("half a ro")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert raised.value.path == target and raised.value.code == errno.ENOSPC
    assert re.fullmatch(
        rf"no space left on device while writing {re.escape(str(target))} \(\d+ MB free\): "
        r"free space or set --log_root",
        str(raised.value),
    )
    raised.value.last_checkpoint = tmp_path / "last.ckpt"
    assert str(raised.value).endswith(f"; the last good checkpoint is {tmp_path / 'last.ckpt'}")
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == [target.name]


@pytest.mark.parametrize(
    ("code", "says"),
    [(errno.EROFS, "read-only file system"), (errno.EDQUOT, "disk quota exceeded")],
)
def test_a_read_only_folder_or_quota_is_a_write_error_too(tmp_path, code, says):
    with pytest.raises(WriteError, match=rf"^{says} while writing .*run.json") as raised:
        with atomic_path(tmp_path / "run.json"):
            raise OSError(code, os.strerror(code))
    assert isinstance(raised.value, LabError) and not list(tmp_path.iterdir())


_KILLED_MID_WRITE = """
import os, signal, sys
from lab.io import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    with open(tmp, "wb") as handle:
        handle.write(b"half of a new checkpoint")
        handle.flush()
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_write_killed_mid_way_leaves_the_target_and_a_temporary_that_is_removed(tmp_path):
    target = tmp_path / "last.ckpt"
    target.write_bytes(b"the previous checkpoint")
    killed = subprocess.run([sys.executable, "-c", _KILLED_MID_WRITE, str(target)], check=False)
    assert killed.returncode == -signal.SIGKILL
    assert target.read_bytes() == b"the previous checkpoint"
    (left,) = [p for p in tmp_path.iterdir() if p != target]  # no clean-up after SIGKILL
    assert left.name.startswith(".last.ckpt.") and left.name.endswith(".tmp")
    assert remove_temporaries(tmp_path) == [left]
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
