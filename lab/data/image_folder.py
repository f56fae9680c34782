"""Your own images: one sub-folder per class (torchvision's ``ImageFolder`` convention).

Two layouts are read:

    my-photos/cat/001.jpg, my-photos/dog/7.png, ...        one root: every split drawn from it
    my-photos/train/cat/..., my-photos/test/cat/..., ...   separate train/ [val/] [test/] roots

The class names are the sub-folder names, sorted (label ``k`` is the ``k``-th). Every
file in a format PIL decodes is an image (JPEG, PNG, GIF: its first frame, WebP, TIFF,
BMP, ...; sub-folders included; dotfiles and dot-folders skipped); any other file is
skipped with one warning naming how many and a few of them. Every image is decoded
once, whatever its size or mode (greyscale, RGBA, CMYK, palette), into RGB (or grey) at
``image_size`` into a memory-mapped uint8 cache (``lab.data.cache``) under the cache
root (``cache_dir``, default ``$XDG_CACHE_HOME/lab`` or ``~/.cache/lab``), never in the
image folder, which may be read-only and is left exactly as it was; a cache whose files
changed (added, removed, resized, touched) is rebuilt. An image PIL cannot decode is a
one-line error naming the file.
A split that has no folder of its own is a seeded, stratified hold-out: test from the
images (``test_fraction``), then validation from what is left (``val_fraction``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.utilities import rank_zero_warn
from PIL import Image
from torchvision.datasets.folder import make_dataset

from lab.data.base import check_fraction, stratified_split
from lab.data.cache import decoded_images, source_cache_dir
from lab.data.erasing import RandomErasingOption
from lab.data.images import ArrayDataset, ImageDataModule, required_image_size
from lab.errors import LabError

SPLITS = ("train", "val", "test")


def class_folders(root: Path) -> list[str]:
    """The sorted names of the sub-folders of ``root`` (dot-folders, e.g. caches, skipped)."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_suffixes() -> frozenset[str]:
    """The file suffixes of the formats PIL decodes (not those it only identifies)."""
    Image.init()
    identify_only = {"BUFR", "GRIB", "HDF5", "WMF", "MPEG", "EPS", "IPTC"}
    return frozenset(
        suffix
        for suffix, name in Image.registered_extensions().items()
        if name in Image.OPEN and name not in identify_only
    )


IMAGE_SUFFIXES = _image_suffixes()
EXAMPLES = 3  # non-image files named in the warning


def _is_image(path: str) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def _is_visible(root: Path, path: str) -> bool:
    """Not a dotfile, nor in a dot-folder (``.DS_Store``, ``._x.jpg``, ``.ipynb_checkpoints``)."""
    return not any(part.startswith(".") for part in Path(path).relative_to(root).parts)


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
    every = make_dataset(
        root,
        {c: i for i, c in enumerate(classes)},
        is_valid_file=lambda path: _is_visible(root, path),
        allow_empty=True,
    )
    found = [(path, label) for path, label in every if _is_image(path)]
    if others := sorted(path for path, _ in every if not _is_image(path)):
        names = ", ".join(str(Path(p).relative_to(root)) for p in others[:EXAMPLES])
        rank_zero_warn(
            f"{root}: skipped {len(others)} files that are not images (no format PIL "
            f"decodes has their suffix): {names}{', ...' if len(others) > EXAMPLES else ''}"
        )
    labels = np.asarray([label for _, label in found], dtype=np.int64)
    empty = [c for i, c in enumerate(classes) if not (labels == i).any()]
    if every_class and empty:
        raise LabError(
            f"{root / empty[0]} holds no images (JPEG, PNG, GIF, WebP, TIFF, BMP, ...): add "
            "some or remove it"
        )
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
        cache_dir: the cache root (default ``$XDG_CACHE_HOME/lab`` or ``~/.cache/lab``): the
            decoded arrays go to ``<cache_dir>/<folder name>-<hash of its resolved path>/``.
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
        self.cache_dir = source_cache_dir(self.folder, cache_dir)
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
