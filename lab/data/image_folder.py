"""Your own images: one sub-folder per class (torchvision's ``ImageFolder`` convention).

Two layouts are read:

    my-photos/cat/001.jpg, my-photos/dog/7.png, ...        one root: every split drawn from it
    my-photos/train/cat/..., my-photos/test/cat/..., ...   separate train/ [val/] [test/] roots

The class names are the sub-folder names, sorted (label ``k`` is the ``k``-th); the
files are found by torchvision's ``make_dataset`` (its image suffixes, sub-folders
included; dotfiles skipped). Every image is decoded once, whatever its size or mode
(greyscale, RGBA, CMYK, palette), at ``image_size`` into a memory-mapped uint8 cache
(``lab.data.cache``, as Tiny ImageNet and Dogs vs Cats), rebuilt when the files change.
A split that has no folder of its own is a seeded, stratified hold-out: test from the
images (``test_fraction``), then validation from what is left (``val_fraction``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension, make_dataset

from lab.data.base import check_fraction, stratified_split
from lab.data.cache import decoded_images
from lab.data.erasing import RandomErasingOption
from lab.data.images import ArrayDataset, ImageDataModule, required_image_size
from lab.errors import LabError

SPLITS = ("train", "val", "test")


def class_folders(root: Path) -> list[str]:
    """The sorted names of the sub-folders of ``root`` (dot-folders, e.g. caches, skipped)."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _is_image(path: str) -> bool:
    return not Path(path).name.startswith(".") and has_file_allowed_extension(path, IMG_EXTENSIONS)


def find_images(root: Path, classes: list[str], every_class: bool) -> tuple[list[Path], np.ndarray]:
    """The image files under ``root/<class>/`` and their labels (the class's index).

    Args:
        every_class: each class must have images here (the training root); else a class
            may be absent, but ``root`` may hold no folder that is not a class.
    """
    if unknown := sorted(set(class_folders(root)) - set(classes)):
        raise LabError(
            f"{root / unknown[0]} is not a class of the training images ({', '.join(classes)}): "
            f"rename or remove it"
        )
    found = make_dataset(
        root, {c: i for i, c in enumerate(classes)}, is_valid_file=_is_image, allow_empty=True
    )
    labels = np.asarray([label for _, label in found], dtype=np.int64)
    empty = [c for i, c in enumerate(classes) if not (labels == i).any()]
    if every_class and empty:
        suffixes = ", ".join(IMG_EXTENSIONS)
        raise LabError(f"{root / empty[0]} holds no images ({suffixes}): add some or remove it")
    if not found:
        raise LabError(f"no images under {root}: expected {root}/<class>/<image> files")
    return [Path(path) for path, _ in found], labels


class ImageFolderDataModule(RandomErasingOption, ImageDataModule):
    """Your own images: a folder of class sub-folders, or ``train/``, ``val/``, ``test/`` ones.

    Args:
        folder: the image folder (either layout; see the module docstring).
        image_size: square side every image is decoded and cached at (images vary).
        test_fraction: share of the images held out for testing when there is no
            ``test/`` folder (seeded, stratified).
        val_fraction: share of the remaining training images held out for validation
            when there is no ``val/`` folder.
        cache_dir: where the decoded arrays go (default ``<folder>/.lab_cache``).
        erasing: probability of random erasing of each training image (0: off).
        normalization: ``dataset`` and ``imagenet`` both use ImageNet statistics (photos).
        Others: see ``ImageDataModule``.
    """

    dataset_name = "imagenet"  # no statistics of its own: assume ImageNet-like photos

    def __init__(
        self,
        folder: str,
        image_size: int = 64,
        test_fraction: float = 0.2,
        val_fraction: float = 0.1,
        cache_dir: str | None = None,
        erasing: float = 0.0,
        **kwargs: Any,
    ) -> None:
        image_size = required_image_size(image_size, "the images of a folder vary in size")
        check_fraction("test_fraction", test_fraction)
        super().__init__(image_size=image_size, val_fraction=val_fraction, **kwargs)
        self.test_fraction = test_fraction
        self.folder = Path(folder)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else self.folder / ".lab_cache"
        self._add_erasing(erasing)
        # Known before setup: the CLI links num_classes to the model.
        self.roots = self.split_roots()
        self.class_names = class_folders(self.roots["train"])
        if len(self.class_names) < 2:
            raise LabError(
                f"{self.roots['train']} has {len(self.class_names)} class folders "
                f"({self.class_names}): at least 2 are needed, one sub-folder per class"
            )
        self.num_classes = len(self.class_names)
        self.files: dict[str, list[Path]] = {}
        self._decoded: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.split_indices: dict[str, tuple[str, np.ndarray]] = {}

    def split_roots(self) -> dict[str, Path]:
        """``{"train": folder}``, or the ``train/`` (``val/``, ``test/``) folders under it."""
        if not self.folder.is_dir():
            raise LabError(
                f"image folder {self.folder} not found: expected one sub-folder of images per "
                f"class (or train/, val/, test/ folders of them); set data.folder"
            )
        names = class_folders(self.folder)
        if "train" in names and set(names) <= set(SPLITS):
            return {s: self.folder / s for s in SPLITS if s in names}
        if stray := sorted(set(names) & {"val", "test"}):
            raise LabError(
                f"{self.folder / stray[0]} looks like a split folder but there is no "
                f"{self.folder / 'train'}: add train/ or rename {stray[0]}/"
            )
        return {"train": self.folder}

    def images(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """uint8 ``(N, S, S, C)`` images (memory-mapped cache) and labels of a split root."""
        if split not in self._decoded:
            files, labels = find_images(self.roots[split], self.class_names, split == "train")
            size = self.image_size
            cache = self.cache_dir / f"{split}_{size}x{size}_{self.channels}ch.npy"
            images = decoded_images(files, cache, (size, size), self.channels)
            self.files[split] = files
            self._decoded[split] = images, labels
        return self._decoded[split]

    def prepare_data(self) -> None:
        # Decode on one process before the others memory-map the caches in setup.
        for split in self.roots:
            self.images(split)

    def _splits(self) -> dict[str, tuple[str, np.ndarray]]:
        """Each split as (the root it comes from, indices into that root's images)."""
        _, labels = self.images("train")
        pool = np.arange(len(labels))
        out: dict[str, tuple[str, np.ndarray]] = {}
        if "test" in self.roots:
            out["test"] = "test", np.arange(len(self.images("test")[1]))
        else:
            keep, test = stratified_split(labels, self.test_fraction, self.seed)
            pool, out["test"] = keep, ("train", test)
        if "val" in self.roots:
            out["val"] = "val", np.arange(len(self.images("val")[1]))
        else:
            keep, val = stratified_split(labels[pool], self.val_fraction, self.seed)
            pool, out["val"] = pool[keep], ("train", pool[val])
        out["train"] = "train", pool
        return out

    def setup(self, stage: str | None = None) -> None:
        if not self.split_indices:
            self.split_indices = self._splits()

        def dataset(split: str, transform) -> ArrayDataset:  # noqa: ANN001
            root, indices = self.split_indices[split]
            return ArrayDataset(*self.images(root), indices, transform)

        if self.train_set is None and stage in (None, "fit", "validate", "test"):
            root, indices = self.split_indices["train"]
            self.set_training_splits(*self.images(root), indices)
            self.val_set = dataset("val", self.eval_transform)
        if self.test_set is None and stage in (None, "test", "predict"):
            self.test_set = dataset("test", self.eval_transform)
