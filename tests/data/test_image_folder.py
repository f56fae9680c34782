"""Your own image folder's own checks (the shared ones are in test_contract.py): both
layouts, mixed sizes, modes and formats, splits, the cache (outside the folder), erasing,
errors."""

import os

import numpy as np
import pytest
from PIL import Image

from lab.data import ImageFolderDataModule
from lab.data.cache import source_cache_dir
from lab.data.erasing import ErasingBatchLoader
from lab.data.fakes import colour_label
from lab.data.fakes.image_folder import write_image_folder
from lab.errors import LabError
from tests.conftest import REPO
from tests.data import SHORT_FIT, last_checkpoint


def listing(folder) -> list[tuple[str, int, int, int]]:
    """Every entry below ``folder`` (itself included): path, mode, size, mtime."""
    paths = [folder, *sorted(folder.rglob("*"))]
    return [(str(p), *((s := p.stat()).st_mode, s.st_size, s.st_mtime_ns)) for p in paths]


def make(folder, **kwargs) -> ImageFolderDataModule:
    options = {"folder": str(folder), "image_size": 24, "normalization": "none"}
    dm = ImageFolderDataModule(**{**options, **kwargs})
    dm.prepare_data()
    dm.setup()
    return dm


def test_one_root_of_mixed_images_splits_test_then_val(tmp_path):
    write_image_folder(tmp_path / "photos", per_class=10)
    dm = make(tmp_path / "photos", test_fraction=0.2, val_fraction=0.25)
    assert dm.class_names == ["ant", "bee", "cat"] and dm.num_classes == 3
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (18, 6, 6)
    assert np.bincount(dm.test_set.targets).tolist() == [2, 2, 2]
    every = np.concatenate([dm.train_set.indices, dm.val_set.indices, dm.test_set.indices])
    assert sorted(every.tolist()) == list(range(30))  # disjoint, nothing lost
    images, labels = dm.images("train")
    assert images.shape == (30, 24, 24, 3) and images.dtype == np.uint8
    modes = {Image.open(f).mode for f in dm.files["train"]}
    assert modes == {"RGB", "L", "RGBA", "CMYK", "P"}
    for image, label, file in zip(images, labels, dm.files["train"], strict=True):
        assert file.parent.name == dm.class_names[label]
        assert (image[:3, :3] > 240).all()  # the white mark stays top-left (upright)
        if Image.open(file).mode == "L":
            assert (image[..., 0] == image[..., 2]).all()  # grey in three channels
        else:
            assert colour_label(image) == label


def test_split_folders_are_used_and_a_missing_val_is_held_out(tmp_path):
    write_image_folder(tmp_path, per_class=10, splits=("train", "test"))
    dm = make(tmp_path, val_fraction=0.2)
    assert dm.split_indices["test"][0] == "test" and len(dm.test_set) == 30
    assert (len(dm.train_set), len(dm.val_set)) == (24, 6)
    assert sorted(p.name for p in source_cache_dir(tmp_path).glob("*.npy")) == [
        "test_24x24_3ch.npy",
        "train_24x24_3ch.npy",
    ]
    write_image_folder(tmp_path, per_class=4, splits=("val",))
    again = make(tmp_path)
    assert len(again.val_set) == 12 and len(again.train_set) == 30


def test_greyscale_is_decoded_and_cached_with_one_channel(tmp_path):
    write_image_folder(tmp_path, per_class=10)
    grey = make(tmp_path, channels=1)
    assert grey.images("train")[0].shape == (30, 24, 24, 1)
    assert grey.train_set[0][0].shape == (1, 24, 24)


def test_erasing_on_both_data_paths(tmp_path):
    write_image_folder(tmp_path, per_class=10)
    erased = make(tmp_path, erasing=1.0, normalization="dataset")
    assert all((erased.train_set[i][0] == 0).any() for i in range(5))
    device = make(tmp_path, erasing=0.5, device_data=True, crop_padding=2, hflip=0.5)
    loader = device.train_dataloader()
    assert isinstance(loader, ErasingBatchLoader)
    x, y = next(iter(loader))
    assert x.shape == (len(device.train_set), 3, 24, 24) and x.dtype.is_floating_point


def test_an_unreadable_image_is_named(tmp_path):
    write_image_folder(tmp_path, per_class=10)
    (tmp_path / "bee" / "3.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(LabError, match=r"cannot decode image .*bee[/\\]3.jpg") as error:
        make(tmp_path)
    assert "\n" not in str(error.value)
    assert not list(source_cache_dir(tmp_path).glob("*.npy"))  # nothing half-written kept


def test_non_images_are_skipped_with_one_warning_naming_them_and_dotfiles_quietly(tmp_path):
    write_image_folder(tmp_path, per_class=10)
    for name in ("notes.txt", "labels.csv", "README", "x.json"):
        (tmp_path / "ant" / name).write_text("not an image")
    (tmp_path / "ant" / "._0.jpg").write_bytes(b"AppleDouble")
    (tmp_path / "bee" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "bee" / ".ipynb_checkpoints" / "9.jpg").write_bytes(b"a notebook's copy")
    with pytest.warns(UserWarning) as warned:
        dm = make(tmp_path)
    skipped = [str(w.message) for w in warned if "not images" in str(w.message)]
    assert len(skipped) == 1 and "skipped 4 files that are not images" in skipped[0]
    assert "ant/README, ant/labels.csv, ant/notes.txt, ..." in skipped[0]
    assert len(dm.images("train")[1]) == 30


def test_every_format_pil_decodes_is_read_as_rgb(tmp_path):
    write_image_folder(tmp_path, per_class=10)
    frames = [Image.new("RGB", (30, 20), colour) for colour in ("red", "blue")]
    frames[0].save(tmp_path / "ant" / "moving.gif", save_all=True, append_images=frames[1:])
    Image.new("RGB", (30, 20), "red").save(tmp_path / "ant" / "scan.TIFF")
    Image.new("RGB", (30, 20), "red").save(tmp_path / "ant" / "web.webp")
    Image.new("L", (30, 20), 128).save(tmp_path / "bee" / "grey.bmp")
    dm = make(tmp_path)
    images, _ = dm.images("train")
    assert images.shape == (34, 24, 24, 3)
    row = {f.name: i for i, f in enumerate(dm.files["train"])}
    gif = images[row["moving.gif"]].astype(int)
    assert (gif[..., 0] > 200).all() and (gif[..., 2] < 60).all()  # the first frame: red
    assert (images[row["grey.bmp"]] == 128).all()  # grey in all three channels
    assert (images[row["scan.TIFF"]][..., 0] > 200).all()


def test_a_read_only_folder_trains_and_is_left_exactly_as_it_was(lab, workdir):
    """The folder is chmod 0o555; as root (tests may run so) that does not stop a write,
    so what is checked is that no entry below it changed: names, modes, sizes, mtimes."""
    folder = write_image_folder(workdir / "read-only" / "photos", per_class=10)
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    before = listing(folder)
    try:
        lab(
            *["fit", "--config", REPO / "experiments" / "demo.yaml"],
            *["--data=lab.data.ImageFolderDataModule", f"--data.folder={folder}"],
            *["--data.image_size=16", "--data.channels=3"],
            *["--model.init_args.backbone.init_args.in_channels=3", *SHORT_FIT],
        )
        assert listing(folder) == before
        assert last_checkpoint(workdir, "demo")["global_step"] > 0
        caches = list(source_cache_dir(folder).glob("*.npy"))
        assert [p.name for p in caches] == ["train_16x16_3ch.npy"]
        assert str(caches[0]).startswith(os.environ["XDG_CACHE_HOME"])
    finally:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(0o755)


def test_a_cache_that_no_longer_matches_its_folder_is_rebuilt(tmp_path):
    write_image_folder(tmp_path / "photos", per_class=10)
    assert len(make(tmp_path / "photos").images("train")[1]) == 30
    (tmp_path / "photos" / "ant" / "0.jpg").unlink()  # removed
    Image.new("RGB", (30, 20), "red").save(tmp_path / "photos" / "bee" / "new.png")  # added
    again = make(tmp_path / "photos")
    assert len(again.images("train")[1]) == 30
    assert "new.png" in {f.name for f in again.files["train"]}
    changed = tmp_path / "photos" / "cat" / "1.png"
    Image.new("RGB", (30, 20), "white").save(changed)
    os.utime(changed, ns=(1, 1))  # a different mtime even on a coarse clock
    third = make(tmp_path / "photos")
    images, _ = third.images("train")
    assert (images[third.files["train"].index(changed)] == 255).all()


@pytest.mark.parametrize(
    ("setup", "pattern"),
    [
        (lambda p: None, r"image folder .*nowhere not found"),
        (lambda p: (p / "nowhere" / "only").mkdir(parents=True), r"1 class folders.*at least 2"),
        (lambda p: write_image_folder(p / "nowhere", splits=("test",)), r"no .*train: add train/"),
    ],
)
def test_bad_folders_are_one_line_errors(tmp_path, setup, pattern):
    setup(tmp_path)
    with pytest.raises(LabError, match=pattern):
        make(tmp_path / "nowhere")


def test_an_empty_class_and_a_stray_test_class_are_errors(tmp_path):
    write_image_folder(tmp_path, per_class=10, splits=("train", "test"))
    (tmp_path / "train" / "dog").mkdir()
    with pytest.raises(LabError, match=r"train[/\\]dog holds no images"):
        make(tmp_path)
    (tmp_path / "train" / "dog").rmdir()
    (tmp_path / "test" / "eel").mkdir()
    with pytest.raises(LabError, match=r"test[/\\]eel is not a class of the training images"):
        make(tmp_path)


def test_the_three_objectives_run_on_a_folder(lab, workdir):
    """The lines of docs/data.md: cross-entropy, triplet and center loss on your folder."""
    folder = write_image_folder(workdir / "photos", per_class=10)
    for experiment, extra in (
        ("demo", []),
        ("demo-triplet", ["--data.init_args.pk_classes=3", "--data.init_args.pk_samples=4"]),
        ("demo-center", []),
    ):
        lab(
            *[
                "fit",
                "--config",
                str(REPO / "experiments" / f"{experiment}.yaml"),
                "--data=lab.data.ImageFolderDataModule",
                f"--data.folder={folder}",
                "--data.image_size=16",
                "--data.channels=3",
                "--model.init_args.backbone.init_args.in_channels=3",
                *SHORT_FIT,
                *extra,
            ]
        )
        assert last_checkpoint(workdir, experiment)["global_step"] > 0  # P x K: 1 batch
