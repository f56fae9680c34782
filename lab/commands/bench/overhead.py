"""Lightning overhead: a training step of lab's Classifier vs a hand-written PyTorch loop.

The same model (ResNet-18, small-input stem, 10 classes), the same synthetic data already
in memory (a ``TensorDataset`` of random images, a ``DataLoader`` with no workers), the
same optimizer (SGD with momentum) and batch size are trained by

(a) a minimal hand-written loop: forward, cross-entropy, backward, step, zero_grad;
(b) ``lab.tasks.Classifier`` under a bare ``lightning.Trainer`` (no logger, checkpoints,
    progress bar, model summary or validation);
(c) (b) plus the callbacks ``lab fit`` adds to every run (``RunRecord``,
    ``DivergenceGuard``, ``Interruption``), to show what they cost.

Each run trains ``--warmup`` steps untimed, then ``--steps`` timed ones: the time per step
runs from the end of the last warm-up step to the end of the last step, so it includes
fetching the batches but not building the Trainer or the iterator. The variants take turns
(a, b, c, a, b, c, ...) for ``--repeats`` rounds so that a busy spell of the machine hits
all of them; printed are the median time per step of each, its spread over the repeats,
and the ratio to (a) (the median of the per-round ratios, with their range). The aim for
(b) / (a) on the CPU is at most 1.05.

Run: ``python -m lab.commands.bench.overhead [--batch 64] [--image_size 32] [--steps 30]
[--repeats 5] [--device auto] [--precision 32] [--threads N]``.
"""

from __future__ import annotations

import argparse
import functools
import logging
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from lab.errors import LabError
from lab.models.resnet import ResNet

NUM_CLASSES = 10
VARIANTS = {
    "a": "(a) hand-written PyTorch loop",
    "b": "(b) Lightning, lab Classifier",
    "c": "(c) (b) + lab fit's callbacks",
}


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when there is a GPU, else the CPU; asking for CUDA without one is
    the user's mistake."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise LabError("--device cuda needs a CUDA GPU and there is none: use --device cpu")
    return torch.device(name)


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work, so that a clock read counts it (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_loader(batches: int, batch: int, image_size: int, seed: int = 0) -> DataLoader:
    """``batches`` batches of random ``3 x image_size x image_size`` images in memory."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batches * batch, 3, image_size, image_size, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (batches * batch,), generator=generator)
    return DataLoader(
        TensorDataset(images, labels),
        batch_size=batch,
        shuffle=True,
        drop_last=True,
        num_workers=0,
        generator=generator,
    )


def make_backbone(seed: int = 0) -> ResNet:
    """ResNet-18 with the small-input stem and a 10-way classifier, the same weights for
    the same seed."""
    torch.manual_seed(seed)
    return ResNet(depth=18, num_classes=NUM_CLASSES, small_input=True)


def sgd(lr: float = 0.01, momentum: float = 0.9) -> Callable[..., torch.optim.Optimizer]:
    """The optimizer factory both loops use."""
    return functools.partial(torch.optim.SGD, lr=lr, momentum=momentum)


class StepTimer(L.Callback):
    """Seconds per training step from the end of step ``warmup`` to the end of step
    ``warmup + steps`` (the GPU synchronised at both ends)."""

    def __init__(self, warmup: int, steps: int) -> None:
        if warmup < 1 or steps < 1:
            raise LabError(f"need at least 1 warm-up and 1 timed step, got {warmup}, {steps}")
        self.warmup, self.steps = warmup, steps
        self.start: float | None = None
        self.seconds_per_step: float | None = None

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        if trainer.global_step == self.warmup:
            synchronize(pl_module.device)
            self.start = time.perf_counter()
        elif trainer.global_step == self.warmup + self.steps and self.start is not None:
            synchronize(pl_module.device)
            self.seconds_per_step = (time.perf_counter() - self.start) / self.steps


def hand_loop(
    model: nn.Module,
    loader: DataLoader,
    optimizer_factory: Callable[..., torch.optim.Optimizer],
    device: torch.device,
    precision: str,
    warmup: int,
    steps: int,
) -> float:
    """(a): seconds per step of a minimal PyTorch training loop, timed as ``StepTimer``."""
    model.to(device).train()
    optimizer = optimizer_factory(model.parameters())
    bf16 = precision == "bf16-mixed"
    start = time.perf_counter()
    batches = iter(loader)
    for step in range(1, warmup + steps + 1):
        x, y = next(batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext():
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step == warmup:
            synchronize(device)
            start = time.perf_counter()
    synchronize(device)
    return (time.perf_counter() - start) / steps


def lightning_loop(
    module: L.LightningModule,
    loader: DataLoader,
    device: torch.device,
    precision: str,
    warmup: int,
    steps: int,
    callbacks: Sequence[L.Callback] = (),
    **trainer_kwargs: Any,
) -> float:
    """(b) and (c): seconds per step of ``module`` trained by a bare Lightning Trainer
    (plus ``callbacks``), timed by ``StepTimer``."""
    timer = StepTimer(warmup, steps)
    with tempfile.TemporaryDirectory() as root:  # RunRecord writes run.json there
        trainer = L.Trainer(
            accelerator=device.type,
            devices=1,
            precision=precision,
            max_steps=warmup + steps,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            default_root_dir=root,
            callbacks=[*callbacks, timer],
            **trainer_kwargs,
        )
        trainer.fit(module, train_dataloaders=loader)
    if timer.seconds_per_step is None:
        raise RuntimeError(f"the Trainer stopped at step {trainer.global_step} of {warmup + steps}")
    return timer.seconds_per_step


def lab_fit_callbacks() -> list[L.Callback]:
    """The callbacks ``lab fit`` adds to every run that matter while training (the
    checkpoint callback and the test-time evaluation are left out)."""
    from lab.callbacks import RunRecord
    from lab.callbacks.reliability import DivergenceGuard, Interruption

    return [RunRecord(command="lab bench overhead"), DivergenceGuard(), Interruption()]


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Keep Lightning's per-Trainer banners ("GPU available ...") and the warnings about
    what these runs leave out on purpose away from the table, until the block ends."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        for logger in loggers:
            logger.setLevel(logging.WARNING)
        # The loader has no workers on purpose: the data is already in memory.
        warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
        # No validation on purpose: the embedding metrics are validation/test-time only.
        warnings.filterwarnings("ignore", message=r"You defined a `validation_step` but have no")
        warnings.filterwarnings("ignore", message=r".*isinstance.treespec, LeafSpec.*")
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


@contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run the block with ``threads`` CPU threads (None: as they are); yields the count."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def run(
    batch: int,
    image_size: int,
    steps: int,
    warmup: int,
    repeats: int,
    device: torch.device,
    precision: str,
) -> dict[str, list[float]]:
    """Seconds per step of each variant in each round (the variants take turns)."""
    from lab.tasks import Classifier

    loader = make_loader(warmup + steps, batch, image_size)
    model = make_backbone()
    classifiers = {name: Classifier(make_backbone(), NUM_CLASSES, optimizer=sgd()) for name in "bc"}
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(repeats):
        times["a"].append(hand_loop(model, loader, sgd(), device, precision, warmup, steps))
        times["b"].append(
            lightning_loop(classifiers["b"], loader, device, precision, warmup, steps)
        )
        times["c"].append(
            lightning_loop(
                classifiers["c"], loader, device, precision, warmup, steps, lab_fit_callbacks()
            )
        )
    return times


def table(times: dict[str, list[float]]) -> str:
    """Median milliseconds per step of each variant, its range over the repeats, and the
    ratio to (a) (median and range of the per-round ratios)."""
    rows = [
        f"{'variant':<32}{'ms/step':>9}{'min':>9}{'max':>9}{'ratio':>8}{'ratio range':>15}",
    ]
    for name, label in VARIANTS.items():
        ms = [t * 1000 for t in times[name]]
        ratios = [t / a for t, a in zip(times[name], times["a"], strict=True)]
        rows.append(
            f"{label:<32}{statistics.median(ms):>9.2f}{min(ms):>9.2f}{max(ms):>9.2f}"
            f"{statistics.median(ratios):>8.3f}{min(ratios):>8.3f}-{max(ratios):.3f}"
        )
    return "\n".join(rows)


def overhead_ratio(times: dict[str, list[float]], variant: str = "b", baseline: str = "a") -> float:
    """The median over rounds of (variant's time per step) / (the baseline's)."""
    pairs = zip(times[variant], times[baseline], strict=True)
    return statistics.median(t / base for t, base in pairs)


def extra_time(times: dict[str, list[float]], variant: str, baseline: str) -> float:
    """The median over rounds of the extra seconds per step of a variant over a baseline."""
    pairs = zip(times[variant], times[baseline], strict=True)
    return statistics.median(t - base for t, base in pairs)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the options, time the three variants and print the table."""
    parser = argparse.ArgumentParser(prog="lab bench overhead", description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image_size", type=int, default=32, help="pixels per side")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first, >= 1")
    parser.add_argument("--repeats", type=int, default=5, help="rounds of a, b, c")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--precision", choices=["32", "bf16-mixed"], default="32")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if min(args.batch, args.image_size, args.steps, args.warmup, args.repeats) < 1:
        raise LabError("--batch, --image_size, --steps, --warmup and --repeats must be at least 1")
    device = resolve_device(args.device)
    with quiet_lightning(), torch_threads(args.threads) as threads:
        times = run(
            args.batch,
            args.image_size,
            args.steps,
            args.warmup,
            args.repeats,
            device,
            args.precision,
        )
    where = f"{device.type} ({threads} threads)"
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    print(
        f"ResNet-18 (small-input stem, {NUM_CLASSES} classes), {args.image_size}x"
        f"{args.image_size}, batch {args.batch}, precision {args.precision}, {where}; "
        f"{args.steps} timed steps after {args.warmup} warm-up, {args.repeats} round(s) a/b/c; "
        f"torch {torch.__version__}, lightning {L.__version__}"
    )
    print(table(times))
    ratio = overhead_ratio(times)
    aim = ""
    if device.type == "cpu":
        aim = f" (aim on the CPU: <= 1.05, {'met' if ratio <= 1.05 else 'NOT met'})"
    extra = {name: 1000 * extra_time(times, name, base) for name, base in (("b", "a"), ("c", "b"))}
    print(f"Lightning overhead (b)/(a): {ratio:.3f}, {extra['b']:+.2f} ms/step{aim}")
    print(
        f"lab fit's callbacks (c)/(b): {overhead_ratio(times, 'c', 'b'):.3f}, "
        f"{extra['c']:+.2f} ms/step"
    )


if __name__ == "__main__":
    main()
