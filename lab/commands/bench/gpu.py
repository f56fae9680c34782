"""GPU check: numerics, host syncs, overhead, throughput, compile and device data on one GPU.

One script (``make gpu-check`` or ``lab bench gpu [--out FILE]``) of at most about 8
minutes on one CUDA GPU, on generated data and the digits, that prints one table:

- ``losses``: ``BatchHardTripletLoss`` and ``CenterLoss`` on 512-d ReLU features called
  inside bf16 and fp16 (``16-mixed``) autocast vs fp32: relative error of value and
  gradient (should be below 1e-3);
- ``host syncs``: synchronising CUDA calls per training step of the Classifier under the
  ``lab fit`` callbacks, counted with ``torch.cuda.set_sync_debug_mode("warn")``;
- ``overhead``: the Lightning overhead ratio (``lab bench overhead``) on the GPU;
- ``throughput``: training images/s per GPU preset at 32 and 64 px (``lab bench
  throughput``);
- ``compile``: ``lab fit`` with ``compile: true`` on the digits, its checkpoint, and
  ``lab test`` from it, through the CLI;
- ``device data``: 100,000 x 64 x 64 x 3 uint8 images (Tiny ImageNet's size), generated,
  loaded onto the GPU by the device path: GPU memory, host memory growth, images/s of
  plain and P x K batches, and whether two ranks' shards are disjoint.

A check that fails gives an ``error`` row and the script exits 1 after the table. Without
a CUDA GPU it prints one line saying so and exits 0.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch

Row = tuple[str, str, str]  # (check, figure, what it means)


def loss_values(features: torch.Tensor, targets: torch.Tensor, num_classes: int) -> dict:
    """The losses of ``features`` (value and gradient), called as training calls them;
    kept in one function because their constructors may change."""
    import lab.losses

    out = {}
    losses = {
        "batch-hard triplet": lab.losses.BatchHardTripletLoss(),
        "center": lab.losses.CenterLoss(num_classes=num_classes, dim=features.shape[1]).to(
            features.device
        ),
    }
    for name, loss_fn in losses.items():
        torch.manual_seed(0)
        x = features.detach().clone().requires_grad_(True)
        value = loss_fn(x, targets)
        (grad,) = torch.autograd.grad(value.float(), x)
        out[name] = (value.detach().float(), grad.float())
    return out


def check_losses(device: torch.device) -> list[Row]:
    """Relative error of each loss's value and gradient under bf16 / fp16 autocast."""
    generator = torch.Generator(device="cpu").manual_seed(0)
    p, k, dim = 16, 8, 512
    targets = torch.arange(p).repeat_interleave(k).to(device)
    features = torch.relu(torch.randn(p * k, dim, generator=generator)).to(device)
    reference = loss_values(features, targets, p)
    rows = []
    for label, dtype in (("bf16", torch.bfloat16), ("16-mixed", torch.float16)):
        with torch.autocast(device.type, dtype=dtype):
            got = loss_values(features, targets, p)
        for name, (value, grad) in got.items():
            ref_value, ref_grad = reference[name]
            value_err = float((value - ref_value).abs() / ref_value.abs().clamp_min(1e-12))
            grad_err = float((grad - ref_grad).norm() / ref_grad.norm().clamp_min(1e-12))
            verdict = "ok" if max(value_err, grad_err) < 1e-3 else "FAIL (> 1e-3)"
            rows.append(
                (
                    f"losses: {name}, {label}",
                    f"value {value_err:.1e}, grad {grad_err:.1e}",
                    f"relative error vs fp32: {verdict}",
                )
            )
    return rows


class SyncCounter(L.Callback):
    """Counts CUDA sync warnings inside each training step after ``warmup`` steps."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.steps, self.syncs = warmup, 0, 0
        self._record: list | None = None
        self._catcher: warnings.catch_warnings | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step < self.warmup:
            return
        self._catcher = warnings.catch_warnings(record=True)
        self._record = self._catcher.__enter__()
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._catcher is None:
            return
        torch.cuda.set_sync_debug_mode("default")
        self._catcher.__exit__(None, None, None)
        self.syncs += sum("synchronizing" in str(w.message) for w in self._record or [])
        self.steps += 1
        self._catcher = self._record = None


def check_host_syncs(device: torch.device) -> list[Row]:
    """Synchronising calls per training step of the Classifier with ``lab fit``'s callbacks."""
    from torch.utils.data import DataLoader

    from lab.commands.bench.overhead import NUM_CLASSES, lab_fit_callbacks, make_backbone, sgd
    from lab.commands.bench.throughput import RepeatedBatches, make_batches
    from lab.tasks import Classifier

    rows = []
    for precision in ("bf16-mixed", "16-mixed"):
        module = Classifier(make_backbone(), NUM_CLASSES, optimizer=sgd())
        loader = DataLoader(RepeatedBatches(make_batches("cuda", 64, 32), 13), batch_size=None)
        counter = SyncCounter(warmup=3)
        with tempfile.TemporaryDirectory() as root:
            trainer = L.Trainer(
                accelerator="gpu",
                devices=1,
                precision=precision,
                max_steps=13,
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                limit_val_batches=0,
                default_root_dir=root,
                callbacks=[*lab_fit_callbacks(), counter],
            )
            trainer.fit(module, train_dataloaders=loader)
        per_step = counter.syncs / max(counter.steps, 1)
        rows.append(
            (
                f"host syncs per step, {precision}",
                f"{per_step:.2f}",
                f"over {counter.steps} steps; goal 0 in lab's code"
                + (
                    " (GradScaler's inf check syncs once a step)" if precision == "16-mixed" else ""
                ),
            )
        )
    return rows


def check_overhead(device: torch.device) -> list[Row]:
    """The Lightning overhead ratio (b)/(a) of ``lab bench overhead`` on the GPU."""
    from lab.commands.bench import overhead

    times = overhead.run(64, 32, 30, 5, 3, device, "bf16-mixed")
    with_callbacks = overhead.overhead_ratio(times, "c")
    return [
        (
            "Lightning overhead, bf16, batch 64, 32 px",
            f"{overhead.overhead_ratio(times):.3f}",
            f"Lightning / hand loop; with lab's callbacks {with_callbacks:.3f}",
        )
    ]


def check_throughput(device: torch.device) -> list[Row]:
    """Training images/s per GPU preset at 32 and 64 px."""
    from lab.commands.bench.throughput import PRESETS, images_per_second

    rows = []
    for name in ("gpu", "gpu-compile"):
        preset = PRESETS[name]
        for size in (32, 64):
            rate = images_per_second(preset, size, preset.batch, steps=20, warmup=5)
            rows.append((f"throughput {name}, {size} px", f"{rate:,.0f}", "images/s, ResNet-18"))
    return rows


def check_compile(device: torch.device) -> list[Row]:
    """``lab fit`` with ``compile: true`` on the digits, then ``lab test`` from its checkpoint."""
    config = Path(__file__).resolve().parents[3] / "experiments" / "demo.yaml"
    with tempfile.TemporaryDirectory() as root:
        env = {**os.environ, "LAB_LOGS": str(Path(root) / "logs"), "LAB_DATA": str(Path(root))}
        common = [sys.executable, "-m", "lab.cli"]
        options = [
            "--config",
            str(config),
            "--trainer.accelerator=gpu",
            "--trainer.devices=1",
            "--trainer.enable_progress_bar=false",
        ]
        fit = [
            *common,
            "fit",
            *options,
            "--model.init_args.compile=true",
            "--trainer.max_epochs=1",
            "--trainer.callbacks=[]",
        ]
        start = time.perf_counter()
        fitted = subprocess.run(fit, env=env, capture_output=True, text=True, cwd=root)
        if fitted.returncode:
            raise RuntimeError(f"lab fit failed: {fitted.stderr.strip().splitlines()[-1:]}")
        test = [*common, "test", *options, "--ckpt_path", "last", "--trainer.callbacks=[]"]
        tested = subprocess.run(test, env=env, capture_output=True, text=True, cwd=root)
        if tested.returncode:
            raise RuntimeError(f"lab test failed: {tested.stderr.strip().splitlines()[-1:]}")
        seconds = time.perf_counter() - start
        found = sorted(Path(root, "logs").rglob("*.ckpt"))
    return [
        (
            "compile: fit + checkpoint + test (digits)",
            f"{seconds:.0f} s",
            f"ok: {len(found)} checkpoint(s), lab test from last",
        )
    ]


def check_device_data(device: torch.device, images: int = 100_000) -> list[Row]:
    """Tiny ImageNet-sized split on the GPU: memory, images/s (plain, P x K), shards."""
    from lab.data.device_loader import DeviceBatchLoader, EpochOrder
    from lab.data.images import ArrayDataset, ImageDataModule

    class Generated(ImageDataModule):
        dataset_name = "tiny_imagenet"

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (images, 64, 64, 3), dtype=np.uint8)
    labels = np.arange(images) % 200
    dataset = ArrayDataset(pixels, labels)
    module = Generated(normalization="none", crop_padding=8, hflip=0.5)
    torch.cuda.reset_peak_memory_stats(device)
    host_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    start = time.perf_counter()
    x, y = module.device_tensors(dataset, device)
    torch.cuda.synchronize(device)
    load_s = time.perf_counter() - start
    host_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20 - host_before
    gib = torch.cuda.max_memory_allocated(device) / 2**30
    rows = [
        (
            f"device data: load {images:,} x 64x64x3",
            f"{load_s:.1f} s",
            f"GPU {gib:.2f} GiB (split {pixels.nbytes / 2**30:.2f}), "
            f"host peak +{host_growth:.2f} GiB",
        )
    ]
    options = module.device_batch_options(train=True)
    for label, pk in (("batch 512", None), ("P x K 64 x 8", (64, 8))):
        loader = DeviceBatchLoader(x, y, batch_size=512, shuffle=True, pk=pk, **options)
        for epoch in range(2):  # epoch 0 warms up; epoch 1 is timed
            loader.set_epoch(epoch)
            torch.cuda.synchronize(device)
            start, count = time.perf_counter(), 0
            for batch, _ in loader:
                count += len(batch)
            torch.cuda.synchronize(device)
        rate = count / (time.perf_counter() - start)
        rows.append((f"device data: {label}, crop + flip", f"{rate:,.0f}", "images/s"))
    shards = [
        set(EpochOrder(images, shuffle=True, rank=r, world_size=2).indices().tolist())
        for r in (0, 1)
    ]
    disjoint = not (shards[0] & shards[1]) and len(shards[0] | shards[1]) == images
    rows.append(("device data: 2-rank shards", "disjoint" if disjoint else "OVERLAP", ""))
    del x, y
    torch.cuda.empty_cache()
    return rows


CHECKS: dict[str, Callable[[torch.device], list[Row]]] = {
    "losses": check_losses,
    "host syncs": check_host_syncs,
    "overhead": check_overhead,
    "throughput": check_throughput,
    "compile": check_compile,
    "device data": check_device_data,
}


def format_table(rows: list[Row], header: str) -> str:
    """The rows as one aligned text table under ``header``."""
    width = max([len(r[0]) for r in rows] + [5])
    value = max([len(r[1]) for r in rows] + [6])
    lines = [header, f"{'check':<{width}}  {'figure':>{value}}  note"]
    lines += [f"{c:<{width}}  {f:>{value}}  {n}" for c, f, n in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Run every check (or ``--only`` some), print the table, write it to ``--out``."""
    parser = argparse.ArgumentParser(prog="lab bench gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    parser.add_argument("--only", nargs="+", choices=list(CHECKS), default=list(CHECKS))
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("lab bench gpu: no CUDA GPU on this machine: nothing checked")
        return
    device = torch.device("cuda", 0)
    rows: list[Row] = []
    failed = False
    started = time.perf_counter()
    for name in args.only:
        try:
            rows += CHECKS[name](device)
        except Exception as error:  # one broken check must not hide the others
            failed = True
            traceback.print_exc(file=sys.stderr)
            rows.append((name, "error", f"{type(error).__name__}: {error}"[:160]))
    header = (
        f"lab bench gpu: {torch.cuda.get_device_name(device)}, torch {torch.__version__}, "
        f"{time.perf_counter() - started:.0f} s"
    )
    text = format_table(rows, header)
    print(text)
    if args.out is not None:
        from lab.io import atomic_write_text

        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, text + "\n")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
