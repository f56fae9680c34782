"""Image data modules over decoded uint8 arrays: the shared machinery of the real data sets.

A subclass only says how to read its files into uint8 ``(N, H, W, C)`` arrays and
labels (``load_split``); splitting, channel conversion, resizing, augmentation,
normalisation, the P x K sampler option and the loaders live here, and with
``device_data`` the device-resident path (``lab.data.device_loader``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch.utils.data import Dataset
from torchvision.transforms import v2

from lab.data.base import LabDataModule, data_root, stratified_split
from lab.data.transforms import Normalization, image_transform, pick_stats
from lab.errors import LabError


class ArrayDataset(Dataset):
    """Items ``(transform(image), label)`` from a uint8 ``(N, H, W, C)`` array (memmap-able).

    ``indices`` selects a subset without copying the array.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        indices: np.ndarray | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(
                f"images must be uint8 (N, H, W, C), got {images.dtype} {images.shape}"
            )
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.indices = np.arange(len(images)) if indices is None else np.asarray(indices)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def targets(self) -> np.ndarray:
        """The labels of the items, in order (for samplers and class counts)."""
        return self.labels[self.indices]

    def __getitem__(self, item: int) -> tuple[torch.Tensor, int]:
        index = self.indices[item]
        # A copy: rows of a read-only memmap must not become tensors that share its memory.
        image = torch.from_numpy(np.array(self.images[index])).permute(2, 0, 1)
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])


class InDataRoot:
    """Mixin of a data set kept in its own folder under the data root (``root``)."""

    root: Path
    folder_name: str = ""  # the folder under the data root

    @property
    def data_dir(self) -> Path:
        """``<root>/<folder_name>``: the data set's files (and any decoded caches)."""
        return self.root / self.folder_name

    def unpack_hint(self, what: str, archive: str) -> str:
        """How to get a data set that torchvision downloads as ``archive``."""
        return (
            f"expected {what} in {self.data_dir}: add --data.init_args.download=true, "
            f"or unpack {archive} into {self.root}"
        )


def required_image_size(image_size: int | None, why: str) -> int:
    """``image_size``, which must be set for images of varied sizes (``why``)."""
    if image_size is None:
        raise LabError(f"data.image_size must be set: {why}")
    return image_size


class ImageDataModule(LabDataModule):
    """Base of the image data modules (Tiny ImageNet, CIFAR-10, STL-10, Dogs vs Cats).

    Args:
        root: folder that holds the data set's folder (default ``$LAB_DATA`` or ``data/``).
        image_size: square side the images are resized to (None: keep the stored size).
        channels: 3 (RGB) or 1 (greyscale).
        val_fraction: share of the training images held out for validation (seeded,
            stratified).
        normalization: ``dataset`` (the data set's own mean/std), ``imagenet`` (for
            ImageNet-pretrained backbones), ``none``, or ``auto``: ``imagenet`` when the
            model's backbone has torchvision weights (resolved by the ``lab`` CLI), else
            ``dataset``.
        crop_padding, hflip, rotation: train-time augmentation (see ``image_transform``).
        pk_classes, pk_samples: if both set, training batches hold ``pk_classes`` classes
            with ``pk_samples`` images each (for batch-hard triplet mining); the batch
            size is then their product.
        device_data: keep the splits on the training device as uint8 tensors (channels
            and size converted once) and crop, flip and normalise whole batches there
            (``lab.data.device_loader``), P x K batches included; not with ``rotation``.
        labelled_per_class: keep the labels of only this many training images per class
            (seeded, drawn after the val hold-out, so disjoint from val and test): the
            training split is that labelled subset, and every training image (the
            labelled ones included, their labels unused) forms the unlabelled split of
            ``unlabeled_dataloader`` (what layer-wise pretraining reads). None: every
            training image is labelled, and the unlabelled split is the training split.
        batch_size, eval_batch_size, num_workers, seed, pin_memory, shuffle: see
            ``LabDataModule`` (passed on to it).
    """

    dataset_name: str = ""  # key of DATASET_STATS

    def __init__(
        self,
        root: str | None = None,
        image_size: int | None = None,
        channels: int = 3,
        val_fraction: float = 0.1,
        normalization: Normalization = "auto",
        crop_padding: int = 0,
        hflip: float = 0.0,
        rotation: float = 0.0,
        device_data: bool = False,
        labelled_per_class: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(device_data=device_data, **kwargs)
        if labelled_per_class is not None and labelled_per_class < 1:
            raise LabError(
                f"data.labelled_per_class must be at least 1 (or null: all), got "
                f"{labelled_per_class}"
            )
        self.labelled_per_class = labelled_per_class
        self.unlabeled_set: ArrayDataset | None = None
        if image_size is not None and image_size < 8:
            raise LabError(f"data.image_size must be at least 8, got {image_size}")
        if device_data and rotation:
            raise LabError(
                "data.device_data does not do random rotation: set data.rotation=0 or "
                "data.device_data=false"
            )
        self.root = data_root(root)
        self.image_size = image_size
        self.channels = channels
        self.val_fraction = val_fraction
        stats = pick_stats(normalization, self.dataset_name, channels)
        self.crop_padding, self.hflip, self.stats = crop_padding, hflip, stats
        common = {"channels": channels, "image_size": image_size, "stats": stats}
        self.train_transform = image_transform(
            train=True, crop_padding=crop_padding, hflip=hflip, rotation=rotation, **common
        )
        self.eval_transform = image_transform(train=False, **common)

    # -- what a subclass provides --------------------------------------------------------

    def load_split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """uint8 ``(N, H, W, C)`` images and int labels of ``train`` or ``test``."""
        raise NotImplementedError(f"{type(self).__name__} must implement load_split")

    def set_training_splits(
        self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray
    ) -> None:
        """Fill ``train_set``, ``reference_set`` and ``unlabeled_set`` from the training
        images at ``indices`` (what is left after the val hold-out), applying
        ``labelled_per_class``."""
        labelled = indices
        if self.labelled_per_class is not None:
            labelled = indices[self._labelled_subset(labels[indices])]
        unknown = np.full(len(labels), -1, dtype=np.int64)
        self.unlabeled_set = ArrayDataset(images, unknown, indices, self.train_transform)
        self.train_set = ArrayDataset(images, labels, labelled, self.train_transform)
        self.reference_set = ArrayDataset(images, labels, labelled, self.eval_transform)

    def _labelled_subset(self, labels: np.ndarray) -> np.ndarray:
        """Positions of ``labelled_per_class`` seeded picks of every class in ``labels``."""
        wanted = self.labelled_per_class
        counts = np.bincount(labels, minlength=self.num_classes)
        if (counts < wanted).any():
            raise LabError(
                f"data.labelled_per_class={wanted}: after the val hold-out the training "
                f"split has only {counts.min()} images of some class (per-class counts "
                f"{counts.tolist()}); lower it"
            )
        rng = np.random.default_rng(self.seed)
        picks = [
            rng.choice(np.flatnonzero(labels == c), wanted, replace=False)
            for c in range(self.num_classes)
        ]
        return np.sort(np.concatenate(picks))

    def unlabeled_dataloader(self) -> Any:
        """The unlabelled split (see ``labelled_per_class``), shuffled, items ``(image,
        -1)``, augmented as training images; on the device with ``device_data``."""
        if self.unlabeled_set is None:
            raise LabError(f"{type(self).__name__} has no unlabelled split; was setup() called?")
        if self.device_data:
            return self._device_loader(self.unlabeled_set, "unlabeled", True, (TrainerFn.FITTING,))
        return self._loader(self.unlabeled_set, "unlabeled", train=True)

    def train_indices(self, labels: np.ndarray) -> np.ndarray:
        """Which training images to use (all; subclasses may take a subset)."""
        return np.arange(len(labels))

    # -- shared --------------------------------------------------------------------------

    def device_key(self, dataset: Dataset) -> tuple:
        # Train and reference sets hold the same images: one device copy serves both.
        indices = np.ascontiguousarray(dataset.indices, dtype=np.int64)
        return (id(dataset.images), hashlib.sha1(indices.tobytes()).hexdigest())

    def device_tensors(
        self, dataset: Dataset, device: torch.device | str = "cpu"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The split's uint8 images as ``(N, C, H, W)`` on ``device``, through the
        deterministic head of the eval transform (channels, resize); and its labels.

        The images go through in chunks of 4096 into one tensor allocated on ``device``
        up front, so the host holds the stored array plus one chunk, never a second
        full-size copy of the split.
        """
        head = []
        for op in self.eval_transform.transforms:
            if isinstance(op, v2.ToDtype):
                break
            head.append(op)
        prepare = v2.Compose(head)
        out = None
        for start in range(0, len(dataset), 4096):
            rows = dataset.indices[start : start + 4096]
            images = torch.from_numpy(np.ascontiguousarray(dataset.images[rows]))
            chunk = prepare(images.permute(0, 3, 1, 2))
            if out is None:  # the shape after the transform's head, known from chunk one
                out = torch.empty(len(dataset), *chunk.shape[1:], dtype=torch.uint8, device=device)
            out[start : start + len(rows)] = chunk
        if out is None:
            size = self.image_size or dataset.images.shape[1]
            out = torch.zeros(0, self.channels, size, size, dtype=torch.uint8, device=device)
        labels = torch.from_numpy(np.ascontiguousarray(dataset.targets)).to(device)
        return out, labels

    def device_batch_options(self, train: bool) -> dict:
        if not train:
            return {"stats": self.stats}
        return {"crop_padding": self.crop_padding, "hflip": self.hflip, "stats": self.stats}

    def require(self, path: Path, how_to_get: str) -> Path:
        """``path`` if it exists, else a LabError naming it and how to get the data."""
        if not path.exists():
            raise LabError(f"{path} not found: {how_to_get}")
        return path

    def check_files(
        self, folder: Path, files: list[tuple[str, str]], verify: bool, how_to_get: str
    ) -> None:
        """Each ``(name, md5)`` file must exist in ``folder``; with ``verify``, match its md5."""
        from torchvision.datasets.utils import check_md5

        self.require(folder, how_to_get)
        for name, md5 in files:
            path = self.require(folder / name, how_to_get)
            if verify and not check_md5(str(path), md5):
                raise LabError(
                    f"{path} does not match the md5 of the published file (corrupt or partial "
                    f"download?): delete it and download again; only for a copy you made "
                    f"yourself in the same format, set data.verify=false"
                )

    def setup(self, stage: str | None = None) -> None:
        # The training split is needed for testing too: it is the reference set of the
        # embedding metrics (kNN, class centres, retrieval).
        if self.train_set is None and stage in (None, "fit", "validate", "test"):
            images, labels = self.load_split("train")
            pool = self.train_indices(labels)
            keep, held_out = stratified_split(labels[pool], self.val_fraction, self.seed)
            self.set_training_splits(images, labels, pool[keep])
            self.val_set = ArrayDataset(images, labels, pool[held_out], self.eval_transform)
        if self.test_set is None and stage in (None, "test", "predict"):
            images, labels = self.load_split("test")
            self.test_set = ArrayDataset(images, labels, None, self.eval_transform)
