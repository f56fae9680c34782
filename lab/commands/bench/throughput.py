"""Training throughput: images per second of ResNet-18 at 32 and 64 pixels, per preset.

``--backbones`` times other networks in the same run: ``vgg16-bn`` (the contrastive
family's encoder, ``lab.models.VGG``) and ``fmnist-cnn`` (the Fashion-MNIST recipe's
``SmallCNN``), with ``--channels 1`` for greyscale input; read their figures as ratios
measured side by side (the question "does this encoder fit my CPU budget").

Trains ``lab.tasks.Classifier`` (ResNet-18, small-input stem, 10 classes, SGD with
momentum) with the Lightning Trainer for ``--warmup`` untimed steps, then ``--steps``
timed ones (forward, backward, optimizer step; the GPU synchronised at both ends of the
timed span), and reports images per second of the timed steps. The batches are random
tensors made once on the device, so the figure is the training step alone, not the data
pipeline (``lab bench dataloader`` measures that). Presets, the ones this machine can run:

- ``cpu``: fp32 on the CPU, as ``experiments/_base/cpu.yaml``;
- ``gpu``: one CUDA GPU, ``bf16-mixed`` autocast, weights and batches channels-last,
  ``cudnn.benchmark`` (``Trainer(benchmark=True)``), as ``experiments/_base/gpu.yaml``;
- ``gpu-compile``: ``gpu`` plus ``torch.compile`` of the backbone (the Classifier's
  ``compile`` option; the compilation falls in the warm-up steps).

The settings go through the Classifier's own ``channels_last`` and ``compile`` options and
the Trainer's ``precision`` and ``benchmark``, the path ``lab fit`` takes with the preset.

Run: ``python -m lab.commands.bench.throughput [--sizes 32 64] [--batch N] [--steps 20]
[--warmup 3] [--presets cpu gpu gpu-compile] [--threads N]``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from lab.commands.bench.overhead import (
    NUM_CLASSES,
    lightning_loop,
    quiet_lightning,
    sgd,
    torch_threads,
)
from lab.commands.record import record_benchmark
from lab.errors import LabError
from lab.models import VGG, ResNet, SmallCNN


@dataclass(frozen=True)
class Preset:
    """How a preset trains: device, precision, memory format, cuDNN autotuning, compile."""

    device: str
    precision: str
    channels_last: bool = False
    benchmark: bool = False
    compile: bool = False
    batch: int = 256  # the default batch size

    def describe(self) -> str:
        parts = [self.device, self.precision]
        parts += ["channels_last"] * self.channels_last + ["cudnn.benchmark"] * self.benchmark
        return ", ".join(parts + ["torch.compile"] * self.compile)


PRESETS = {
    # A small default batch on the CPU: a 64 px step of batch 256 takes tens of seconds.
    "cpu": Preset("cpu", "32-true", batch=32),
    "gpu": Preset("cuda", "bf16-mixed", channels_last=True, benchmark=True),
    "gpu-compile": Preset("cuda", "bf16-mixed", channels_last=True, benchmark=True, compile=True),
}


def available_presets() -> list[str]:
    """The presets this machine can run: ``cpu`` always, the GPU ones with CUDA."""
    return [name for name, p in PRESETS.items() if p.device == "cpu" or torch.cuda.is_available()]


class RepeatedBatches(Dataset):
    """``length`` batches cycling through a few ready-made ones (``DataLoader(batch_size=None)``
    hands them over as they are), so that loading costs nothing."""

    def __init__(self, batches: list[tuple[torch.Tensor, torch.Tensor]], length: int) -> None:
        self.batches, self.length = batches, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.batches[index % len(self.batches)]


def make_batches(
    device: str, batch: int, image_size: int, count: int = 4, seed: int = 0, channels: int = 3
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` random batches on ``device``, contiguous as a data module delivers them
    (the Classifier turns them channels-last itself where the preset says so)."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        x = torch.randn(batch, channels, image_size, image_size, generator=generator)
        y = torch.randint(0, NUM_CLASSES, (batch,), generator=generator)
        batches.append((x.to(device), y.to(device)))
    return batches


def backbone(name: str, channels: int, seed: int = 0) -> torch.nn.Module:
    """The network ``name`` of ``BACKBONES`` with a 10-way classifier, seeded."""
    torch.manual_seed(seed)
    if name == "resnet18":
        return ResNet(depth=18, num_classes=NUM_CLASSES, small_input=True, in_channels=channels)
    if name == "vgg16-bn":
        return VGG(16, batch_norm=True, in_channels=channels, num_classes=NUM_CLASSES)
    # The Fashion-MNIST recipe's CNN (experiments/_base/fmnist-cnn.yaml).
    widths = [16, [32, 32], [96, 96], 192]
    return SmallCNN(NUM_CLASSES, channels, widths, batch_norm=True)


BACKBONES = ("resnet18", "vgg16-bn", "fmnist-cnn")


def images_per_second(
    preset: Preset,
    image_size: int,
    batch: int,
    steps: int,
    warmup: int,
    network: str = "resnet18",
    channels: int = 3,
) -> float:
    """Images per second of ``steps`` training steps after ``warmup`` untimed ones."""
    from lab.tasks import Classifier

    module = Classifier(
        backbone(network, channels),
        NUM_CLASSES,
        optimizer=sgd(),
        channels_last=preset.channels_last,
        compile=preset.compile,
    )
    batches = make_batches(preset.device, batch, image_size, channels=channels)
    loader = DataLoader(RepeatedBatches(batches, warmup + steps), batch_size=None)
    seconds = lightning_loop(
        module,
        loader,
        torch.device(preset.device),
        preset.precision,
        warmup,
        steps,
        benchmark=preset.benchmark,
    )
    return batch / seconds


def table(rows: list[tuple[str, str, int, int, float]]) -> str:
    """Backbone, preset, image size, batch and images per second, one line each."""
    lines = [f"{'backbone':<12}{'preset':<13}{'size':>6}{'batch':>7}{'images/s':>11}"]
    for network, name, size, batch, rate in rows:
        lines.append(f"{network:<12}{name:<13}{size:>6}{batch:>7}{rate:>11,.1f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the options, time each preset at each size and print the table."""
    parser = argparse.ArgumentParser(
        prog="lab bench throughput", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64], help="pixels per side")
    parser.add_argument(
        "--batch", type=int, default=None, help="default: 32 for cpu, 256 for the GPU presets"
    )
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first, >= 1")
    parser.add_argument(
        "--presets",
        nargs="+",
        default=None,
        help=f"of {', '.join(PRESETS)} (default: all this machine can run)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--backbones", nargs="+", choices=BACKBONES, default=["resnet18"], help="networks to time"
    )
    parser.add_argument("--channels", type=int, choices=[1, 3], default=3, help="input channels")
    parser.add_argument("--record", action="store_true", help="add the figures to results/")
    args = parser.parse_args(argv)
    presets = args.presets or available_presets()
    for name in presets:
        if name not in PRESETS:
            raise LabError(f"unknown preset {name!r}: expected some of {', '.join(PRESETS)}")
        if name not in available_presets():
            raise LabError(f"preset {name!r} needs a CUDA GPU and there is none: use --presets cpu")
    if min([args.steps, args.warmup, *args.sizes, args.batch or 1]) < 1:
        raise LabError("--sizes, --batch, --steps and --warmup must be at least 1")
    rows = []
    for network in args.backbones:
        for name in presets:
            preset = PRESETS[name]
            batch = args.batch or preset.batch
            for size in args.sizes:
                with quiet_lightning(), torch_threads(args.threads) as threads:
                    rate = images_per_second(
                        preset, size, batch, args.steps, args.warmup, network, args.channels
                    )
                rows.append((network, name, size, batch, rate))
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    print(
        f"{', '.join(args.backbones)} ({NUM_CLASSES} classes, {args.channels} input channels) "
        f"training steps (forward, "
        f"backward, SGD step) under the Lightning Trainer, {args.steps} timed after "
        f"{args.warmup} warm-up; CPU {threads} threads, {gpu}; "
        f"torch {torch.__version__}, lightning {L.__version__}"
    )
    for name in presets:
        print(f"  {name}: {PRESETS[name].describe()}")
    print(table(rows))
    if args.record:
        given = sys.argv[1:] if argv is None else list(argv)
        command = shlex.join(["lab", "bench", "throughput", *given])
        for network, name, size, batch, rate in rows:
            name_ = f"throughput-{network}-{args.channels}ch-{name}-{size}px-batch{batch}"
            record_benchmark(name_, round(rate, 1), "images/s", command)


if __name__ == "__main__":
    main()
