"""Kaggle's Dogs vs Cats: 25,000 labelled JPEGs of varied sizes, two classes.

There is no official test split with labels, so the labelled ``train`` folder is split
70:30 (seeded, stratified) into train and test, and the base's validation share is held
out of the train part. The images are decoded once, at ``image_size``, into a
memory-mapped cache (``lab.data.cache``); every split is an index subset of it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from lab.data.base import check_fraction, stratified_split
from lab.data.cache import decoded_images, source_cache_dir
from lab.data.images import ArrayDataset, ImageDataModule, InDataRoot, required_image_size
from lab.errors import LabError

CLASSES = ["cat", "dog"]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
FOLDER = "dogs-vs-cats"


def _natural_key(name: str) -> list[str | int]:
    """Sort key that puts ``cat.2.jpg`` before ``cat.10.jpg``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.lower())]


def _images_in(folder: Path) -> list[Path]:
    """Image files directly in ``folder``; dotfiles (``._cat.1.jpg``) and other files skipped."""
    return [
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    ]


def find_images(train_dir: Path) -> tuple[list[Path], np.ndarray]:
    """The image files of ``train_dir`` and their labels (0 cat, 1 dog), in a stable order.

    Reads class folders ``cat/`` and ``dog/`` if there are any (other folders are
    ignored), else the flat Kaggle layout ``cat.N.jpg`` / ``dog.N.jpg``. Non-image files
    are ignored; an image whose class cannot be told is an error rather than dropped.
    """
    class_dirs = {p.name.lower(): p for p in train_dir.iterdir() if p.is_dir()}
    loose = _images_in(train_dir)
    by_class: dict[int, list[Path]] = {}
    if any(name in class_dirs for name in CLASSES):
        if loose:
            raise LabError(
                f"{train_dir} mixes the two layouts: class folders cat/, dog/ and loose "
                f"images such as {loose[0].name}; keep one layout"
            )
        for label, name in enumerate(CLASSES):
            if name in class_dirs:
                by_class[label] = _images_in(class_dirs[name])
    else:
        for path in loose:
            name = path.name.split(".")[0].lower()
            if name not in CLASSES:
                raise LabError(
                    f"cannot tell the class of {path}: in the flat layout image files must "
                    f"be named cat.N.jpg or dog.N.jpg; move or delete it"
                )
            by_class.setdefault(CLASSES.index(name), []).append(path)
    found = {label: files for label, files in by_class.items() if files}
    if not found:
        raise LabError(
            f"no cat or dog images in {train_dir}: expected cat.N.jpg / dog.N.jpg files "
            f"or cat/ and dog/ folders of images"
        )
    if len(found) < len(CLASSES):
        (only,) = found
        raise LabError(f"only {CLASSES[only]} images in {train_dir}: both cats and dogs are needed")
    files, labels = [], []
    for label in sorted(found):
        ordered = sorted(found[label], key=lambda p: _natural_key(p.name))
        files += ordered
        labels += [label] * len(ordered)
    return files, np.asarray(labels, dtype=np.int64)


class DogsCatsDataModule(InDataRoot, ImageDataModule):
    """Dogs vs Cats under ``<root>/dogs-vs-cats/train/``, split train / val / test.

    Args:
        test_fraction: share of all images held out for testing (seeded, stratified).
        image_size: square side every image is decoded and cached at (images vary).
        cache_dir: the cache root (default ``$XDG_CACHE_HOME/lab`` or ``~/.cache/lab``),
            never the data folder: ``lab.data.cache.source_cache_dir``.
        normalization: ``dataset`` and ``imagenet`` both use ImageNet statistics.
        Others: see ``ImageDataModule``.
    """

    dataset_name = "imagenet"  # no statistics of its own: its photos are ImageNet-like
    folder_name = FOLDER  # the unzipped train/ folder and the decoded cache

    def __init__(
        self,
        image_size: int = 64,
        test_fraction: float = 0.3,
        cache_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        image_size = required_image_size(image_size, "Dogs vs Cats images vary in size")
        check_fraction("test_fraction", test_fraction)
        super().__init__(image_size=image_size, **kwargs)
        self.test_fraction = test_fraction
        self.cache_dir = source_cache_dir(self.data_dir, cache_dir)
        self.num_classes = len(CLASSES)
        self.class_names = list(CLASSES)
        self.files: list[Path] = []
        self.split_indices: dict[str, np.ndarray] = {}
        self._decoded: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def cache_file(self) -> Path:
        """The decoded ``.npy`` for this size and channel count (one per setting, kept)."""
        size = self.image_size
        return self.cache_dir / f"train_{size}x{size}_{self.channels}ch.npy"

    def images_and_labels(self) -> tuple[np.ndarray, np.ndarray]:
        """All labelled images, uint8 ``(N, S, S, C)`` (memory-mapped), and their labels."""
        if self._decoded is None:
            train_dir = self.require(
                self.data_dir / "train",
                f"expected Dogs vs Cats as cat.N.jpg / dog.N.jpg files (Kaggle layout) or "
                f"cat/ and dog/ folders in it. Kaggle needs a login, so it is not downloaded "
                f"for you: run `kaggle competitions download -c dogs-vs-cats`, unzip the "
                f"archive and its train.zip into {self.data_dir}/",
            )
            self.files, labels = find_images(train_dir)
            size = (self.image_size, self.image_size)
            images = decoded_images(self.files, self.cache_file, size, self.channels)
            self._decoded = images, labels
        return self._decoded

    def prepare_data(self) -> None:
        # Decode on one process before the others memory-map the cache in setup.
        self.images_and_labels()

    def load_split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """The whole labelled set for either split: the splits are index subsets (setup)."""
        return self.images_and_labels()

    def _split(self, labels: np.ndarray) -> dict[str, np.ndarray]:
        rest, test = stratified_split(labels, self.test_fraction, self.seed)
        keep, val = stratified_split(labels[rest], self.val_fraction, self.seed)
        return {"train": rest[keep], "val": rest[val], "test": test}

    def setup(self, stage: str | None = None) -> None:
        # The base would use all of load_split("test"); here the test set is a subset.
        images, labels = self.load_split("train")
        if not self.split_indices:
            self.split_indices = self._split(labels)
        idx = self.split_indices
        if self.train_set is None and stage in (None, "fit", "validate", "test"):
            self.set_training_splits(images, labels, idx["train"])
            self.val_set = ArrayDataset(images, labels, idx["val"], self.eval_transform)
        if self.test_set is None and stage in (None, "test", "predict"):
            self.test_set = ArrayDataset(images, labels, idx["test"], self.eval_transform)
