"""The contract every data module passes, each on its fixture in the real format
(``lab.data.fakes``): classes known before setup, the fit and test stages, batch shapes,
dtypes and labels, seeded disjoint splits, P x K batches, the unaugmented reference
split, and a short fit through the CLI. Each format's own checks sit beside this file.

A new data module adds its line to ``CASES``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import Dataset, TensorDataset

from lab.data import (
    CIFAR10DataModule,
    DigitsDataModule,
    DogsCatsDataModule,
    FashionMNISTDataModule,
    ImageFolderDataModule,
    LabDataModule,
    MNISTDataModule,
    STL10DataModule,
    TinyImageNetDataModule,
)
from lab.data.base import dataset_targets
from lab.data.fakes.cifar10 import write_cifar10
from lab.data.fakes.dogs_cats import write_dogs_cats
from lab.data.fakes.idx import write_idx
from lab.data.fakes.image_folder import write_image_folder
from lab.data.fakes.stl10 import write_stl10
from lab.data.fakes.tiny_imagenet import write_tiny_imagenet
from lab.data.images import ArrayDataset
from tests.conftest import REPO
from tests.data import SHORT_FIT, last_checkpoint

SIDE = 16  # every module is asked for 16 x 16 images


@dataclass(frozen=True)
class Case:
    """A data module and how to write its fixture under a root (returns its arguments)."""

    module: type[LabDataModule]
    write: Callable[[Path], dict]
    augments: bool = True  # takes ``hflip`` (the digits have no augmentation)


def _root(write: Callable[[Path], object], **options: object) -> Callable[[Path], dict]:
    def written(root: Path) -> dict:
        write(root)
        return {"root": str(root), **options}

    return written


def _image_folder(root: Path) -> dict:
    return {"folder": str(write_image_folder(root / "photos", per_class=10))}


CASES = {
    "digits": Case(DigitsDataModule, lambda root: {}, augments=False),
    "cifar10": Case(CIFAR10DataModule, _root(write_cifar10, verify=False)),
    "stl10": Case(
        STL10DataModule, _root(lambda r: write_stl10(r, per_class_train=10), verify=False)
    ),
    "dogs_cats": Case(DogsCatsDataModule, _root(lambda r: write_dogs_cats(r, per_class=10))),
    # Textured (noise) rather than flat: a flat image looks the same mirrored.
    "tiny_imagenet": Case(
        TinyImageNetDataModule,
        _root(lambda r: write_tiny_imagenet(r, train_per_class=10, noise=True)),
    ),
    "fashion_mnist": Case(FashionMNISTDataModule, _root(write_idx, verify=False)),
    "mnist": Case(MNISTDataModule, _root(lambda r: write_idx(r, name="MNIST"), verify=False)),
    "image_folder": Case(ImageFolderDataModule, _image_folder),
}


@pytest.fixture(params=sorted(CASES))
def case(request, tmp_path) -> tuple[Case, dict]:
    """A module and the arguments that read its fixture (written once per test)."""
    case = CASES[request.param]
    return case, case.write(tmp_path)


def make(case: tuple[Case, dict], stage: str | None = None, **kwargs) -> LabDataModule:
    module, options = case
    dm = module.module(**{**options, "image_size": SIDE, **kwargs})
    dm.prepare_data()
    dm.setup(stage)
    return dm


def items(dm: LabDataModule, split: str) -> set[tuple[int, int]]:
    """The items of a split as (source array, row): equal across modules with one seed."""
    dataset: Dataset = getattr(dm, f"{split}_set")
    if isinstance(dataset, ArrayDataset):
        source = {id(dm.train_set.images): 0}.get(id(dataset.images), 1)
        return {(source, int(i)) for i in dataset.indices}
    assert isinstance(dataset, TensorDataset)  # the digits: rows of one array
    return {(0, int(i)) for i in dm.split_indices[split]}


def check_batches(dm: LabDataModule, loader, channels: int) -> int:
    """Every batch: float images (B, channels, SIDE, SIDE), int64 labels in range."""
    seen = 0
    for x, y in loader:
        assert x.dtype == torch.float32 and x.shape[1:] == (channels, SIDE, SIDE)
        assert y.dtype == torch.int64 and len(y) == len(x)
        assert 0 <= int(y.min()) and int(y.max()) < dm.num_classes
        seen += len(x)
    return seen


def test_classes_are_known_before_setup(case):
    module, options = case
    dm = module.module(**options)  # the CLI links num_classes to the model before setup
    assert dm.num_classes >= 2 and len(dm.class_names) == dm.num_classes
    assert len(set(dm.class_names)) == dm.num_classes


def test_fit_stage_gives_train_and_val_batches_of_every_class(case):
    dm = make(case, "fit", batch_size=8)
    assert check_batches(dm, dm.train_dataloader(), dm.channels) == len(dm.train_set)
    assert check_batches(dm, dm.val_dataloader(), dm.channels) == len(dm.val_set)
    assert set(dataset_targets(dm.train_set).tolist()) == set(range(dm.num_classes))


def test_test_stage_gives_test_and_reference_batches(case):
    dm = make(case, "test", eval_batch_size=8)
    assert check_batches(dm, dm.test_dataloader(), dm.channels) == len(dm.test_set) > 0
    reference = dm.reference_dataloader()  # what the embedding metrics classify against
    assert check_batches(dm, reference, dm.channels) == len(dm.reference_set) > 0


def test_greyscale_when_asked(case):
    dm = make(case, "fit", channels=1, batch_size=8)
    assert check_batches(dm, dm.train_dataloader(), 1) == len(dm.train_set)


def test_splits_are_seeded_and_disjoint(case):
    first, again, other = make(case), make(case), make(case, seed=1)
    splits = ("train", "val", "test")
    for a, b in [("train", "val"), ("train", "test"), ("val", "test")]:
        assert items(first, a).isdisjoint(items(first, b)), (a, b)
    assert all(items(first, s) == items(again, s) for s in splits)
    assert items(first, "val") != items(other, "val")


def test_pk_batches_hold_p_classes_of_k_images(case):
    dm = make(case, "fit", pk_classes=2, pk_samples=3)
    batches = list(dm.train_dataloader())
    assert len(batches) >= 2
    for x, y in batches:
        assert len(x) == 6 and sorted(np.bincount(y.numpy()).tolist())[-2:] == [3, 3]
        assert (np.bincount(y.numpy()) > 0).sum() == 2


def test_reference_split_is_the_train_split_unaugmented(case):
    module, _ = case
    augment = {"hflip": 1.0} if module.augments else {}
    dm = make(case, "fit", **augment)
    assert np.array_equal(dataset_targets(dm.reference_set), dataset_targets(dm.train_set))
    for i in range(0, len(dm.train_set), max(1, len(dm.train_set) // 5)):
        reference, label = dm.reference_set[i]
        train, train_label = dm.train_set[i]
        assert label == train_label and torch.equal(reference, dm.reference_set[i][0])
        # Flipped every time in training only (the fixtures are not mirror-symmetric).
        unflipped = train.flip(-1) if module.augments else train
        assert torch.equal(reference, unflipped) and not torch.equal(reference, reference.flip(-1))


def test_a_short_fit_through_the_cli(case, lab, workdir):
    module, options = case
    arguments = [f"--data.init_args.{key}={value}" for key, value in options.items()]
    lab(
        "fit",
        "--config",
        REPO / "experiments" / "demo.yaml",
        f"--data={module.module.__module__}.{module.module.__name__}",
        *arguments,
        "--data.init_args.channels=3",  # demo.yaml's digits settings carry over otherwise
        f"--data.init_args.image_size={SIDE}",
        "--data.init_args.batch_size=8",
        "--model.init_args.backbone.init_args.in_channels=3",
        *SHORT_FIT,
    )
    assert last_checkpoint(workdir, "demo")["global_step"] == 2
    config = yaml.safe_load(
        next((workdir / "lightning_logs").glob("demo/*/config.yaml")).read_text()
    )
    assert config["data"]["class_path"].endswith(module.module.__name__)
