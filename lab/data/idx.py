"""The IDX format of MNIST and Fashion-MNIST: a reader with checks, and the shared module.

An IDX file is a big-endian header (two zero bytes, a type code, the number of
dimensions, each dimension as a 4-byte integer) followed by the data; the four files of
a data set are ``{train,t10k}-{images-idx3,labels-idx1}-ubyte``, gzipped (as published)
or not (as torchvision leaves them beside the archives in ``<root>/<Name>/raw/``).

Checksums are of the decompressed bytes: the published archives and the Debian
package's (re-compressed, so their ``.gz`` md5 differs) hold the same IDX bytes, and a
plain copy is checked the same way.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from lab.data.erasing import RandomErasingOption
from lab.data.images import ImageDataModule
from lab.errors import LabError

UBYTE = 0x08
FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


def idx_path(folder: Path, name: str) -> Path | None:
    """``folder/name`` or ``folder/name.gz``, whichever exists (the plain file first)."""
    for path in (folder / name, folder / f"{name}.gz"):
        if path.is_file():
            return path
    return None


def read_bytes(path: Path, fix: str) -> bytes:
    """The file's bytes, decompressed if it ends in ``.gz``; a LabError if it cannot be."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise LabError(f"{path} cannot be read ({error}): truncated or not gzip; {fix}") from error


def parse_idx(content: bytes, path: Path, ndim: int, fix: str) -> np.ndarray:
    """The uint8 array of an IDX file's bytes, with ``ndim`` dimensions; its size checked."""
    if len(content) < 4 or content[:2] != b"\0\0" or content[2] != UBYTE:
        raise LabError(f"{path} is not an IDX file of unsigned bytes (bad magic number); {fix}")
    if content[3] != ndim:
        raise LabError(f"{path} has {content[3]} dimensions, expected {ndim}; {fix}")
    header = 4 + 4 * ndim
    if len(content) < header:
        raise LabError(f"{path} is truncated inside its header; {fix}")
    shape = tuple(int(d) for d in np.frombuffer(content[4:header], dtype=">u4"))
    expected = header + int(np.prod(shape))
    if len(content) != expected:
        what = "truncated" if len(content) < expected else "longer than its header says"
        raise LabError(
            f"{path} is {what}: {len(content)} bytes for shape {shape}, expected {expected}; {fix}"
        )
    return np.frombuffer(content, dtype=np.uint8, offset=header).reshape(shape)


class IDXDataModule(RandomErasingOption, ImageDataModule):
    """Base of the IDX data sets: 60,000 train (a seeded, stratified val share held out)
    and the official 10,000 test images, 28x28 greyscale.

    Args:
        folder: the folder holding the four IDX files (gzipped or not), e.g. the Debian
            package's ``/usr/share/datasets/fashion-mnist``; default torchvision's layout,
            ``<root>/<Name>/raw``.
        verify: check each file's md5 (of its decompressed bytes) against the published
            data set's.
        download: download through torchvision into ``<root>/<Name>/raw`` in
            ``prepare_data`` (``folder`` must then be unset).
        erasing: probability of random erasing of each training image (0: off).
        channels: 1 (native) or 3 (the grey value repeated, for RGB backbones).
        val_fraction: share of the 60,000 held out for validation (0.1: 6,000).
        Others: see ``ImageDataModule`` (``image_size`` None keeps 28).
    """

    torchvision_class: Any = None  # torchvision's dataset class (download, folder name)
    classes: tuple[str, ...] = ()
    md5: dict[str, str] = {}  # IDX file name -> md5 of its decompressed bytes
    debian_package: str = ""  # the Debian package that ships the files, if any
    debian_folder: str = ""

    def __init__(
        self,
        folder: str | None = None,
        verify: bool = True,
        download: bool = False,
        erasing: float = 0.0,
        channels: int = 1,
        val_fraction: float = 0.1,
        **kwargs: Any,
    ) -> None:
        super().__init__(channels=channels, val_fraction=val_fraction, **kwargs)
        if download and folder is not None:
            raise LabError(
                f"data.download=true downloads into {self.root}; it cannot fill "
                f"data.folder={folder}: unset one of the two"
            )
        self.folder = Path(folder) if folder is not None else None
        self.verify, self.download = verify, download
        self.class_names = list(self.classes)
        self.num_classes = len(self.classes)
        self._add_erasing(erasing)
        self._loaded: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def data_dir(self) -> Path:
        """Where the IDX files are read from."""
        if self.folder is not None:
            return self.folder
        return self.root / self.torchvision_class.__name__ / "raw"

    def how_to_get(self) -> str:
        """What to do when the files are missing: download, or name the package's folder."""
        name = self.torchvision_class.__name__
        how = f"add --data.init_args.download=true (torchvision fetches {name} into {self.root})"
        if self.debian_package:
            how += (
                f", or `apt-get install {self.debian_package}` and add "
                f"--data.init_args.folder={self.debian_folder}"
            )
        return how

    def prepare_data(self) -> None:
        if self.download:
            self.torchvision_class(str(self.root), train=True, download=True)

    def read_file(self, split: str, kind: str) -> np.ndarray:
        """One of the four files as a uint8 array, checked (presence, size, md5)."""
        folder, name = self.data_dir, FILES[(split, kind)]
        if not folder.is_dir():
            raise LabError(
                f"{folder} not found: expected the four IDX files there; {self.how_to_get()}"
            )
        path = idx_path(folder, name)
        if path is None:
            raise LabError(f"{folder / name}(.gz) not found; {self.how_to_get()}")
        fix = f"delete it and get it again ({self.how_to_get()})"
        content = read_bytes(path, fix)
        if self.verify and hashlib.md5(content).hexdigest() != self.md5[name]:
            raise LabError(
                f"{path} does not match the md5 of the published {name} (corrupt or partial "
                f"download?): {fix}; only for a copy you made yourself in the same format, "
                f"set data.verify=false"
            )
        return parse_idx(content, path, 3 if kind == "images" else 1, fix)

    def load_split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """uint8 ``(N, 28, 28, 1)`` images and int64 labels of ``train`` or ``test``."""
        if split not in self._loaded:
            images = self.read_file(split, "images")
            labels = self.read_file(split, "labels").astype(np.int64)
            files = f"{FILES[(split, 'images')]} and {FILES[(split, 'labels')]}"
            if len(images) != len(labels):
                raise LabError(
                    f"{self.data_dir}: {files} hold {len(images)} images but {len(labels)} "
                    f"labels; get the files again ({self.how_to_get()})"
                )
            if labels.size and labels.max() >= self.num_classes:
                raise LabError(
                    f"{self.data_dir}: {FILES[(split, 'labels')]} holds label {labels.max()}, "
                    f"expected 0..{self.num_classes - 1}; get the files again"
                )
            self._loaded[split] = images[..., None], labels
        return self._loaded[split]
