"""The exception types for what the user can fix: printed as a single line by ``lab``."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path


class LabError(Exception):
    """A problem the user can fix (a missing folder, a bad value): shown without a traceback."""


# The errors of a write that the user fixes on the storage side, not in lab: what each says.
STORAGE_ERRNOS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
}
# Only a write raises these three; EACCES is also a read's, so it is taken only from writes.
_WRITE_ONLY = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def _free_mb(path: Path) -> int | None:
    """Free MB on the file system of ``path`` (or of its nearest existing parent)."""
    for folder in (path, *path.parents):
        try:
            return shutil.disk_usage(folder).free // 2**20
        except OSError:
            continue
    return None


class WriteError(LabError):
    """A write failed for lack of space, a quota, a read-only or unwritable folder.

    Printed as ``lab: no space left on device while writing <path> (<n> MB free): free
    space or set --log_root; the last good checkpoint is <path>``. ``last_checkpoint`` is
    filled in by whoever knows it (the fit's ``Interruption`` callback)."""

    def __init__(self, path: str | os.PathLike, code: int, fix: str | None = None) -> None:
        self.path = Path(path)
        self.code = code
        self.fix = fix  # what to do, where the default (--log_root) is not it: a cache
        self.last_checkpoint: Path | None = None
        super().__init__(STORAGE_ERRNOS.get(code, os.strerror(code)))

    def __str__(self) -> str:
        what = STORAGE_ERRNOS.get(self.code, os.strerror(self.code))
        free = _free_mb(self.path)
        free_text = f" ({free} MB free)" if free is not None else ""
        full = self.code in (errno.ENOSPC, errno.EDQUOT)
        where = self.fix or "--log_root"
        fix = f"free space or set {where}" if full else f"make the folder writable or set {where}"
        text = f"{what} while writing {self.path}{free_text}: {fix}"
        if self.last_checkpoint is not None:
            text += f"; the last good checkpoint is {self.last_checkpoint}"
        return text


def write_error(error: BaseException | None, writing: bool = False) -> WriteError | None:
    """The :class:`WriteError` an exception is or was caused by, or one made from an
    ``OSError`` of a full, read-only or over-quota file system (``writing``: the error
    came from a write, so ``EACCES`` counts too)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, WriteError):
            return error
        codes = STORAGE_ERRNOS if writing else _WRITE_ONLY
        if isinstance(error, OSError) and error.errno in codes and error.filename:
            return WriteError(error.filename, error.errno)
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Writes to ``path`` inside: an ``OSError`` of a full, over-quota, read-only or
    unwritable file system becomes the one-line :class:`WriteError` naming ``path``."""
    try:
        yield
    except OSError as error:
        if error.errno in STORAGE_ERRNOS:
            raise WriteError(path, error.errno) from error
        raise
