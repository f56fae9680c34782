"""The device-resident data path (``data.device_data``, ``lab.data.device_loader``).

Checked on the CPU: without augmentation and shuffling it gives exactly the batches of the
ordinary DataLoader path; shuffled epochs are seeded permutations in DistributedSampler's
order and shards are disjoint; the batched crop and flip equal torchvision's per-image
ops, and an augmented batch is, image by image, one of the ordinary path's possible
outcomes; flip rate and crop offsets are as configured; ``lab fit`` runs with it; the
combinations it does not do are refused in one line.
"""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch.utils.data import DistributedSampler
from torchvision.transforms.v2 import functional as TF

from lab.data.device_loader import DeviceBatchLoader, EpochOrder, crop_flip
from lab.data.digits import DigitsDataModule
from lab.data.images import ImageDataModule
from lab.errors import LabError
from tests.conftest import REPO

DEMO = REPO / "experiments" / "demo.yaml"
LOADERS = ["train_dataloader", "val_dataloader", "test_dataloader", "reference_dataloader"]


class Random(ImageDataModule):
    """Random uint8 images (CIFAR statistics) of a given side: 60 train, 30 test."""

    dataset_name = "cifar10"

    def __init__(self, side: int = 10, **kwargs) -> None:
        super().__init__(val_fraction=0.2, **kwargs)
        self.side = side
        self.num_classes = 3
        self.class_names = ["a", "b", "c"]

    def load_split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        n = 60 if split == "train" else 30
        rng = np.random.default_rng(0 if split == "train" else 1)
        images = rng.integers(0, 256, (n, self.side, self.side, 3), dtype=np.uint8)
        return images, np.arange(n) % 3


class Numbered(Random):
    """Images whose every pixel is the image's own index, so a batch tells which it holds."""

    def load_split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        n = 50
        index = np.arange(n, dtype=np.uint8)[:, None, None, None]
        return np.ascontiguousarray(np.broadcast_to(index, (n, 4, 4, 3))), np.arange(n) % 5


def pair(cls=Random, **kwargs):
    """The same data module twice, ordinary and device-resident, both set up."""
    ordinary, device = cls(**kwargs), cls(device_data=True, **kwargs)
    ordinary.setup(None)
    device.setup(None)
    return ordinary, device


def assert_same_batches(ordinary, device) -> None:
    assert len(ordinary) == len(device)
    count = 0
    for (xa, ya), (xb, yb) in zip(ordinary, device, strict=True):
        assert xb.dtype == xa.dtype == torch.float32
        torch.testing.assert_close(xb, xa, atol=1e-6, rtol=0)
        assert torch.equal(yb, ya)
        count += 1
    assert count == len(device)


@pytest.mark.parametrize(
    "options",
    [
        {"normalization": "dataset"},
        {"normalization": "dataset", "channels": 1, "image_size": 12},
        {"normalization": "none", "image_size": 8},
    ],
    ids=["rgb", "grey-resized", "unnormalised-downsized"],
)
def test_without_augmentation_batches_equal_the_ordinary_path(options):
    ordinary, device = pair(batch_size=16, eval_batch_size=7, shuffle=False, **options)
    for name in LOADERS:
        loader = getattr(device, name)()
        assert isinstance(loader, DeviceBatchLoader)
        assert_same_batches(getattr(ordinary, name)(), loader)


def test_digits_batches_equal_the_ordinary_path():
    options = {"batch_size": 50, "shuffle": False, "channels": 3, "image_size": 12}
    ordinary, device = DigitsDataModule(**options), DigitsDataModule(device_data=True, **options)
    for dm in (ordinary, device):
        dm.setup("fit")
    for name in LOADERS:
        assert_same_batches(getattr(ordinary, name)(), getattr(device, name)())


def test_train_and_reference_share_one_copy_of_the_images():
    _, device = pair(shuffle=False)
    assert device.train_dataloader().images is device.reference_dataloader().images
    assert device.val_dataloader().images is not device.train_dataloader().images


def test_a_deterministic_flip_equals_the_ordinary_path():
    # hflip=1 flips every image on both paths: the whole train pipeline, exactly.
    ordinary, device = pair(batch_size=16, shuffle=False, hflip=1.0, normalization="dataset")
    assert_same_batches(ordinary.train_dataloader(), device.train_dataloader())


def candidates(image: torch.Tensor, padding: int) -> torch.Tensor:
    """Every outcome of the ordinary path's reflect-pad + crop (and flip) of one image."""
    padded = TF.pad(image, [padding], padding_mode="reflect")
    h, w = image.shape[-2:]
    crops = [
        padded[:, top : top + h, left : left + w]
        for top in range(2 * padding + 1)
        for left in range(2 * padding + 1)
    ]
    crops += [TF.horizontal_flip(crop) for crop in crops]
    return torch.stack(crops)


def test_each_augmented_image_is_a_possible_outcome_of_the_ordinary_path():
    options = {"batch_size": 16, "crop_padding": 2, "hflip": 0.5, "normalization": "dataset"}
    ordinary, device = pair(side=6, **options)
    to_float, normalize = ordinary.train_transform.transforms[-2:]
    train = ordinary.train_set
    outcomes, owners = [], []  # every outcome of every training image, and whose it is
    for item in range(len(train)):
        image = torch.from_numpy(np.array(train.images[train.indices[item]])).permute(2, 0, 1)
        outcomes.append(normalize(to_float(candidates(image, 2))))
        owners += [item] * len(outcomes[-1])
    outcomes, owners = torch.cat(outcomes).flatten(1), torch.tensor(owners)
    matched = []
    for x, y in device.train_dataloader():
        for augmented, label in zip(x, y, strict=True):
            distance = (outcomes - augmented.flatten()).abs().amax(1)
            assert distance.min() < 1e-6  # exactly one of the ordinary path's outcomes
            item = int(owners[distance.argmin()])
            assert label.item() == train.targets[item]
            matched.append(item)
    assert sorted(matched) == list(range(len(train)))  # every training image once


def numbered_epoch(loader) -> list[int]:
    return [int(i) for x, _ in loader for i in torch.round(x[:, 0, 0, 0] * 255)]


def test_shuffled_epochs_are_seeded_permutations_in_distributed_samplers_order():
    dm = Numbered(device_data=True, batch_size=8, normalization="none", seed=5)
    dm.setup("fit")
    loader = dm.train_dataloader()
    train = dm.train_set.indices.tolist()
    epochs = []
    for epoch in range(3):
        loader.sampler.set_epoch(epoch)
        order = numbered_epoch(loader)
        assert sorted(order) == sorted(train)
        sampler = DistributedSampler(train, num_replicas=1, rank=0, shuffle=True, seed=5)
        sampler.set_epoch(epoch)
        assert order == [train[i] for i in sampler]
        assert numbered_epoch(loader) == order  # the same epoch again: the same order
        epochs.append(order)
    assert epochs[0] != epochs[1] != epochs[2]
    again = Numbered(device_data=True, batch_size=8, normalization="none", seed=5)
    again.setup("fit")
    assert numbered_epoch(again.train_dataloader()) == epochs[0]  # a new run, the same seed
    unshuffled = Numbered(device_data=True, shuffle=False, normalization="none", seed=5)
    unshuffled.setup("fit")
    assert numbered_epoch(unshuffled.train_dataloader()) == train


@pytest.mark.parametrize("size,world_size", [(40, 4), (37, 3), (5, 8)])
def test_shards_are_distributed_samplers_disjoint_equal_shares(size, world_size):
    shards = []
    for rank in range(world_size):
        order = EpochOrder(size, shuffle=True, seed=1, rank=rank, world_size=world_size)
        order.set_epoch(2)
        reference = DistributedSampler(
            range(size), num_replicas=world_size, rank=rank, shuffle=True, seed=1
        )
        reference.set_epoch(2)
        assert order.indices().tolist() == list(reference)
        shards.append(order.indices().tolist())
    together = sum(shards, [])
    assert len({len(s) for s in shards}) == 1  # equal shares
    assert sorted(set(together)) == list(range(size))  # cover the data
    assert len(together) == -(-size // world_size) * world_size  # topped up, no more
    if size % world_size == 0:
        assert len(set(together)) == len(together)  # disjoint


def fake_trainer(fn: TrainerFn, rank: int = 1, world_size: int = 2, distributed=True):
    return SimpleNamespace(
        world_size=world_size,
        global_rank=rank,
        state=SimpleNamespace(fn=fn),
        strategy=SimpleNamespace(root_device=torch.device("cpu")),
        _accelerator_connector=SimpleNamespace(use_distributed_sampler=distributed),
    )


def test_loaders_shard_themselves_only_when_lightning_would():
    dm = Numbered(device_data=True, batch_size=4, normalization="none")
    dm.setup(None)
    n_train, n_test = len(dm.train_set), len(dm.test_set)
    dm.trainer = fake_trainer(TrainerFn.FITTING)
    assert sum(len(x) for x, _ in dm.train_dataloader()) == -(-n_train // 2)
    assert sum(len(x) for x, _ in dm.val_dataloader()) == -(-len(dm.val_set) // 2)
    # Asked for by a callback during fit (BeforeFitEvaluation): the whole test split.
    assert sum(len(x) for x, _ in dm.test_dataloader()) == n_test
    assert sum(len(x) for x, _ in dm.reference_dataloader()) == n_train
    dm.trainer = fake_trainer(TrainerFn.TESTING)
    assert sum(len(x) for x, _ in dm.test_dataloader()) == -(-n_test // 2)
    assert sum(len(x) for x, _ in dm.reference_dataloader()) == n_train  # never sharded
    dm.trainer = fake_trainer(TrainerFn.FITTING, distributed=False)
    assert sum(len(x) for x, _ in dm.train_dataloader()) == n_train


def test_batched_crop_equals_torchvision_pad_and_crop_per_image():
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12, 3, 7, 9), dtype=torch.uint8, generator=generator)
    padding = 3
    offsets = torch.randint(0, 2 * padding + 1, (12, 2), generator=generator)
    flip = torch.rand(12, generator=generator) < 0.5
    cropped = crop_flip(images, padding, offsets)
    both = crop_flip(images, padding, offsets, flip)
    for image, (top, left), mirror, out, out_flipped in zip(
        images, offsets.tolist(), flip, cropped, both, strict=True
    ):
        padded = TF.pad(image, [padding], padding_mode="reflect")
        expected = TF.crop(padded, top, left, 7, 9)
        assert torch.equal(out, expected)
        assert torch.equal(out_flipped, TF.horizontal_flip(expected) if mirror else expected)


def test_batched_flip_equals_torchvision_where_the_mask_is_set():
    images = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)
    out = crop_flip(images, 0, None, torch.tensor([True, False]))
    assert torch.equal(out[0], TF.horizontal_flip(images[0]))
    assert torch.equal(out[1], images[1])


def asymmetric(n: int, side: int = 6) -> torch.Tensor:
    """``n`` copies of an image whose pixel (r, c) holds r * side + c: every crop and flip
    of it is different."""
    image = torch.arange(side * side, dtype=torch.uint8).view(1, 1, side, side)
    return image.expand(n, 1, side, side).contiguous()


def test_the_flip_rate_is_p_and_crops_cover_every_offset():
    n, side, padding = 3000, 6, 2
    options = {"batch_size": 512, "crop_padding": padding, "hflip": 0.3, "seed": 7}
    loader = DeviceBatchLoader(asymmetric(n, side), torch.zeros(n), **options)
    x = torch.cat([x for x, _ in loader])
    value = torch.round(x[:, 0] * 255).long()  # (n, side, side) source positions
    # Row steps of +side (not flipped) or columns counting down (flipped) at the centre.
    flipped = value[:, padding, padding + 1] < value[:, padding, padding]
    assert flipped.float().mean().item() == pytest.approx(0.3, abs=0.04)
    # Output (p, p) reads the source at the offset itself (flipped: mirrored column).
    top, left = value[:, padding, padding] // side, value[:, padding, padding] % side
    left = torch.where(flipped, side - 1 - left, left)
    left = torch.where(flipped, 2 * padding - left, left)  # the flip mirrors the offset too
    offsets = set(zip(top.tolist(), left.tolist(), strict=True))
    assert offsets == {(t, c) for t in range(2 * padding + 1) for c in range(2 * padding + 1)}


def test_augmentation_is_seeded_and_new_every_epoch():
    def epoch(seed: int, number: int) -> torch.Tensor:
        loader = DeviceBatchLoader(
            asymmetric(64), torch.zeros(64), batch_size=16, crop_padding=2, hflip=0.5, seed=seed
        )
        loader.set_epoch(number)
        return torch.cat([x for x, _ in loader])

    assert torch.equal(epoch(0, 0), epoch(0, 0))
    assert not torch.equal(epoch(0, 0), epoch(0, 1))
    assert not torch.equal(epoch(0, 0), epoch(1, 0))


def test_lab_fit_runs_on_the_device_path_and_logs_val_acc(lab, workdir):
    lab(
        "fit",
        "--config",
        DEMO,
        "--data.init_args.device_data=true",
        "--data.init_args.batch_size=16",
        "--data.init_args.eval_batch_size=16",
        "--trainer.max_epochs=2",
        "--trainer.limit_train_batches=2",
        "--trainer.limit_val_batches=1",
    )
    metrics = pd.read_csv(workdir / "lightning_logs" / "demo" / "version_0" / "metrics.csv")
    assert metrics["val/acc"].notna().sum() == 2
    assert metrics["train/loss"].notna().sum() == 2


def test_what_the_device_path_does_not_do_is_refused_in_one_line():
    with pytest.raises(LabError, match="does not do random rotation") as error:
        Random(device_data=True, rotation=10.0)
    assert "\n" not in str(error.value)


def test_too_much_crop_padding_is_refused_in_one_line():
    with pytest.raises(LabError, match="crop_padding=6") as error:
        DeviceBatchLoader(asymmetric(4), torch.zeros(4), batch_size=2, crop_padding=6)
    assert "\n" not in str(error.value)


def test_lab_fit_runs_p_x_k_batches_on_the_device_path(lab, workdir):
    lab(
        "fit",
        "--config",
        DEMO,
        "--data.init_args.device_data=true",
        "--data.init_args.pk_classes=4",
        "--data.init_args.pk_samples=4",
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2",
        "--trainer.limit_val_batches=1",
    )
    metrics = pd.read_csv(workdir / "lightning_logs" / "demo" / "version_0" / "metrics.csv")
    assert metrics["train/loss"].notna().sum() >= 1 and metrics["val/acc"].notna().sum() == 1


def test_the_benchmark_prints_both_rates_and_their_ratio(capsys):
    from lab.commands.bench import dataloader

    options = "--images 200 --epochs 2 --workers 0 --batch-size 64 --device cpu"
    dataloader.main(["--device-path", *options.split()])
    out = capsys.readouterr().out
    assert "200 train images" in out and "device cpu" in out
    rows = {line[:3]: line for line in out.splitlines() if line[:3] in ("(c)", "(d)")}
    ordinary = [float(n.replace(",", "")) for n in rows["(c)"].split()[-2:]]
    setup, *device = [float(n.replace(",", "")) for n in rows["(d)"].split()[-3:]]
    assert setup >= 0 and min(ordinary) > 0 and min(device) > 0
    ratio = float(out.split("epochs 2+: ")[1].split("x")[0])
    assert ratio == pytest.approx(device[-1] / ordinary[-1], rel=0.06)


def test_the_benchmark_times_p_x_k_batches_and_records_both_rates(capsys, tmp_path, monkeypatch):
    from lab.commands.bench import dataloader

    monkeypatch.setenv("LAB_RESULTS", str(tmp_path))
    options = "--images 200 --epochs 2 --workers 0 --device cpu --pk 5 4 --record"
    dataloader.main(["--device-path", *options.split()])
    out = capsys.readouterr().out
    assert "P x K = 5 x 4" in out
    rows = pd.read_csv(tmp_path / "benchmarks.csv")
    assert sorted(rows["name"]) == ["dataloader-pk-device", "dataloader-pk-ordinary"]
    assert (rows["figure"] > 0).all() and (rows["unit"] == "images/s").all()
    assert rows["command"].str.contains("--pk 5 4").all()
