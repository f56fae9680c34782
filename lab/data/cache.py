"""A decoded-image cache: decode JPEG/PNG files once into one uint8 array on disk.

The first use decodes every file (in threads: PIL releases the GIL while decoding),
resizes it to a fixed size and writes one ``.npy`` array through a temporary file that
is renamed when complete; later epochs and runs memory-map that array. A fingerprint of
the source files (names, sizes, modification times) and of the decode settings is kept
beside it, and a cache whose sources or settings changed is rebuilt, never trusted.
Caches live under a cache root (:func:`cache_root`), keyed by the source folder
(:func:`source_cache_dir`), never in the data folder itself: it may be read-only, and
torchvision's ``ImageFolder`` would count a cache folder there as a class.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from lab.errors import LabError, WriteError
from lab.io import atomic_path, atomic_write_text


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where derived files go: ``cache_dir`` if given, else ``$XDG_CACHE_HOME/lab``, else
    ``~/.cache/lab``."""
    if cache_dir is not None:
        return Path(cache_dir)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "lab"


def source_cache_dir(source: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder of a source folder: ``<cache root>/<name>-<hash of its resolved
    path>`` (two folders of the same name do not share one; what is in the folder is
    checked by each cache file's fingerprint)."""
    resolved = Path(source).resolve()
    key = hashlib.sha256(str(resolved).encode()).hexdigest()[:16]
    return cache_root(cache_dir) / f"{resolved.name or 'root'}-{key}"


def decode_image(path: Path, size: tuple[int, int], channels: int = 3) -> np.ndarray:
    """One image file as uint8 ``(H, W, C)``, resized (bilinear, antialiased) to ``size`` (W, H).

    Greyscale files become 3 channels when ``channels`` is 3 (Tiny ImageNet has some).
    """
    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")
            if image.size != tuple(size):
                image = image.resize(tuple(size), Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise LabError(
            f"cannot decode image {path} ({error}); delete or replace the file"
        ) from error
    return array[..., None] if array.ndim == 2 else array


def fingerprint(files: Sequence[Path], settings: dict) -> str:
    """A hash of the file list (names, sizes, mtimes) and the decode settings."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path in files:
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def decoded_images(
    files: Sequence[Path],
    cache_file: Path,
    size: tuple[int, int],
    channels: int = 3,
    workers: int | None = None,
) -> np.ndarray:
    """uint8 ``(N, H, W, C)`` array of ``files``, decoded once and memory-mapped after.

    Args:
        files: the image files, in the order of the rows.
        cache_file: where the ``.npy`` goes (its fingerprint goes to ``<cache_file>.json``).
        size: (width, height) every image is resized to.
        channels: 3 (RGB) or 1 (greyscale).
        workers: decoding threads (default: the number of CPUs).
    """
    files = [Path(f) for f in files]
    settings = {"size": list(size), "channels": channels, "count": len(files), "version": 1}
    expected = fingerprint(files, settings)
    meta_file = cache_file.with_name(cache_file.name + ".json")
    if cache_file.is_file() and meta_file.is_file():
        try:
            meta = json.loads(meta_file.read_text())
            array = np.load(cache_file, mmap_mode="r")
            shape_ok = array.shape == (len(files), size[1], size[0], channels)
            if meta.get("fingerprint") == expected and shape_ok and array.dtype == np.uint8:
                return array
        except (ValueError, OSError, json.JSONDecodeError):
            pass  # unreadable or half-written: rebuilt below
    return _build(files, cache_file, meta_file, size, channels, expected, workers)


def _build(
    files: list[Path],
    cache_file: Path,
    meta_file: Path,
    size: tuple[int, int],
    channels: int,
    expected: str,
    workers: int | None,
) -> np.ndarray:
    meta_file.unlink(missing_ok=True)  # a stale fingerprint must never vouch for new data
    shape = (len(files), size[1], size[0], channels)
    try:
        with atomic_path(cache_file) as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
            _reserve(tmp, out.offset + out.nbytes)

            def fill(i: int) -> None:
                out[i] = decode_image(files[i], size, channels)

            with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
                list(pool.map(fill, range(len(files))))
            out.flush()
            out = None  # drop the memmap (closing its file) before the rename
        text = json.dumps({"fingerprint": expected, "shape": shape}) + "\n"
        atomic_write_text(meta_file, text)
    except WriteError as error:  # the cache root is full or read-only, not the log root
        error.fix = "--data.init_args.cache_dir"
        raise
    return np.load(cache_file, mmap_mode="r")


def _reserve(path: Path, size: int) -> None:
    """Allocate the file's blocks before the memory map is written: on a full disk that is
    an ENOSPC here (a one-line error), not a SIGBUS in the middle of decoding."""
    if not hasattr(os, "posix_fallocate"):  # not on macOS: the map is written as it is
        return
    with open(path, "r+b") as handle:
        try:
            os.posix_fallocate(handle.fileno(), 0, size)
        except OSError as error:  # a file system that cannot reserve: as above
            if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
