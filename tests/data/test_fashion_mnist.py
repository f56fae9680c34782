"""Fashion-MNIST / MNIST from IDX files: the fixture against torchvision's reader, both
compressions, splits, options, random erasing on both data paths, and damaged files."""

import gzip
import hashlib
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from jsonargparse import ArgumentParser
from torchvision.datasets import FashionMNIST

from lab.cli import main
from lab.data import FashionMNISTDataModule, MNISTDataModule
from lab.data.device_loader import DeviceBatchLoader
from lab.data.erasing import ErasingBatchLoader, erase, erase_boxes
from lab.data.fakes.idx import grey_level, write_idx
from lab.data.fashion_mnist import FASHION_CLASSES, FASHION_MD5
from lab.errors import LabError
from tests.conftest import REPO
from tests.data import SHORT_FIT, last_checkpoint, set_up

DEBIAN = Path("/usr/share/datasets/fashion-mnist")


def make(root, cls=FashionMNISTDataModule, **kwargs):
    return set_up(cls, root, **kwargs)


def labels_from_pixels(images: np.ndarray) -> list[int]:
    """The class of each fixture image from its bottom-right grey level."""
    return [(int(image[-1, -1, 0]) - 20) // 20 for image in images]


@pytest.mark.parametrize("gzipped", [True, False])
def test_fixture_reads_as_torchvision_reads_it(tmp_path, gzipped):
    write_idx(tmp_path, per_class_train=10, per_class_test=2, gzipped=gzipped)
    dm = make(tmp_path)
    images, labels = dm.load_split("train")
    if not gzipped:  # torchvision reads the extracted files of its own layout
        reference = FashionMNIST(str(tmp_path), train=True, download=False)
        assert np.array_equal(images[..., 0], reference.data.numpy())
        assert labels.tolist() == reference.targets.tolist()
        assert reference.classes == list(FASHION_CLASSES)
    assert images.shape == (100, 28, 28, 1) and images.dtype == np.uint8
    assert labels_from_pixels(images) == labels.tolist()
    assert (images[:, :7, :7] == 255).all() and (images[:, 7:, 7:] != 255).all()  # upright


def test_official_test_split_and_stratified_validation(tmp_path):
    write_idx(tmp_path, per_class_train=10, per_class_test=3)
    dm = make(tmp_path)
    assert dm.class_names == list(FASHION_CLASSES) and dm.num_classes == 10
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (90, 10, 30)
    assert np.bincount(dm.val_set.targets, minlength=10).tolist() == [1] * 10
    image, label = dm.test_set[0]
    assert image.shape == (1, 28, 28) and image[0, -1, -1] * 255 == pytest.approx(
        grey_level(label), abs=0.5
    )


def test_mnist_from_a_named_folder_and_its_normalisation(tmp_path):
    folder = write_idx(tmp_path, name="MNIST", folder=tmp_path / "elsewhere", gzipped=False)
    dm = make(tmp_path, MNISTDataModule, folder=str(folder), normalization="dataset")
    assert dm.class_names == [str(d) for d in range(10)]
    image, label = dm.train_set[0]
    expected = (grey_level(label) / 255 - 0.1307) / 0.3081
    assert image[0, -1, -1].item() == pytest.approx(expected, abs=1e-4)


def test_options_shared_with_the_image_modules(tmp_path):
    write_idx(tmp_path)
    dm = make(tmp_path, channels=3, image_size=32, crop_padding=2, hflip=1.0)
    image, label = dm.train_set[0]
    assert image.shape == (3, 32, 32)
    # Flipped every time: the white mark is top-right now (the crop moves it by <= 2 px).
    assert image[:, 4, -5].min() == 1.0 and image[:, 4, 4].max() < 1.0


def test_verify_accepts_the_real_checksums_and_names_a_mismatch(tmp_path):
    folder = write_idx(tmp_path)
    with pytest.raises(LabError) as error:
        make(tmp_path, verify=True)
    message = str(error.value)
    assert re.search(r"raw[/\\]train-images-idx3-ubyte.gz does not match the md5", message)
    assert "\n" not in message and "data.verify=false" in message
    # A plain copy of the same bytes passes as its gzipped original would: the md5 is of
    # the decompressed IDX bytes (here the fixture's own, patched in as the known value).
    content = gzip.decompress((folder / "train-images-idx3-ubyte.gz").read_bytes())
    dm = FashionMNISTDataModule(root=str(tmp_path))
    dm.md5 = {**FASHION_MD5, "train-images-idx3-ubyte": hashlib.md5(content).hexdigest()}
    assert dm.read_file("train", "images").shape == (100, 28, 28)


@pytest.mark.skipif(not DEBIAN.is_dir(), reason="the Debian package dataset-fashion-mnist")
def test_the_debian_package_passes_verify():
    dm = FashionMNISTDataModule(folder=str(DEBIAN))
    assert dm.read_file("test", "labels").shape == (10000,)  # the small files: fast


def test_missing_folder_says_how_to_get_the_data(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--data=lab.data.FashionMNISTDataModule", f"--data.root={tmp_path}",
              "--model=lab.tasks.Classifier", "--model.backbone=lab.models.ResNet",
              "--trainer.fast_dev_run=true"])  # fmt: skip
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "FashionMNIST/raw not found" in err
    assert "download=true" in err and "apt-get install dataset-fashion-mnist" in err


@pytest.mark.parametrize(
    ("damage", "pattern"),
    [
        (lambda b: b[: len(b) - 100], r"train-images-idx3-ubyte is truncated: 78316 bytes"),
        (lambda b: b + b"\0" * 28, r"train-images-idx3-ubyte is longer than its header says"),
        (lambda b: b"\0\0\x0d" + b[3:], r"not an IDX file of unsigned bytes"),
        (lambda b: b[:3] + b"\x02" + b[4:], r"has 2 dimensions, expected 3"),
    ],
)
def test_damaged_files_are_one_line_errors_naming_them(tmp_path, damage, pattern):
    folder = write_idx(tmp_path, gzipped=False)
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(LabError, match=pattern) as error:
        make(tmp_path)
    assert "\n" not in str(error.value) and "get it again" in str(error.value)


def test_a_cut_gzip_and_mismatched_counts_are_errors(tmp_path):
    folder = write_idx(tmp_path)
    gz = folder / "t10k-labels-idx1-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:20])
    with pytest.raises(LabError, match=r"t10k-labels-idx1-ubyte.gz cannot be read .*truncated"):
        make(tmp_path)
    write_idx(tmp_path, per_class_test=3)  # images of 30 test items
    with gzip.open(gz, "wb") as handle:  # labels of 20
        handle.write(b"\0\0\x08\x01" + (20).to_bytes(4, "big") + bytes(20))
    with pytest.raises(LabError, match="hold 30 images but 20 labels"):
        make(tmp_path)


def test_download_and_folder_together_are_refused(tmp_path):
    with pytest.raises(LabError, match="unset one of the two"):
        FashionMNISTDataModule(root=str(tmp_path), folder=str(tmp_path), download=True)


def test_yaml_sets_the_options_by_name():
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(FashionMNISTDataModule, "data")
    config = parser.parse_args(["--data.erasing=0.5", "--data.folder=/x", "--data.hflip=0.5"])
    assert config.data.erasing == 0.5 and config.data.folder == "/x"
    assert config.data.channels == 1 and config.data.verify is True
    assert config.data.val_fraction == 0.1 and config.data.device_data is False


def test_erasing_on_the_dataloader_path_blanks_a_box(tmp_path):
    write_idx(tmp_path)
    dm = make(tmp_path, erasing=1.0, normalization="dataset")
    zeros = [int((dm.train_set[i][0] == 0).sum()) for i in range(20)]
    # Every image loses a box of 2% to 33% of its 784 pixels (set to the mean: 0).
    assert all(0.02 * 784 - 28 <= z <= 0.33 * 784 + 28 for z in zeros), zeros
    assert (dm.val_set[0][0] != 0).all()  # never at evaluation


def reference_erase(images, top, left, box_h, box_w):
    out = images.clone()
    for i in range(len(images)):
        out[i, :, top[i] : top[i] + box_h[i], left[i] : left[i] + box_w[i]] = 0
    return out


def test_batched_erasing_matches_a_per_image_loop_and_its_distribution():
    generator = torch.Generator().manual_seed(0)
    n, h, w = 4000, 28, 20
    top, left, box_h, box_w = erase_boxes(n, h, w, 0.5, generator, torch.device("cpu"))
    images = torch.rand(n, 2, h, w) + 1
    assert torch.equal(erase(images, top, left, box_h, box_w), reference_erase(
        images, top.tolist(), left.tolist(), box_h.tolist(), box_w.tolist()))  # fmt: skip
    erased = box_h > 0
    assert abs(erased.float().mean().item() - 0.5) < 0.03
    area = (box_h * box_w)[erased].float() / (h * w)
    assert area.min() >= 0.01 and area.max() <= 0.36  # scale (0.02, 0.33), rounded sides
    assert (top + box_h <= h).all() and (left + box_w <= w).all() and (top >= 0).all()
    ratio = (box_h[erased] / box_w[erased]).log()
    assert ratio.min() > math.log(0.3) - 0.5 and ratio.max() < math.log(3.3) + 0.5
    assert top[erased].float().std() > 2  # places vary


def test_device_path_erases_seeded_per_epoch(tmp_path):
    write_idx(tmp_path)
    dm = make(tmp_path, erasing=1.0, device_data=True)
    loader = dm.train_dataloader()
    assert isinstance(loader, ErasingBatchLoader) and isinstance(loader.loader, DeviceBatchLoader)
    assert len(loader) == 1 and loader.batch_sampler is None
    first = [x.clone() for x, _ in loader]
    again = [x.clone() for x, _ in loader]
    assert torch.equal(first[0], again[0])
    x = first[0]
    assert ((x == 0).flatten(1).sum(1) > 0).all()  # every image has its box
    loader.sampler.set_epoch(1)
    assert not torch.equal(next(iter(loader))[0], x)
    plain = make(tmp_path, device_data=True).train_dataloader()
    assert isinstance(plain, DeviceBatchLoader)


def test_the_docs_command_runs_on_a_fixture_folder(lab, workdir):
    """docs/data.md's line: the demo recipe on Fashion-MNIST from a named folder."""
    folder = write_idx(workdir, folder=workdir / "fashion-mnist")
    demo = REPO / "experiments" / "demo.yaml"
    lab("fit", "--config", demo, "--data=lab.data.FashionMNISTDataModule",
        f"--data.folder={folder}", "--data.image_size=28", "--data.verify=false",
        *SHORT_FIT)  # fmt: skip
    assert last_checkpoint(workdir, "demo")["global_step"] == 2
