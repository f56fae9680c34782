"""A small CIFAR-10 in torchvision's python-pickle format (``cifar-10-batches-py``).

The published files were pickled by Python 2 (protocol 2), so their dict keys, file
names and class names are Python 2 ``str``: they load as ``bytes`` with
``encoding="bytes"`` and as ``str`` with torchvision's ``encoding="latin1"``. Python 3's
pickler writes ``bytes`` so that they stay ``bytes`` under either encoding, which
torchvision's reader rejects (``KeyError: 'data'``); hence the small pickler below.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np

from lab.data.cifar10 import CLASSES
from lab.data.fakes.stl10 import upright_image


class _Py2Pickler(pickle._Pickler):
    """Protocol 2 pickler that writes ``bytes`` as Python 2 ``str`` (as the real files)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def _dump(obj: dict[bytes, Any], path: Path) -> None:
    with open(path, "wb") as handle:
        _Py2Pickler(handle, protocol=2).dump(obj)


def _write_batch(path: Path, labels: list[int], name: bytes) -> None:
    images = np.stack([upright_image(label, 32) for label in labels])
    _dump(
        {
            b"batch_label": name,
            b"labels": labels,
            b"data": images.transpose(0, 3, 1, 2).reshape(len(labels), 3072),  # CHW rows
            b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
        },
        path,
    )


def write_cifar10(root: Path, per_class_train: int = 6, per_class_test: int = 2) -> Path:
    """Write 5 train batches, the test batch and ``batches.meta``; return the folder."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    train = [c for c in range(10) for _ in range(per_class_train)]
    np.random.default_rng(0).shuffle(train)
    for i, part in enumerate(np.array_split(np.array(train), 5), start=1):
        _write_batch(folder / f"data_batch_{i}", part.tolist(), f"training batch {i} of 5".encode())
    test = [c for c in range(10) for _ in range(per_class_test)]
    _write_batch(folder / "test_batch", test, b"testing batch 1 of 1")
    meta = {
        b"label_names": [c.encode() for c in CLASSES],
        b"num_vis": 3072,
        b"num_cases_per_batch": 10000,
    }
    _dump(meta, folder / "batches.meta")
    return folder
