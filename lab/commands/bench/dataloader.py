"""Training-dataloader throughput: decoded cache vs JPEGs; DataLoader vs device-resident.

Measures images per second delivered by a training DataLoader (random horizontal flip
and reflect-padded random crop, float normalised batches; the batches are not used, so
this is the ceiling the loader puts on training) over a Tiny ImageNet-format folder of
``--images`` generated 64x64 JPEGs. The JPEGs are textured noise, not flat colour, so
decoding one costs about what decoding a photo does. Two loaders see the same training
images in the same batch size and number of workers:

(a) ``TinyImageNetDataModule``: every JPEG decoded once into a memory-mapped uint8 cache
    (that one-off build is timed on its own), then epochs that only index the cache;
(b) torchvision ``ImageFolder`` on ``train/``: every epoch opens and decodes every JPEG
    with PIL, then the same v2 transforms.

Run: ``python -m lab.commands.bench.dataloader [--images 10000] [--epochs 2] [--workers 2]
[--batch-size 256] [--dir PATH]``. The generated folder is reused by later runs; the
cache is rebuilt every run so its build time is always measured.

With ``--device-path`` it compares instead, on ``--images`` random CIFAR-sized 32x32 uint8
images (held in memory, nothing on disk) with the same flip + reflect-pad crop +
normalise, batch size and seed:

(c) the ordinary path: an ``ImageDataModule``'s DataLoader with ``--workers`` workers,
    per-image v2 transforms, each batch copied to ``--device`` (pinned memory on a GPU);
(d) ``device_data=True``: the images on ``--device`` once (timed on its own), batches
    cut and augmented there by ``lab.data.device_loader.DeviceBatchLoader``.

``python -m lab.commands.bench.dataloader --device-path --images 50000 --epochs 3 --workers 2
--batch-size 512 [--device cuda]`` (default device: cuda when there is one, else cpu).
``--pk P K`` gives both paths P x K training batches (``PKBatchSampler``; the batch size
is then P * K), as triplet and center-loss training use. ``--record`` appends the warm
images/s of both paths to ``results/benchmarks.csv`` (``lab.commands.record.record_benchmark``).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from torchvision import datasets
from torchvision.transforms import v2

from lab.data.base import data_root
from lab.data.device_loader import DeviceBatchLoader
from lab.data.fakes.tiny_imagenet import FOLDER, write_tiny_imagenet
from lab.data.images import ArrayDataset, ImageDataModule
from lab.data.tiny_imagenet import TinyImageNetDataModule

PER_CLASS = 50  # 10,000 images -> 200 classes, as many as the real data set


def generated_root(base: Path, images: int) -> Path:
    """A data root holding ``images`` generated train JPEGs, written once and then reused."""
    root = base / f"tiny-imagenet-{images}"
    if (root / FOLDER / "wnids.txt").is_file():
        return root
    classes = max(2, math.ceil(images / PER_CLASS))
    tmp = base / f".{root.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    start = time.perf_counter()
    write_tiny_imagenet(
        tmp,
        num_classes=classes,
        train_per_class=math.ceil(images / classes),
        val_per_class=1,
        test_images=0,
        greyscale=classes // 10,  # the real data has some greyscale JPEGs too
        noise=True,
    )
    os.replace(tmp, root)  # a half-written folder is never reused
    print(f"wrote {root} in {time.perf_counter() - start:.1f} s")
    return root


def epoch_rates(loader: DataLoader, epochs: int) -> list[float]:
    """Images per second of each epoch through ``loader``."""
    rates = []
    for _ in range(epochs):
        start, count = time.perf_counter(), 0
        for images, _ in loader:
            count += len(images)
        rates.append(count / (time.perf_counter() - start))
    return rates


def run(images: int, epochs: int, workers: int, batch_size: int, base: Path) -> dict:
    """Time both loaders; returns the figures that ``main`` prints."""
    root = generated_root(base, images)
    augment = {"crop_padding": 4, "hflip": 0.5, "num_workers": workers, "batch_size": batch_size}
    dm = TinyImageNetDataModule(root=str(root), **augment)
    shutil.rmtree(dm.cache_dir, ignore_errors=True)
    start = time.perf_counter()
    dm.load_split("train")
    build = time.perf_counter() - start
    dm.setup("fit")
    cached = epoch_rates(dm.train_dataloader(), epochs)

    folder = datasets.ImageFolder(
        str(dm.data_dir / "train"), transform=v2.Compose([v2.PILToTensor(), dm.train_transform])
    )
    # The same training images as (a): the data module lists files in ImageFolder's order.
    assert [Path(p) for p, _ in folder.samples] == dm.files["train"]
    subset = Subset(folder, dm.train_set.indices.tolist())
    loader = DataLoader(
        subset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    decoded = epoch_rates(loader, epochs)
    return {"train_images": len(subset), "build_s": build, "cache": cached, "jpeg": decoded}


def table(figures: dict, epochs: int) -> str:
    """The figures as a small text table with the speed-up of the warm epochs."""
    warm = slice(1, None) if epochs > 1 else slice(None)
    cache_warm = sum(figures["cache"][warm]) / len(figures["cache"][warm])
    jpeg_warm = sum(figures["jpeg"][warm]) / len(figures["jpeg"][warm])
    which = "epochs 2+" if epochs > 1 else "epoch 1"
    rows = [
        f"{'loader':<34}{'one-off build':>14}{'epoch 1':>10}{which:>11}",
        f"{'':<34}{'(s)':>14}{'(img/s)':>10}{'(img/s)':>11}",
        f"{'(a) decoded cache (memmap .npy)':<34}{figures['build_s']:>14.1f}"
        f"{figures['cache'][0]:>10,.0f}{cache_warm:>11,.0f}",
        f"{'(b) ImageFolder, JPEG every epoch':<34}{'-':>14}"
        f"{figures['jpeg'][0]:>10,.0f}{jpeg_warm:>11,.0f}",
        f"speed-up of (a) over (b), {which}: {cache_warm / jpeg_warm:.1f}x",
    ]
    saved_per_epoch = figures["train_images"] * (1 / jpeg_warm - 1 / cache_warm)
    if saved_per_epoch > 0:
        repaid = figures["build_s"] / saved_per_epoch
        rows.append(f"the one-off cache build is repaid after {repaid:.1f} epochs")
    return "\n".join(rows)


class RandomArrays(ImageDataModule):
    """``images`` random CIFAR-sized uint8 images in memory (10 classes, CIFAR statistics),
    all of them training images."""

    dataset_name = "cifar10"

    def __init__(self, images: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.count = images
        self.num_classes = 10
        self.class_names = [str(c) for c in range(10)]

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            pixels = np.random.default_rng(0).integers(0, 256, (self.count, 32, 32, 3), np.uint8)
            labels = np.arange(self.count) % 10
            self.train_set = ArrayDataset(pixels, labels, None, self.train_transform)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_path_run(
    images: int,
    epochs: int,
    workers: int,
    batch_size: int,
    device: torch.device,
    pk: tuple[int, int] | None = None,
) -> dict:
    """Time the ordinary and the device-resident training loader on the same images
    (P x K batches on both with ``pk``)."""
    options = {
        "crop_padding": 4,
        "hflip": 0.5,
        "batch_size": batch_size,
        "num_workers": workers,
        "normalization": "dataset",
    }
    if pk is not None:
        options.update(pk_classes=pk[0], pk_samples=pk[1])
    ordinary = RandomArrays(images, pin_memory=device.type == "cuda", **options)
    ordinary.setup("fit")
    loader = ordinary.train_dataloader()
    rates = []
    for _ in range(epochs):
        start, count = time.perf_counter(), 0
        for x, _ in loader:
            x = x.to(device, non_blocking=True)  # what training does with each batch
            count += len(x)
        _sync(device)
        rates.append(count / (time.perf_counter() - start))

    resident = RandomArrays(images, device_data=True, **options)
    resident.setup("fit")
    start = time.perf_counter()
    pixels, labels = resident.device_tensors(resident.train_set, device)
    _sync(device)
    setup = time.perf_counter() - start
    on_device = DeviceBatchLoader(
        pixels,
        labels,
        batch_size=resident.batch_size,
        shuffle=True,
        seed=resident.seed,
        pk=pk,
        **resident.device_batch_options(train=True),
    )
    device_rates = []
    for epoch in range(epochs):
        on_device.set_epoch(epoch)
        start, count = time.perf_counter(), 0
        for x, _ in on_device:
            count += len(x)
        _sync(device)
        device_rates.append(count / (time.perf_counter() - start))
    return {
        "train_images": len(resident.train_set),
        "setup_s": setup,
        "ordinary": rates,
        "device": device_rates,
    }


def warm_rates(figures: dict, epochs: int) -> tuple[float, float]:
    """Mean images/s of the ordinary and the device path over the warm epochs (2+)."""
    warm = slice(1, None) if epochs > 1 else slice(None)
    ordinary = sum(figures["ordinary"][warm]) / len(figures["ordinary"][warm])
    device = sum(figures["device"][warm]) / len(figures["device"][warm])
    return ordinary, device


def device_path_table(figures: dict, epochs: int) -> str:
    """The device-path figures as a text table with the ratio of the warm epochs."""
    ordinary, device = warm_rates(figures, epochs)
    which = "epochs 2+" if epochs > 1 else "epoch 1"
    rows = [
        f"{'loader':<34}{'one-off setup':>14}{'epoch 1':>12}{which:>12}",
        f"{'':<34}{'(s)':>14}{'(img/s)':>12}{'(img/s)':>12}",
        f"{'(c) DataLoader, per-image v2':<34}{'-':>14}"
        f"{figures['ordinary'][0]:>12,.0f}{ordinary:>12,.0f}",
        f"{'(d) device-resident, batched ops':<34}{figures['setup_s']:>14.2f}"
        f"{figures['device'][0]:>12,.0f}{device:>12,.0f}",
        f"ratio (d) / (c), {which}: {device / ordinary:.1f}x",
    ]
    return "\n".join(rows)


def record_device_path(
    figures: dict,
    epochs: int,
    device: torch.device,
    pk: tuple[int, int] | None,
    argv: Sequence[str] | None,
) -> None:
    """Append the warm images/s of both paths to ``results/benchmarks.csv``."""
    from lab.commands.record import record_benchmark

    given = sys.argv[1:] if argv is None else list(argv)
    command = " ".join(["lab bench dataloader", *given])
    if f"--device {device.type}" not in command:
        command += f" --device {device.type}"
    kind = "pk" if pk else "plain"
    ordinary, resident = warm_rates(figures, epochs)
    record_benchmark(f"dataloader-{kind}-ordinary", round(ordinary), "images/s", command)
    record_benchmark(f"dataloader-{kind}-device", round(resident), "images/s", command)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the options, run both loaders and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--images", type=int, default=10_000, help="generated train JPEGs (or arrays)"
    )
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--dir", type=Path, default=None, help="default: <data root>/bench")
    parser.add_argument(
        "--device-path",
        action="store_true",
        help="compare the ordinary DataLoader with data.device_data on 32x32 arrays instead",
    )
    parser.add_argument(
        "--device", default=None, help="for --device-path: default cuda if there is one, else cpu"
    )
    parser.add_argument(
        "--pk",
        type=int,
        nargs=2,
        metavar=("P", "K"),
        default=None,
        help="for --device-path: P x K training batches on both paths (batch size P * K)",
    )
    parser.add_argument(
        "--record", action="store_true", help="append the figures to results/benchmarks.csv"
    )
    args = parser.parse_args(argv)
    if args.device_path:
        default = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(args.device or default)
        pk = tuple(args.pk) if args.pk else None
        figures = device_path_run(
            args.images, args.epochs, args.workers, args.batch_size, device, pk
        )
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        batches = f"P x K = {pk[0]} x {pk[1]}" if pk else f"batch {args.batch_size}"
        print(
            f"{figures['train_images']:,} train images (32x32 uint8, flip + pad-4 crop + "
            f"normalise), {batches}, {args.workers} workers, device {name}, "
            f"{os.cpu_count()} CPUs, torch {torch.__version__}"
        )
        print(device_path_table(figures, args.epochs))
        if args.record:
            record_device_path(figures, args.epochs, device, pk, argv)
        return
    base = args.dir or data_root() / "bench"
    base.mkdir(parents=True, exist_ok=True)
    figures = run(args.images, args.epochs, args.workers, args.batch_size, base)
    print(
        f"{figures['train_images']:,} train images (64x64 JPEG, 10% held out for val), "
        f"batch {args.batch_size}, {args.workers} workers, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}"
    )
    print(table(figures, args.epochs))


if __name__ == "__main__":
    main()
