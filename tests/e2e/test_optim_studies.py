"""What the Dogs-vs-Cats optimizer studies need: the shuffle option, map-valued sweep
settings and the sweep's curves over steps (the three-layer CNN is tested in
tests/models/test_cnn.py, CIFAR-10 class subsets in tests/data/test_cifar10.py)."""

from __future__ import annotations

import matplotlib.image
import pandas as pd
import pytest
import torch
from lightning.pytorch.utilities.data import _is_dataloader_shuffled
from torch.utils.data import SequentialSampler

from lab.cli import main
from lab.commands.sweep import curve_table, describe, expand, load_grid_file, slug, write_curves
from lab.data import CIFAR10DataModule, DigitsDataModule
from lab.data.fakes.cifar10 import write_cifar10
from lab.data.fakes.dogs_cats import write_dogs_cats
from lab.errors import LabError
from tests.conftest import QUIET, REPO

# -- the shuffle option ------------------------------------------------------------------


def _epoch_labels(dm) -> list[int]:
    return [int(v) for _, y in dm.train_dataloader() for v in y]


def test_unshuffled_batches_keep_the_split_order_every_epoch():
    dm = DigitsDataModule(shuffle=False, batch_size=64)
    dm.setup()
    order = dm.train_set.tensors[1].tolist()
    assert _epoch_labels(dm) == order and _epoch_labels(dm) == order
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, SequentialSampler)
    # What Lightning reads to configure its DistributedSampler under DDP.
    assert not _is_dataloader_shuffled(loader)


def test_shuffled_batches_are_a_new_permutation_every_epoch():
    torch.manual_seed(0)
    dm = DigitsDataModule(batch_size=64)
    dm.setup()
    order = dm.train_set.tensors[1].tolist()
    first, second = _epoch_labels(dm), _epoch_labels(dm)
    assert sorted(first) == sorted(order) == sorted(second)
    assert first != order and first != second
    assert _is_dataloader_shuffled(dm.train_dataloader())
    # Evaluation loaders are never shuffled.
    assert not _is_dataloader_shuffled(dm.val_dataloader())


def test_image_data_modules_pass_shuffle_through(tmp_path):
    write_cifar10(tmp_path, per_class_train=5)
    dm = CIFAR10DataModule(root=str(tmp_path), verify=False, shuffle=False, batch_size=8)
    dm.setup("fit")
    assert dm.shuffle is False and not _is_dataloader_shuffled(dm.train_dataloader())
    with pytest.raises(LabError, match="shuffle=false"):
        DigitsDataModule(shuffle=False, pk_classes=2, pk_samples=4)


# -- sweeps: map values, the shipped grids, curves over steps ----------------------------


def test_map_and_list_values_read_well_in_tables_and_folder_names():
    sgd = {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.01, "momentum": 0.9}}
    assert describe(sgd) == "SGD(lr=0.01, momentum=0.9)"
    assert describe([0.9, 0.999]) == "[0.9, 0.999]" and describe(0.1) == 0.1
    setting = {"model.init_args.optimizer": sgd, "data.init_args.batch_size": 64}
    assert slug(setting) == "optimizer-SGD_lr=0.01_momentum=0.9_batch_size-64"
    assert slug({"model.optimizer.init_args.betas": [0.5, 0.999]}) == "betas-0.5_0.999"


def _grid(name: str) -> list[dict]:
    return expand(load_grid_file(REPO / "experiments" / "_sweeps" / f"{name}.yaml"))


def test_the_shipped_grids_are_the_studies_of_the_source():
    optim = _grid("dogscats-optim")
    kinds = [
        (
            s["model.init_args.optimizer"]["class_path"].rsplit(".", 1)[-1],
            s["model.init_args.optimizer"]["init_args"].get("momentum", 0),
            s["data.init_args.batch_size"],
        )
        for s in optim
    ]
    assert kinds == [("SGD", 0, 1), ("SGD", 0, 64), ("SGD", 0.9, 64), ("Adam", 0, 64)]
    assert [s["data.init_args.batch_size"] for s in _grid("dogscats-batchsize")] == [
        512,
        1024,
        2048,
    ]
    assert [s["data.init_args.shuffle"] for s in _grid("dogscats-shuffle")] == [True, False]
    betas = [
        tuple(s["model.init_args.optimizer.init_args.betas"]) for s in _grid("dogscats-adam-betas")
    ]
    assert len(betas) == len(set(betas)) == 7 and (0.9, 0.999) in betas
    assert {b[1] for b in betas[:4]} == {0.999} and {b[0] for b in betas[4:]} == {0.9}
    multiclass = _grid("softmax-multiclass")
    assert {s["data.init_args.batch_size"] for s in multiclass} == {256, 4096}
    assert {s["trainer.gradient_clip_val"] for s in multiclass} == {None, 5.0}


def _write_metrics(run, steps_per_epoch: int, epochs: int, truncated: bool = False) -> dict:
    """A metrics.csv as Lightning's CSV logger writes it: step rows, grad-norm rows (logged
    straight to the logger: no epoch), one val row and one train row per epoch, a test
    row. Returns the values written, by metric."""
    rows, written = [], {"train_step/loss": {}, "grad_norm/total": {}, "val/acc": {}}
    for epoch in range(epochs):
        for i in range(steps_per_epoch):
            step = epoch * steps_per_epoch + i
            loss = 1.0 / (step + 1)
            rows.append({"epoch": epoch, "step": step, "train_step/loss": loss})
            rows.append({"step": step, "grad_norm/total": 10.0 + step})
            written["train_step/loss"][step] = loss
            written["grad_norm/total"][step] = 10.0 + step
        last = (epoch + 1) * steps_per_epoch - 1
        acc = 0.5 + 0.1 * epoch
        rows.append({"epoch": epoch, "step": last, "val/acc": acc, "val/loss": 1.0})
        rows.append({"epoch": epoch, "step": last, "train/loss": 0.5, "train/acc": 0.6})
        written["val/acc"][epoch] = acc
    rows.append({"epoch": epochs, "step": epochs * steps_per_epoch, "test/acc": 0.7})
    run.mkdir(parents=True)
    text = pd.DataFrame(rows).to_csv(index=False)
    if truncated:
        text += "3,99,0.12"  # a row cut off by a killed run: no newline at the end
    (run / "metrics.csv").write_text(text)
    return written


def test_sweep_curves_from_synthetic_runs(tmp_path):
    small = _write_metrics(tmp_path / "a" / "version_0", steps_per_epoch=5, epochs=3)
    large = _write_metrics(
        tmp_path / "b" / "version_0", steps_per_epoch=2, epochs=2, truncated=True
    )
    runs = {
        "batch_size=64": tmp_path / "a" / "version_0",
        "batch_size=512": tmp_path / "b" / "version_0",
        "failed": tmp_path / "c" / "version_0",  # never wrote metrics.csv
    }
    out = tmp_path / "sweep"
    out.mkdir()
    assert write_curves(runs, out)
    table = pd.read_csv(out / "sweep_curves.csv")
    assert list(table.columns) == ["setting", "step", "metric", "value", "epoch"]
    assert set(table["setting"]) == {"batch_size=64", "batch_size=512"}
    assert set(table["metric"]) == {"train_step/loss", "grad_norm/total", "val/acc"}
    for label, written in (("batch_size=64", small), ("batch_size=512", large)):
        for metric, values in written.items():
            rows = table[(table["setting"] == label) & (table["metric"] == metric)]
            x = "epoch" if metric == "val/acc" else "step"
            assert dict(zip(rows[x], rows["value"], strict=True)) == pytest.approx(values)
    assert table[table["metric"] == "grad_norm/total"]["epoch"].isna().all()
    png = out / "sweep_curves.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    height, width = matplotlib.image.imread(png).shape[:2]
    assert width > 2.5 * height  # one figure, three panels side by side
    assert curve_table({"x": tmp_path / "c"}).empty
    nothing = tmp_path / "nothing"
    nothing.mkdir()
    assert not write_curves({"failed": tmp_path / "c"}, nothing)
    assert not list(nothing.iterdir())


def test_a_sweep_over_whole_optimizers_writes_curves_of_every_setting(workdir, capsys):
    write_dogs_cats(workdir / "data", per_class=10)
    grid = workdir / "grid.yaml"
    grid.write_text(
        "grid:\n"
        "  - model.init_args.optimizer: {class_path: torch.optim.SGD, init_args: {lr: 0.01}}\n"
        "    data.init_args.batch_size: 1\n"
        "  - model.init_args.optimizer: {class_path: torch.optim.Adam, init_args: {lr: 0.001}}\n"
        "    data.init_args.batch_size: 4\n"
    )
    config = REPO / "experiments" / "dogscats-optim.yaml"
    tiny = [
        "--trainer.max_epochs=2",
        "--trainer.log_every_n_steps=1",
        "--data.init_args.image_size=16",
        "--data.init_args.num_workers=0",
        *QUIET,
    ]
    main(["sweep", "--config", str(config), "--grid_file", str(grid), "--", *tiny])
    sweep = workdir / "lightning_logs" / "sweeps" / "dogscats-optim"
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == [
        "optimizer-Adam_lr=0.001_batch_size-4",
        "optimizer-SGD_lr=0.01_batch_size-1",
    ]
    table = pd.read_csv(sweep / "sweep.csv")
    assert table["optimizer"].tolist() == ["SGD(lr=0.01)", "Adam(lr=0.001)"]
    assert table["status"].tolist() == ["ok", "ok"]
    curves = pd.read_csv(sweep / "sweep_curves.csv")
    labels = ["optimizer=SGD(lr=0.01), batch_size=1", "optimizer=Adam(lr=0.001), batch_size=4"]
    assert list(dict.fromkeys(curves["setting"])) == labels
    steps = curves[curves["metric"] == "train_step/loss"].groupby("setting")["step"].max()
    # 2 epochs of the fixture's 12 training images: 12 steps each at batch 1, 3 at batch 4
    assert steps.to_dict() == {labels[0]: 23, labels[1]: 5}
    grad_norms = curves[curves["metric"] == "grad_norm/total"]
    assert set(grad_norms["setting"]) == set(labels)
    val = curves[curves["metric"] == "val/acc"]
    assert val.groupby("setting")["epoch"].apply(list).to_dict() == {x: [0, 1] for x in labels}
    assert (sweep / "sweep_curves.png").is_file()
