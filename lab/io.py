"""Writing files so that no reader ever sees half of one: the one atomic-write helper.

Every file ``lab`` writes (run records, metrics tables, figures, caches, checkpoints) goes
to a temporary file in the target's own folder and is then renamed over the target. A
rename within one folder is atomic on POSIX file systems, so a write that fails part-way
(a full disk, a quota, SIGKILL) leaves the previous file as it was and no temporary file
behind. The temporary file must live in the target's folder: one in the system temp
folder would make the rename a copy across file systems, which is neither. A write that
fails for lack of space, a quota or a read-only or unwritable folder raises
``lab.errors.WriteError`` naming the target, which ``lab`` prints as one line. A process
killed mid-write (SIGKILL, a power cut) cannot clean up: its temporary file
(``.<name>.<random>.tmp``) stays beside an intact target until :func:`remove_temporaries`
(a resumed fit calls it on its run folder).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from lab.errors import writing

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "remove_temporaries"]


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once, at import (os.umask is process-wide, not thread-safe)


def _mode_of(target: Path) -> int:
    try:
        return target.stat().st_mode & 0o7777
    except OSError:  # a new file
        return 0o666 & ~_UMASK


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    On any exception (the writer's own or the rename's) the temporary file is removed and
    ``path`` is left untouched. The caller writes the temporary path by any means (a
    handle, ``np.save``, ``torch.save``, a memory map)."""
    target = Path(path)
    tmp: Path | None = None
    with writing(target):
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            os.close(fd)
            tmp = Path(name)
            yield tmp
            # mkstemp makes the file private (0600): give it the mode a plain open() would
            # (the target's own, or 0666 less the umask), so others can read a shared run.
            os.chmod(tmp, _mode_of(target))
            os.replace(tmp, target)
        except BaseException:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and a rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file via a temporary file and a rename, so no reader sees half of it."""
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        handle.write(text)


def remove_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files :func:`atomic_path` left in ``folder`` when its process
    was killed mid-write; return them. Call it only where no other process is writing
    (a run folder whose fit is resuming)."""
    removed = []
    for path in sorted(Path(folder).glob(".*.tmp")):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
