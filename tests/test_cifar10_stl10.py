"""CIFAR-10 and STL-10 on fixtures written in their real formats."""

import numpy as np
import pytest
import torch

from lab.data.cifar10 import CLASSES as CIFAR_CLASSES
from lab.data.cifar10 import CIFAR10DataModule
from lab.data.fakes import colour_label
from lab.data.fakes.cifar10 import write_cifar10
from lab.data.fakes.stl10 import write_stl10
from lab.data.stl10 import STL10DataModule
from lab.errors import LabError
from tests.conftest import REPO

MODULES = {
    "cifar10": (CIFAR10DataModule, write_cifar10, 32),
    "stl10": (STL10DataModule, write_stl10, 96),
}


@pytest.fixture(params=sorted(MODULES))
def dataset(request, tmp_path):
    module, write, side = MODULES[request.param]
    write(tmp_path, per_class_train=10, per_class_test=2)
    return module, tmp_path, side


def make(module, root, **kwargs):
    options = {"root": str(root), "verify": False, "normalization": "none", "val_fraction": 0.2}
    dm = module(**{**options, **kwargs})
    dm.setup()
    return dm


def pixels(tensor: torch.Tensor) -> np.ndarray:
    return (tensor.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def test_labels_match_content_and_images_are_upright(dataset):
    module, root, side = dataset
    dm = make(module, root)
    for split in (dm.train_set, dm.val_set, dm.test_set):
        for i in range(len(split)):
            x, y = split[i]
            image = pixels(x)
            assert x.shape == (3, side, side)
            assert colour_label(image) == y
            # The white mark is top-left only: a transposed or flipped read would move it.
            assert (image[0, 0] == 255).all() and (image[-1, 0] != 255).any()
            assert (image[0, -1] != 255).any()


def test_split_sizes_seeding_and_stratification(dataset):
    module, root, _ = dataset
    a, b, c = (make(module, root, seed=s) for s in (0, 0, 1))
    assert len(a.train_set) == 80 and len(a.val_set) == 20 and len(a.test_set) == 20
    assert set(a.train_set.indices).isdisjoint(a.val_set.indices)
    assert np.array_equal(a.val_set.indices, b.val_set.indices)
    assert not np.array_equal(a.val_set.indices, c.val_set.indices)
    assert np.bincount(a.val_set.targets, minlength=10).tolist() == [2] * 10


def test_greyscale_and_resizing(dataset):
    module, root, _ = dataset
    dm = make(module, root, channels=1, image_size=24)
    x, _ = dm.train_set[0]
    assert x.shape == (1, 24, 24)
    assert dm.num_classes == 10 and len(dm.class_names) == 10


def test_verify_rejects_a_copy_that_is_not_the_published_file(dataset):
    module, root, _ = dataset
    with pytest.raises(LabError, match="md5.*data.verify=false"):
        make(module, root, verify=True)


def test_a_missing_folder_names_the_path_and_how_to_get_it(tmp_path):
    for module in (CIFAR10DataModule, STL10DataModule):
        with pytest.raises(LabError, match=f"{module.folder}.*download=true"):
            make(module, tmp_path / "empty")


def test_cifar_train_subset_is_taken_before_the_val_split(tmp_path):
    write_cifar10(tmp_path, per_class_train=10)
    dm = make(CIFAR10DataModule, tmp_path, train_subset=50)
    assert len(dm.train_set) + len(dm.val_set) == 50
    assert np.bincount(dm.train_set.targets, minlength=10).tolist() == [4] * 10
    assert dm.class_names == CIFAR_CLASSES


def test_stl_unlabeled_loader(tmp_path):
    write_stl10(tmp_path, per_class_train=10, unlabeled=12)
    dm = make(STL10DataModule, tmp_path, batch_size=5)
    batches = list(dm.unlabeled_dataloader())
    assert sum(len(y) for _, y in batches) == 12
    assert all((y == -1).all() for _, y in batches)
    assert batches[0][0].shape == (5, 3, 96, 96)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_fast_dev_run_through_the_cli(name, lab, workdir):
    module, write, _ = MODULES[name]
    write(workdir / "data", per_class_train=10, per_class_test=2)
    lab(
        "fit",
        "--config",
        REPO / "experiments" / "demo.yaml",
        f"--data={module.__module__}.{module.__name__}",
        "--data.init_args.root",
        workdir / "data",
        "--data.init_args.verify=false",
        "--data.init_args.val_fraction=0.2",
        "--data.init_args.channels=3",  # demo.yaml's digits settings carry over otherwise
        "--data.init_args.image_size=32",
        "--model.init_args.backbone.init_args.in_channels=3",
        "--trainer.fast_dev_run=true",
    )
