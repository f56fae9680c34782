"""Tiny ImageNet: 200 classes of 64x64 images, 500 train and 50 labelled val per class.

Read from the official layout under ``<root>/tiny-imagenet-200/``. The official test
split has no labels, so ``test`` here is the official val split (labels from
``val/val_annotations.txt``) and ``val`` is a seeded, stratified hold-out of train.
Labels are indices into the sorted wnids. Images are decoded once at their native
64x64 RGB into memory-mapped caches (``lab.data.cache``); greyscale conversion and
resizing happen in the transform, so one cache serves every ``channels`` and
``image_size``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from torchvision.datasets.utils import download_and_extract_archive

from lab.data.base import check_at_least
from lab.data.cache import decoded_images, source_cache_dir
from lab.data.images import ImageDataModule, InDataRoot
from lab.errors import LabError

FOLDER = "tiny-imagenet-200"
URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
NUM_CLASSES = 200
NATIVE = (64, 64)


def _natural_key(name: str) -> list[str | int]:
    """Sort key that puts ``val_2.JPEG`` before ``val_10.JPEG``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def read_wnids(path: Path) -> list[str]:
    """The wnids of ``wnids.txt``, sorted (a label is an index into this list)."""
    wnids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(set(wnids)) != len(wnids) or not wnids:
        raise LabError(f"{path} must list distinct wnids, one a line; got {len(wnids)} lines")
    return sorted(wnids)


def read_names(path: Path, wnids: list[str]) -> list[str]:
    """The first name in ``words.txt`` of each wnid (the wnid itself if it is not there)."""
    wanted, names = set(wnids), {}
    with path.open() as lines:
        for line in lines:
            wnid, _, words = line.rstrip("\n").partition("\t")
            if wnid in wanted:
                names[wnid] = words.split(", ")[0].strip() or wnid
    found = [names.get(w, w) for w in wnids]
    # Names become metric keys (test/class_acc/<name>): keep them distinct.
    return [f"{n} ({w})" if found.count(n) > 1 else n for n, w in zip(found, wnids, strict=True)]


def read_val_annotations(path: Path, labels: dict[str, int]) -> dict[str, int]:
    """File name -> label of each line of ``val_annotations.txt`` (file, wnid, 4 box ints)."""
    out: dict[str, int] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.strip().split("\t")
        where = f"{path}, line {number}"
        if len(fields) != 6 or not all(re.fullmatch(r"-?\d+", f) for f in fields[2:]):
            raise LabError(f"{where}: expected 'file<TAB>wnid<TAB>4 box ints', got {line!r}")
        name, wnid = fields[0], fields[1]
        if wnid not in labels:
            raise LabError(f"{where}: wnid {wnid!r} of {name} is not in wnids.txt")
        if name in out:
            raise LabError(f"{where}: {name} is annotated twice")
        out[name] = labels[wnid]
    return out


class TinyImageNetDataModule(InDataRoot, ImageDataModule):
    """Tiny ImageNet from ``<root>/tiny-imagenet-200/``: train / held-out val / official val.

    Args:
        num_classes_subset: use only the first N classes (sorted wnids), labels 0..N-1,
            in every split (the 50-class experiments).
        download: fetch and unzip the official archive (237 MB) in ``prepare_data`` if
            the folder is missing.
        cache_dir: the cache root of the decoded arrays (default ``$XDG_CACHE_HOME/lab``
            or ``~/.cache/lab``), never the data folder: ``lab.data.cache.source_cache_dir``.
        Others: see ``ImageDataModule`` (``image_size`` None keeps the native 64).
    """

    dataset_name = "tiny_imagenet"
    folder_name = FOLDER  # the unzipped archive and the decoded caches

    def __init__(
        self,
        num_classes_subset: int | None = None,
        download: bool = False,
        val_fraction: float = 0.1,
        cache_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(val_fraction=val_fraction, **kwargs)
        self.num_classes_subset = check_at_least("num_classes_subset", num_classes_subset, 2)
        self.download = download
        self.cache_dir = source_cache_dir(self.data_dir, cache_dir)
        # Known before setup (the CLI links it to the model): a small wnids.txt (the
        # test fakes) sets it, else the real data set's 200, and setup checks it.
        wnids_file = self.data_dir / "wnids.txt"
        present = len(read_wnids(wnids_file)) if wnids_file.is_file() else NUM_CLASSES
        self.num_classes = num_classes_subset or present
        self.files: dict[str, list[Path]] = {}
        self._names: list[str] | None = None
        self._loaded: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def class_names(self) -> list[str]:
        """First ``words.txt`` name of each class once the data is there, else the indices."""
        if self._names is None:
            if not (self.data_dir / "wnids.txt").is_file():
                return [str(i) for i in range(self.num_classes)]
            self._names = self.read_class_names()
        return self._names

    def read_class_names(self) -> list[str]:
        """Names from ``words.txt`` (the wnids where it is missing), checked against wnids."""
        wnids = self.wnids()
        words = self.data_dir / "words.txt"
        return read_names(words, wnids) if words.is_file() else list(wnids)

    def wnids(self) -> list[str]:
        """The wnids in use, sorted: label ``k`` is ``wnids()[k]``."""
        root = self.require(
            self.data_dir,
            f"download it with --data.init_args.download=true, or unzip tiny-imagenet-200.zip "
            f"({URL}) into {self.root}",
        )
        wnids = read_wnids(self.require(root / "wnids.txt", "the archive is incomplete"))
        subset = self.num_classes_subset
        if subset is not None and subset > len(wnids):
            raise LabError(f"data.num_classes_subset={subset}, but {root} has {len(wnids)}")
        wnids = wnids[:subset] if subset else wnids
        if len(wnids) != self.num_classes:
            raise LabError(
                f"{root}/wnids.txt lists {len(wnids)} classes but the model was built for "
                f"{self.num_classes}; re-extract the archive"
            )
        return wnids

    def cache_file(self, split: str) -> Path:
        """The decoded ``.npy`` of a split (``train`` or ``test``) for this class subset."""
        classes = f"first{self.num_classes_subset}" if self.num_classes_subset else "all"
        return self.cache_dir / f"{split}_{classes}_64px_rgb.npy"

    def find_files(self, split: str) -> tuple[list[Path], np.ndarray]:
        """The image files of ``train`` or ``test`` (the official val) and their labels."""
        wnids = self.wnids()
        again = "re-extract the archive"
        if split == "train":
            files, labels = [], []
            for label, wnid in enumerate(wnids):
                folder = self.require(self.data_dir / "train" / wnid / "images", again)
                found = sorted(folder.glob("*.JPEG"))
                if not found:
                    raise LabError(f"no .JPEG images in {folder}; re-extract the archive")
                files += found
                labels += [label] * len(found)
            return files, np.asarray(labels, dtype=np.int64)
        if split != "test":
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        val = self.data_dir / "val"
        notes = self.require(val / "val_annotations.txt", "the val labels are in it")
        all_wnids = read_wnids(self.data_dir / "wnids.txt")
        annotated = read_val_annotations(notes, {w: i for i, w in enumerate(all_wnids)})
        images = self.require(val / "images", again)
        present = {p.name for p in images.glob("*.JPEG")}
        if missing := sorted(set(annotated) - present, key=_natural_key):
            raise LabError(f"{notes} names {len(missing)} images not in {images}: {missing[0]}")
        if unlabelled := sorted(present - set(annotated), key=_natural_key):
            raise LabError(f"{images / unlabelled[0]} (of {len(unlabelled)}) not in {notes}")
        names = sorted((n for n, k in annotated.items() if k < len(wnids)), key=_natural_key)
        labels = np.asarray([annotated[n] for n in names], dtype=np.int64)
        return [images / n for n in names], labels

    def load_split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """uint8 ``(N, 64, 64, 3)`` images (memory-mapped cache) and labels of a split."""
        if split not in self._loaded:
            files, labels = self.find_files(split)
            images = decoded_images(files, self.cache_file(split), NATIVE, channels=3)
            self.files[split] = files
            self._loaded[split] = images, labels
        return self._loaded[split]

    def prepare_data(self) -> None:
        if self.download and not self.data_dir.exists():
            self._download()
        # Decode on one process before the others memory-map the caches in setup.
        for split in ("train", "test"):
            self.load_split(split)

    def setup(self, stage: str | None = None) -> None:
        self._names = self.read_class_names()  # the data may have arrived since __init__
        super().setup(stage)

    def _download(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # Extract beside the target and rename: a half extraction never sits at data_dir.
        tmp = Path(tempfile.mkdtemp(prefix=".tiny-imagenet-download-", dir=self.root))
        try:
            download_and_extract_archive(URL, str(tmp), filename=f"{FOLDER}.zip", md5=MD5)
            extracted = self.require(tmp / FOLDER, "the archive did not contain it")
            os.replace(extracted, self.data_dir)
        except (OSError, RuntimeError) as error:
            if self.data_dir.exists():  # another process finished first
                return
            raise LabError(
                f"downloading {URL} into {self.root} failed ({error}); download it by hand "
                f"and unzip it into {self.root}"
            ) from error
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
