"""The ``lab`` command end to end: configs, runs, resume, and clear errors on bad input."""

import contextlib
import io
import json
import re
import shlex
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lab.cli import main
from lab.cli.configs import bases_of
from lab.commands.sweep import check_settings, expand, load_grid_file
from lab.data.fakes.cifar10 import write_cifar10
from lab.data.fakes.dogs_cats import write_dogs_cats
from lab.data.fakes.idx import write_idx
from lab.data.fakes.stl10 import write_stl10
from lab.data.fakes.tiny_imagenet import write_tiny_imagenet
from tests.conftest import ALL_EXPERIMENTS, EXPERIMENTS, REPO
from tests.helpers import short_fit

DEMO = REPO / "experiments" / "demo.yaml"
# A few batches per epoch: enough to exercise every stage in seconds.
SHORT = short_fit(None, 3)
# The demo with a small CNN and none of its figures: a run whose checkpoints are 1 MB, not 90.
SMALL = [
    "--model.init_args.backbone=lab.models.SmallCNN",
    "--model.init_args.backbone.init_args.in_channels=1",
    "--model.init_args.backbone.init_args.channels=[8, 16]",
    "--trainer.callbacks=[]",
]


def _fake(write, *extra: str):
    """CLI arguments that point a data module at a fixture written by ``write``."""

    def arguments(root: Path) -> list[str]:
        write(root)
        return ["--data.init_args.root", str(root), "--data.init_args.num_workers=0", *extra]

    return arguments


# How to get data for each data module: none for the embedded digits, else a fixture in
# the real format. Every data module an experiment uses must be here.
FAKE_DATA = {
    "lab.data.DigitsDataModule": lambda root: [],
    "lab.data.CIFAR10DataModule": _fake(
        lambda r: write_cifar10(r, per_class_train=10), "--data.init_args.verify=false"
    ),
    "lab.data.STL10DataModule": _fake(
        lambda r: write_stl10(r, per_class_train=10), "--data.init_args.verify=false"
    ),
    "lab.data.DogsCatsDataModule": _fake(lambda r: write_dogs_cats(r, per_class=10)),
    "lab.data.TinyImageNetDataModule": _fake(
        lambda r: write_tiny_imagenet(r, num_classes=4, train_per_class=10)
    ),
    "lab.data.FashionMNISTDataModule": _fake(write_idx, "--data.init_args.verify=false"),
}


def files_set(config: Path) -> dict:
    """What an experiment's files set: its bases (``base:``) and itself, merged key by key
    (LightningCLI's merge also resolves class changes; this is for reading the files)."""

    def merge(into: dict, update: dict) -> dict:
        for key, value in update.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = value
        return into

    merged: dict = {}
    for path in [*bases_of(config), config]:
        merge(merged, yaml.safe_load(path.read_text()))
    return merged


def data_class(config: Path) -> str:
    return files_set(config)["data"]["class_path"]


def fixture_overrides(config: Path) -> list[str]:
    """What an experiment must change to run on the small fixtures offline: no
    pretrained download, a class subset and P x K batches the 4-class fixture can hold."""
    loaded = files_set(config)
    model, data = loaded["model"]["init_args"], loaded["data"].get("init_args", {})
    extra = []
    if model.get("backbone", {}).get("init_args", {}).get("weights"):
        extra.append("--model.init_args.backbone.init_args.weights=null")
    if (data.get("image_size") or 0) > 32:  # the wiring, not the resolution, is tested
        extra.append("--data.init_args.image_size=32")
    if data.get("train_subset"):
        extra += ["--data.init_args.train_subset=60", "--data.init_args.val_fraction=0.2"]
    if data.get("num_classes_subset"):
        extra.append("--data.init_args.num_classes_subset=3")
    if data.get("labelled_per_class"):  # the fixture's classes hold 9 training images
        extra.append("--data.init_args.labelled_per_class=2")
    if data.get("pk_classes"):
        extra += ["--data.init_args.pk_classes=2", "--data.init_args.pk_samples=4"]
    for key in ("batch_size", "eval_batch_size"):
        if (data.get(key) or 0) > 16:  # one batch of 256 images is seconds on one thread
            extra.append(f"--data.init_args.{key}=16")
    if "bf16" in str(loaded.get("trainer", {}).get("precision", "")):
        # bf16 autocast on a CPU without bf16 units takes minutes for one batch (cifar-fast:
        # 218 s); bf16 numerics: tests/losses/test_precision.py, presets: tests/e2e/test_presets.py.
        extra.append("--trainer.precision=32-true")
    return extra


def test_there_is_an_experiment_per_yaml():
    assert DEMO in EXPERIMENTS


@pytest.mark.parametrize("config", EXPERIMENTS, ids=lambda p: p.stem)
def test_fast_dev_run_of_every_experiment(config, lab, workdir, capsys):
    assert data_class(config) in FAKE_DATA, f"add a fixture for {data_class(config)}"
    data_args = FAKE_DATA[data_class(config)](workdir / "data") + fixture_overrides(config)
    # The test stage too (in the same process, as make runs it): the reference pass, the
    # embedding metrics, the t-SNE callback.
    lab("fit", "--config", config, "--trainer.fast_dev_run=true", "--then_test=last", *data_args)
    assert "test/" in capsys.readouterr().out  # the test stage's table of metrics


def test_fit_writes_the_run_folder_and_test_reuses_it(lab, workdir, capsys):
    # --then_test last: the test of `lab test --ckpt_path last`, in the fit's process.
    lab("fit", "--config", DEMO, "--trainer.max_epochs=2", "--then_test", "last", *SHORT)
    run = workdir / "lightning_logs" / "demo" / "version_0"
    for name in ("config.yaml", "metrics.csv", "run.json", "hparams.yaml", "checkpoints/last.ckpt"):
        assert (run / name).is_file(), name
    boards = [EventAccumulator(str(e)).Reload().Tags() for e in run.glob("events.out.tfevents.*")]
    scalars = {tag for board in boards for tag in board["scalars"]}
    # TensorBoard opens on curves: no `epoch` chart, the parameter counts as text.
    assert {"train/loss", "val/acc", "test/acc"} <= scalars
    assert not [tag for tag in scalars if tag == "epoch" or tag.startswith("params/")]
    assert any("parameters/text_summary" in board["tensors"] for board in boards)
    assert pd.read_csv(run / "metrics.csv")["params/total"].notna().any()  # still in the CSV
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["experiment"] == "demo" and saved["trainer"]["max_epochs"] == 2
    assert saved["ckpt_path"] is None  # config.yaml repeats the fit
    tested = yaml.safe_load((run / "config_test.yaml").read_text())["ckpt_path"]
    assert (workdir / tested).resolve() == (run / "checkpoints" / "last.ckpt").resolve()
    in_process = (run / "predictions.csv").read_text()

    lab("test", "--config", DEMO, "--ckpt_path", "last")
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0"]
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["train/loss"].notna().sum() == 2  # fit rows kept, test rows appended
    first, second = metrics["test/acc"].dropna()
    assert first == second and (run / "predictions.csv").read_text() == in_process
    info = json.loads((run / "run.json").read_text())
    assert set(info["seconds"]) == {"fit", "test"} and info["seed"] == 0
    assert info["versions"]["torch"] == torch.__version__

    capsys.readouterr()
    main(["summary", "demo"])
    table = capsys.readouterr().out
    assert "test/acc" in table and "version_0" in table


def test_test_with_best_uses_the_best_checkpoint(lab, workdir, caplog):
    lab("fit", "--config", DEMO, "--trainer.max_epochs=2", *SHORT, *SMALL)
    checkpoints = workdir / "lightning_logs" / "demo" / "version_0" / "checkpoints"
    (best,) = checkpoints.glob("best-epoch*.ckpt")
    caplog.clear()
    with caplog.at_level("INFO"):
        lab("test", "--config", DEMO, "--ckpt_path", "best", *SMALL)
    restored = [r.getMessage() for r in caplog.records if "Restoring states" in r.getMessage()]
    assert len(restored) == 1 and restored[0].endswith(best.name)


def test_a_new_fit_gets_a_new_version(lab, workdir):
    for _ in range(2):
        lab("fit", "--config", DEMO, "--trainer.max_epochs=1", *SHORT, *SMALL)
    assert (workdir / "lightning_logs" / "demo" / "version_1" / "metrics.csv").is_file()


def test_resume_from_last_continues_the_same_run_to_the_configured_epochs(lab, workdir):
    # The first fit stops after one epoch, as an interrupted run would; the resumed fit
    # must pick up at epoch 1 in the same folder, not start again in a new one.
    lab("fit", "--config", DEMO, "--trainer.max_epochs=1", *SHORT, *SMALL)
    lab("fit", "--config", DEMO, "--trainer.max_epochs=3", "--ckpt_path", "last", *SHORT, *SMALL)
    experiment = workdir / "lightning_logs" / "demo"
    assert sorted(p.name for p in experiment.iterdir()) == ["version_0"]
    run = experiment / "version_0"
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    assert last["epoch"] == 2 and last["global_step"] == 9
    metrics = pd.read_csv(run / "metrics.csv")
    train_epochs = metrics.loc[metrics["train/loss"].notna(), "epoch"].tolist()
    assert train_epochs == [0, 1, 2]
    info = json.loads((run / "run.json").read_text())
    assert info["epochs_completed"] == 3 and len(info["commands"]) == 2
    # The saved config repeats the whole run; it does not resume again.
    assert yaml.safe_load((run / "config.yaml").read_text())["ckpt_path"] is None


def test_the_saved_config_repeats_the_run(lab, workdir):
    # On the CPU: cuDNN's convolutions are not bit-for-bit repeatable.
    lab(
        "fit",
        "--config",
        DEMO,
        "--trainer.max_epochs=2",
        "--trainer.accelerator=cpu",
        *SHORT,
        *SMALL,
    )
    run = workdir / "lightning_logs" / "demo" / "version_0"
    lab("fit", "--config", run / "config.yaml")
    repeat = workdir / "lightning_logs" / "demo" / "version_1"
    saved, repeated = (yaml.safe_load((r / "config.yaml").read_text()) for r in (run, repeat))
    assert repeated == saved
    first, second = (pd.read_csv(r / "metrics.csv") for r in (run, repeat))
    pd.testing.assert_series_equal(first["train/loss"].dropna(), second["train/loss"].dropna())


def test_experiment_name_and_log_root_can_be_set(lab, workdir):
    lab(
        "fit",
        "--config",
        DEMO,
        "--experiment",
        "mine",
        "--log_root",
        "runs",
        "--trainer.max_epochs=1",
        *SHORT,
        *SMALL,
    )
    assert (workdir / "runs" / "mine" / "version_0" / "metrics.csv").is_file()


def run_failing(capsys, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--config", "experiments/nope.yaml"], "nope.yaml"),
        (["--config", str(DEMO), "--model.init_args.no_such_key=1"], "no_such_key"),
        (["--config", str(DEMO), "--trainer.max_epochs=many"], "max_epochs"),
        (["--config", str(DEMO), "--data=lab.data.NoSuchData"], "NoSuchData"),
        (["--config", str(DEMO), "--data.init_args.channels=2"], "channels must be 1 or 3"),
        (["--config", str(DEMO), "--run_name=job"], "run_name"),
    ],
    ids=["missing-config", "unknown-key", "wrong-type", "unknown-class", "bad-value", "run-name"],
)
def test_bad_input_gets_a_short_clear_error(args, expected, capsys, workdir):
    code, err = run_failing(capsys, "fit", *args)
    assert code not in (0, None)
    assert expected in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) <= 3, err


def test_ckpt_last_without_an_earlier_run_is_an_error(capsys, workdir):
    code, err = run_failing(capsys, "test", "--config", str(DEMO), "--ckpt_path", "last")
    assert code == 2
    assert "no earlier run" in err and "lab fit" in err


def test_summary_of_an_unknown_experiment_is_an_error(capsys, workdir):
    code, err = run_failing(capsys, "summary", "nothing-here")
    assert code == 2 and "no run of 'nothing-here'" in err


def test_the_grayscale_overlay_turns_an_rgb_experiment_grey(lab, workdir, capsys):
    overlay = REPO / "experiments" / "_base" / "grayscale.yaml"
    config = REPO / "experiments" / "q1-triplet.yaml"
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(config), "--config", str(overlay), "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["data"]["init_args"]["channels"] == 1
    assert printed["model"]["init_args"]["backbone"]["init_args"]["in_channels"] == 1
    data_args = FAKE_DATA[data_class(config)](workdir / "data") + fixture_overrides(config)
    lab("fit", "--config", config, "--config", overlay, "--trainer.fast_dev_run=true", *data_args)


def make_dry_run(target: str) -> list[str]:
    """The ``lab`` lines ``make -n <target>`` would run, a ``lab study`` line replaced by
    the lines of the study (``lab study --dry_run``)."""
    out = subprocess.run(
        ["make", "-n", *target.split()], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    lines = [line for line in out.splitlines() if "/lab " in line]
    return [step for line in lines for step in study_dry_run(line)]


def study_dry_run(line: str) -> list[str]:
    """``[line]``, or for a ``lab study FILE ...`` line the commands the study runs."""
    args = shlex.split(line)[1:]
    if args[:1] != ["study"]:
        return [line]
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        main(["study", str(REPO / args[1]), *args[2:], "--dry_run"])
    return printed.getvalue().replace(f"{REPO}/", "").splitlines()


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("q1-grayscale", ["q1-grayscale.yaml", "q1-triplet.yaml", "q1-center.yaml"]),
        ("demo", ["demo.yaml", "demo-triplet.yaml", "demo-center.yaml"]),
    ],
)
def test_make_targets_run_every_variant_under_its_own_name(target, expected):
    fits = [line for line in make_dry_run(target) if " fit --config " in line]
    for fragment in expected:
        assert any(fragment in line for line in fits), (fragment, fits)
    names = [line.split("--experiment ")[1].split()[0] for line in fits]
    assert len(set(names)) == len(names)  # each variant its own run folder
    assert sum("_base/grayscale.yaml" in line for line in fits) == (
        2 if target == "q1-grayscale" else 0
    )


SWEEP_FILES = sorted((REPO / "experiments" / "_sweeps").glob("*.yaml"))


@pytest.mark.parametrize("grid_file", SWEEP_FILES, ids=lambda p: p.stem)
def test_every_shipped_sweep_is_a_make_target_of_valid_settings(grid_file):
    (command,) = make_dry_run(grid_file.stem)
    config = REPO / "experiments" / f"{grid_file.stem}.yaml"
    assert f"sweep --config experiments/{config.name}" in command
    assert f"--grid_file experiments/_sweeps/{grid_file.name}" in command
    settings = expand(load_grid_file(grid_file))
    assert len(settings) >= 2
    check_settings(["--config", str(config)], settings)  # raises on a key that is not there


def test_the_sweep_grids_are_the_sources_values():
    def grid(name: str) -> list[dict]:
        return expand(load_grid_file(REPO / "experiments" / "_sweeps" / f"{name}.yaml"))

    weight = "model.init_args.losses.1.init_args.weight"  # the CenterLoss term's lambda
    assert grid("q1-center") == [{weight: w} for w in (0.1, 1)]
    margin = "model.init_args.losses.1.init_args.margin"
    assert [s[margin] for s in grid("q2-tiny50-triplet")] == [0.1, 0.2, 0.5, 1.0]
    assert len(grid("q2-tiny50-center")) == 9


CATALOGUE = REPO / "docs" / "experiments.md"


def catalogue_rows() -> list[tuple[list[str], list[str]]]:
    """(experiment ids, make targets) of each row of docs/experiments.md's catalogue."""
    section = CATALOGUE.read_text().split("## The catalogue", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if line.startswith("| `"):
            cells = line.split("|")
            ids = [part.strip("` ") for part in cells[1].split(",")]
            rows.append((ids, re.findall(r"`make ([\w-]+)`", cells[5])))
    return rows


def test_every_catalogued_experiment_has_a_yaml_and_a_make_target_that_runs_it():
    rows = catalogue_rows()
    ids = [experiment for row_ids, _ in rows for experiment in row_ids]
    assert len(ids) >= 25 and "stl10-svm" in ids and "contrastive-nn" in ids
    # Every experiment file is catalogued, and the other way round.
    assert sorted(ids) == sorted(p.stem for p in ALL_EXPERIMENTS)
    for row_ids, row_targets in rows:
        assert row_targets, row_ids
        ran = "\n".join(make_dry_run(" ".join(row_targets)))
        for experiment in row_ids:
            assert f"experiments/{experiment}.yaml" in ran, (experiment, row_targets)
