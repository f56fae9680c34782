"""CIFAR-10 from torchvision's python-pickle files, with a seeded train / val split.

torchvision's ``CIFAR10`` checks every file's md5 even with ``download=False``, which
rejects any other copy in the same format; here the files are read by a small reader and
checked against torchvision's own md5 list when ``verify`` is on (the default).
"""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from torchvision.datasets import CIFAR10

from lab.data.base import check_at_least, stratified_split
from lab.data.images import ImageDataModule, InDataRoot
from lab.errors import LabError

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
REFETCH = "delete the folder and download again (--data.init_args.download=true)"


# The only callables a CIFAR-10 pickle needs: those that rebuild a numpy array (the pixel
# rows; numpy 2 writes ``numpy._core``, the published files ``numpy.core``) and the one
# Python 3's protocol-2 pickler uses for bytes. Dicts, lists, strings, bytes and numbers
# need none. Anything else a file names is refused, so a tampered file (read with
# ``verify: false``, when no checksum guards it) cannot run code.
_RECONSTRUCT = np.zeros(0).__reduce__()[0]  # numpy's array rebuilder, in any numpy version
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle that names a callable outside ``_ALLOWED_GLOBALS``."""


class _DataUnpickler(pickle.Unpickler):
    """Unpickler that builds only plain data and numpy arrays (Python's documented way
    of restricting what a pickle may call: ``find_class``)."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise UnsafePickleError(f"it names {module}.{name}, which CIFAR-10 data never holds")
        return allowed


def _unpickle(path: Path, keys: tuple[bytes, ...]) -> dict:
    """A CIFAR pickle as a dict with ``bytes`` keys; a LabError if it is not one.

    Read by ``_DataUnpickler``: nothing in the file can run, verified or not."""
    try:
        with open(path, "rb") as handle:
            content = _DataUnpickler(handle, encoding="bytes").load()
    except UnsafePickleError as error:
        raise LabError(
            f"refused to read {path}: {error}, and loading it could run code from the file; "
            f"{REFETCH}"
        ) from None
    except Exception as error:  # a damaged pickle fails in many different ways
        raise LabError(f"{path} is not a CIFAR-10 python pickle ({error!r}); {REFETCH}") from error
    missing = [k.decode() for k in keys if not isinstance(content, dict) or k not in content]
    if missing:
        raise LabError(f"{path} lacks the entries {missing} of a CIFAR-10 batch; {REFETCH}")
    return content


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch as uint8 ``(N, 32, 32, 3)`` images and int64 labels."""
    batch = _unpickle(path, (b"data", b"labels"))
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape != (len(labels), 3072):
        raise LabError(
            f"{path} holds data of shape {data.shape} for {len(labels)} labels, "
            f"not ({len(labels)}, 3072); {REFETCH}"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise LabError(f"{path} holds labels outside 0..9; {REFETCH}")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels


def _checked_classes(classes: list[str] | None) -> list[str] | None:
    """``classes`` as CIFAR-10 class names (at least two, no repeats), or None for all."""
    if classes is None:
        return None
    names = [str(name) for name in classes]
    unknown = [name for name in names if name not in CLASSES]
    if unknown or len(set(names)) != len(names) or len(names) < 2:
        raise LabError(
            f"data.classes must name at least 2 different CIFAR-10 classes out of {CLASSES}, "
            f"got {names}"
        )
    return names


class CIFAR10DataModule(InDataRoot, ImageDataModule):
    """CIFAR-10 under ``<root>/cifar-10-batches-py/``: 50k train (val held out), 10k test.

    Args:
        val_fraction: share of the training pool held out for validation (0.2: 40k / 10k).
        train_subset: if set, a seeded, stratified subset of this many training images,
            taken before the validation split (e.g. 5,000 for a "tiny CIFAR" study).
        classes: if set, only these classes (by name, e.g. ``[cat, dog]``), labelled
            0..k-1 in the order given; ``train_subset`` then counts images of these
            classes only.
        verify: check the files' md5 against the published ones.
        download: download and extract the archive (with its md5) in ``prepare_data``.
        Others: see ``ImageDataModule``.
    """

    dataset_name = "cifar10"
    folder_name = CIFAR10.base_folder

    def __init__(
        self,
        val_fraction: float = 0.2,
        train_subset: int | None = None,
        classes: list[str] | None = None,
        verify: bool = True,
        download: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(val_fraction=val_fraction, **kwargs)
        self.train_subset = check_at_least("train_subset", train_subset, 20, " images")
        self.verify = verify
        self.download = download
        self.classes = _checked_classes(classes)
        self.class_names = list(self.classes or CLASSES)
        self.num_classes = len(self.class_names)

    def _how_to_get(self) -> str:
        return self.unpack_hint("CIFAR-10's python version", "cifar-10-python.tar.gz")

    def prepare_data(self) -> None:
        if self.download:
            CIFAR10(str(self.root), train=True, download=True)

    def _check(self) -> None:
        meta = CIFAR10.meta
        files = [*CIFAR10.train_list, *CIFAR10.test_list, [meta["filename"], meta["md5"]]]
        self.check_files(self.data_dir, [tuple(f) for f in files], self.verify, self._how_to_get())
        content = _unpickle(self.data_dir / meta["filename"], (b"label_names",))
        names = [n.decode() for n in content[b"label_names"]]
        if names != CLASSES:
            path = self.data_dir / meta["filename"]
            raise LabError(f"{path} names classes {names}, not CIFAR-10's; {REFETCH}")

    def load_split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        self._check()
        names = CIFAR10.train_list if split == "train" else CIFAR10.test_list
        parts = [read_batch(self.data_dir / name) for name, _ in names]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        if self.classes is None:
            return images, labels
        # CIFAR-10 label -> position in ``classes`` (-1: dropped), in the order given.
        new_label = np.full(len(CLASSES), -1, dtype=np.int64)
        new_label[[CLASSES.index(name) for name in self.classes]] = np.arange(len(self.classes))
        kept = new_label[labels] >= 0
        return images[kept], new_label[labels[kept]]

    def train_indices(self, labels: np.ndarray) -> np.ndarray:
        if self.train_subset is None:
            return np.arange(len(labels))
        if self.train_subset >= len(labels):
            raise LabError(
                f"data.train_subset={self.train_subset} but the training set has {len(labels)}"
            )
        _, subset = stratified_split(labels, self.train_subset / len(labels), self.seed)
        return subset
