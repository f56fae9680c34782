"""``lab report``: two tiny real runs, their report, and runs that died half-way."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest
import torch

from lab.cli import main as lab_main
from lab.commands.report import (
    differing_settings,
    epoch_curves,
    find_runs,
    main,
    run_figures,
    run_ids,
    setting_names,
)
from lab.errors import LabError
from lab.runs.stats import wilson_interval
from tests.conftest import QUIET, REPO
from tests.helpers import short_fit

DEMO = REPO / "experiments" / "demo.yaml"
SHORT = short_fit(2, 3)
# Small batches, one small test batch and no reference pass: seconds, not minutes.
FAST = [
    "--trainer.num_sanity_val_steps=0",
    "--data.init_args.batch_size=16",
    "--trainer.limit_test_batches=0.2",
    "--data.init_args.eval_batch_size=64",
    "--model.init_args.embedding_metrics=false",
]
RUN_FILES = shutil.ignore_patterns("checkpoints", "events.out.*", "00000")


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder whose ``lightning_logs/`` holds two fitted and tested digits runs, ``demo``
    (lr 0.05) and ``demo-lr`` (lr 0.01); the tests run inside it."""
    folder = tmp_path_factory.mktemp("report")
    before, threads = Path.cwd(), torch.get_num_threads()
    # One thread: on a busy 2-core machine, two OpenMP threads run 10-30x slower.
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("LAB_LOGS", raising=False)
        patch.setenv("LAB_DATA", str(folder / "data"))
        os.chdir(folder)
        try:
            for extra in (
                [],
                ["--experiment", "demo-lr", "--model.init_args.optimizer.init_args.lr=0.01"],
            ):
                lab_main(["fit", "--config", str(DEMO), *SHORT, *FAST, *extra, *QUIET])
                lab_main(
                    ["test", "--config", str(DEMO), "--ckpt_path", "last", *FAST, *extra, *QUIET]
                )
            yield folder
        finally:
            os.chdir(before)
            torch.set_num_threads(threads)


@pytest.fixture
def inside(logs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run a test in the folder of the two runs, with a fresh output folder ``tmp_path``."""
    monkeypatch.chdir(logs)
    monkeypatch.delenv("LAB_LOGS", raising=False)
    return tmp_path


def referenced_images(report: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', report) + re.findall(r"!\[[^]]*\]\(([^)]+)\)", report)


def last_value(run: Path, column: str) -> float:
    return float(pd.read_csv(run / "metrics.csv")[column].dropna().iloc[-1])


def copy_run(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=RUN_FILES)
    return target


def test_report_of_two_runs(inside: Path, logs: Path, capsys: pytest.CaptureFixture):
    out = inside / "out"
    main(["--out", str(out)])
    assert capsys.readouterr().out.strip().endswith(f"report: {out / 'report.md'}")
    report = (out / "report.md").read_text()
    runs = {"demo/version_0": logs / "lightning_logs/demo/version_0"}
    runs["demo-lr/version_0"] = logs / "lightning_logs/demo-lr/version_0"
    for run_id in runs:
        assert f"| {run_id} " in report

    # The results table, as results.csv and in report.md, read back against metrics.csv.
    table = pd.read_csv(out / "results.csv").set_index("run")
    assert sorted(table.index) == sorted(runs)
    for run_id, run in runs.items():
        row = table.loc[run_id]
        assert row["status"] == "complete" and row["task"] == "Classifier"
        assert row["test/acc"] == pytest.approx(last_value(run, "test/acc"), abs=1e-9)
        assert row["test/acc_top5"] == pytest.approx(last_value(run, "test/acc_top5"), abs=1e-9)
        metrics = pd.read_csv(run / "metrics.csv")
        assert row["best val/acc"] == pytest.approx(metrics["val/acc"].max())
        assert row["epochs"] == 2 and row["max_epochs"] == 2
        assert f"| {last_value(run, 'test/acc'):.4f} " in report
    assert table.loc["demo/version_0", "lr"] == 0.05
    assert table.loc["demo-lr/version_0", "lr"] == 0.01
    assert table.loc["demo-lr/version_0", "experiment"] == "demo-lr"
    header = report.split("## Results")[1].split("\n|")[1]
    assert " lr " in header and "experiment" in header
    assert "test/loss" not in table.columns  # not a headline column of the report
    assert "## Notes" not in report  # nothing missing
    # Settings and metrics are two tables; test/acc carries its Wilson interval, read back
    # against predictions.csv; the two runs (same test images) are compared pairwise.
    assert report.index("### Settings") < report.index("### Metrics")
    for run_id, run in runs.items():
        right = pd.read_csv(run / "predictions.csv").eval("prediction == target")
        low, high = wilson_interval(int(right.sum()), len(right))
        assert table.loc[run_id, "test/acc low"] == pytest.approx(low)
        assert table.loc[run_id, "test/acc high"] == pytest.approx(high)
        acc = last_value(run, "test/acc")
        assert f"| {acc:.4f} [{low:.4f}, {high:.4f}] " in report
    paired = report.split("## Paired comparisons")[1].split("## Curves")[0]
    assert "demo/version_0" in paired and "demo-lr/version_0" in paired
    assert "McNemar p" in paired

    # Every image the report shows is in the out folder; the t-SNE plots are copies.
    images = referenced_images(report)
    assert images and all((out / image).is_file() for image in images)
    for run_id, run in runs.items():
        copied = f"figures/{run_id}/tsne.png"
        assert copied in images
        assert (out / copied).read_bytes() == (run / "tsne.png").read_bytes()
        assert f"figures/{run_id}/curves.png" in images
        assert matplotlib.image.imread(out / f"figures/{run_id}/curves.png").ndim == 3
    assert "comparison.png" in images
    assert matplotlib.image.imread(out / "comparison.png").ndim == 3
    # The order of the sections.
    order = [report.index(s) for s in ("## Results", "## Curves", "## Figures", "### tsne.png")]
    assert order == sorted(order)
    # The report folder can be moved: no absolute paths to images.
    assert not any(os.path.isabs(image) for image in images)


def test_targets_pick_the_runs(inside: Path, logs: Path):
    root = logs / "lightning_logs"
    # An experiment name: its newest version only.
    newer = copy_run(root / "demo" / "version_0", inside / "logs" / "demo" / "version_1")
    copy_run(root / "demo" / "version_0", inside / "logs" / "demo" / "version_0")
    assert find_runs(["demo"], inside / "logs") == [newer]
    # A run folder, an experiment folder, and a folder of runs (a sweep), recursively.
    sweep = inside / "sweeps" / "margin"
    for name in ("m-0.2", "m-0.1", "m-1.0"):
        copy_run(root / "demo-lr" / "version_0", sweep / name / "version_0")
    found = find_runs([str(sweep)], root)
    assert [p.parent.name for p in found] == ["m-0.1", "m-0.2", "m-1.0"]
    assert run_ids(found, root) == ["m-0.1/version_0", "m-0.2/version_0", "m-1.0/version_0"]
    both = find_runs([str(newer), str(root / "demo-lr"), str(newer)], root)
    assert both == [newer, root / "demo-lr" / "version_0"]  # named twice, reported once
    assert run_ids(find_runs([], root), root) == ["demo/version_0", "demo-lr/version_0"]

    out = inside / "out"
    main([str(sweep), "--out", str(out)])
    table = pd.read_csv(out / "results.csv")
    assert table["run"].tolist() == ["m-0.1/version_0", "m-0.2/version_0", "m-1.0/version_0"]


def test_a_folder_without_runs_is_a_clear_error(inside: Path, capsys: pytest.CaptureFixture):
    empty = inside / "empty" / "nested"
    empty.mkdir(parents=True)
    with pytest.raises(LabError, match=r"no runs found under .*empty: expected run folders"):
        main([str(inside / "empty"), "--out", str(inside / "out")])
    with pytest.raises(LabError, match="neither a folder nor an experiment"):
        main(["no-such-experiment", "--out", str(inside / "out")])
    with pytest.raises(LabError, match="no runs found under"):
        main(["--log_root", str(inside / "nothing"), "--out", str(inside / "out")])
    # Through the `lab` command: one line, no traceback.
    with pytest.raises(SystemExit) as exit_info:
        lab_main(["report", str(inside / "empty"), "--out", str(inside / "out")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "no runs found under" in err and "Traceback" not in err
    assert not (inside / "out" / "report.md").exists()


def test_runs_that_died_half_way_are_reported_as_far_as_they_go(
    inside: Path, logs: Path, capsys: pytest.CaptureFixture
):
    good = logs / "lightning_logs" / "demo" / "version_0"
    runs = inside / "runs"
    copy_run(good, runs / "good" / "version_0")
    (copy_run(good, runs / "no-metrics" / "version_0") / "metrics.csv").unlink()
    (copy_run(good, runs / "empty-metrics" / "version_0") / "metrics.csv").write_text("")
    truncated = copy_run(good, runs / "truncated" / "version_0") / "metrics.csv"
    truncated.write_text(truncated.read_text()[:-40])  # cut inside the test row
    no_test = copy_run(good, runs / "no-test" / "version_0") / "metrics.csv"
    metrics = pd.read_csv(no_test)
    fit_rows = metrics[metrics["train/loss"].notna() | metrics["val/loss"].notna()]
    fit_rows[[c for c in metrics if not c.startswith("test/")]].to_csv(no_test, index=False)
    (copy_run(good, runs / "no-info" / "version_0") / "run.json").unlink()
    (copy_run(good, runs / "bad-config" / "version_0") / "config.yaml").write_text("model: [\n")

    out = inside / "out"
    main([str(runs), "--out", str(out)])  # returns: exit status 0
    captured = capsys.readouterr()
    table = pd.read_csv(out / "results.csv").set_index("run")
    report = (out / "report.md").read_text()
    assert len(table) == 7

    status = table["status"].to_dict()
    assert status["good/version_0"] == "complete"
    assert status["no-metrics/version_0"] == "no metrics"
    assert status["empty-metrics/version_0"] == "no metrics"
    assert status["truncated/version_0"] == "truncated metrics, no test"
    assert status["no-test/version_0"] == "no test"
    assert status["no-info/version_0"] == "no run.json"
    assert status["bad-config/version_0"] == "bad config"

    # The good run is whole; the others keep what their files still hold.
    assert table.loc["good/version_0", "test/acc"] == pytest.approx(last_value(good, "test/acc"))
    assert pd.isna(table.loc["no-metrics/version_0", "test/acc"])
    assert table.loc["no-metrics/version_0", "epochs"] == 2  # from run.json
    assert table.loc["no-metrics/version_0", "lr"] == 0.05  # from config.yaml
    assert pd.isna(table.loc["truncated/version_0", "test/acc"])
    best = pd.read_csv(good / "metrics.csv")["val/acc"].max()
    assert table.loc["truncated/version_0", "best val/acc"] == pytest.approx(best)
    assert table.loc["no-test/version_0", "best val/acc"] == pytest.approx(best)
    assert pd.isna(table.loc["no-info/version_0", "fit seconds"])
    assert table.loc["no-info/version_0", "test/acc"] == pytest.approx(last_value(good, "test/acc"))
    assert pd.isna(table.loc["bad-config/version_0", "task"])
    assert table.loc["bad-config/version_0", "epochs"] == 2

    # A Notes list names each damaged run and what is missing; one warning line each.
    notes = report.split("## Notes")[1].split("## Curves")[0]
    assert "`good/version_0`" not in notes
    assert "`no-metrics/version_0` (no metrics): no metrics.csv" in notes
    assert "`no-test/version_0` (no test): no test metrics" in notes
    assert "`truncated/version_0`" in notes and "truncated" in notes
    assert "`bad-config/version_0` (bad config): config.yaml does not parse" in notes
    warnings = [line for line in captured.err.splitlines() if "warning" in line]
    assert len(warnings) == 6 and not any("good/version_0" in line for line in warnings)
    assert all((out / image).is_file() for image in referenced_images(report))
    assert (out / "figures" / "no-metrics" / "version_0" / "tsne.png").is_file()
    assert not (out / "figures" / "no-metrics" / "version_0" / "curves.png").exists()


def test_epoch_curves_take_each_epochs_train_and_val_rows_and_ignore_test_rows():
    metrics = pd.DataFrame(
        {
            "epoch": [0, 0, 1, 1, 0],
            "step": [2, 2, 5, 5, 0],
            "val/loss": [2.0, None, 1.5, None, None],
            "val/acc": [0.2, None, 0.4, None, None],
            "train/loss": [None, 2.5, None, 1.8, None],
            "train/acc": [None, 0.1, None, 0.3, None],
            "test/acc": [None, None, None, None, 0.9],
        }
    )
    curves = epoch_curves(metrics)
    expected = pd.DataFrame(
        {
            "train/loss": [2.5, 1.8],
            "val/loss": [2.0, 1.5],
            "train/acc": [0.1, 0.3],
            "val/acc": [0.2, 0.4],
        },
        index=pd.Index([0, 1], name="epoch"),
    )
    pd.testing.assert_frame_equal(curves, expected)
    assert epoch_curves(metrics[["epoch", "test/acc"]]).empty


def test_settings_are_the_config_values_that_differ_plus_lr_and_epochs():
    def config(lr: float, weight: float, root: str, experiment: str) -> dict:
        return {
            "seed_everything": 0,
            "experiment": experiment,
            "trainer": {"max_epochs": 15, "callbacks": [{"class_path": experiment}]},
            "model": {
                "class_path": "lab.tasks.CenterLossClassifier",
                "init_args": {
                    "center_weight": weight,
                    "optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": lr}},
                },
            },
            "data": {"init_args": {"root": root, "seed": 0}},
            "checkpoint": {"dirpath": root},
        }

    configs = [config(0.1, 0.01, "/a", "x"), config(0.1, 1.0, "/b", "y"), None]
    keys = differing_settings(configs)
    assert keys == [
        "model.init_args.optimizer.init_args.lr",
        "trainer.max_epochs",
        "model.init_args.center_weight",
    ]
    assert setting_names(keys) == {
        "model.init_args.optimizer.init_args.lr": "lr",
        "trainer.max_epochs": "max_epochs",
        "model.init_args.center_weight": "center_weight",
    }
    names = setting_names(["data.init_args.seed", "seed_everything", "model.init_args.seed"])
    assert names == {
        "data.init_args.seed": "data.seed",
        "seed_everything": "seed_everything",
        "model.init_args.seed": "model.seed",
    }
    assert setting_names(["model.init_args.backbone.class_path"]) == {
        "model.init_args.backbone.class_path": "backbone"
    }


def test_only_the_last_validation_tsne_is_shown(tmp_path: Path):
    for name in ("tsne_val_epoch002.png", "tsne_val_epoch010.png", "tsne.png", "other.png"):
        (tmp_path / name).write_bytes(b"png")
    (tmp_path / "activations_layer1.png").write_bytes(b"png")
    found = run_figures(tmp_path)
    assert found == {
        "tsne.png": tmp_path / "tsne.png",
        "tsne_val_epoch (last)": tmp_path / "tsne_val_epoch010.png",
        "activations_layer1.png": tmp_path / "activations_layer1.png",
    }


def test_a_loss_spanning_more_than_100x_is_drawn_on_a_log_axis():
    from matplotlib import pyplot as plt

    from lab.commands.report import log_scale_if_wide

    for values, scale in (([158415.0, 10.4, 1.4], "log"), ([2.3, 1.1, 0.4], "linear")):
        figure, axes = plt.subplots()
        axes.plot([0, 1, 2], values)
        log_scale_if_wide(axes)
        assert axes.get_yscale() == scale
        plt.close(figure)


def test_the_settings_say_the_objective_in_words_not_the_loss_list(tmp_path: Path):
    from lab.commands.report import Run, results_table
    from lab.commands.report.tables import settings_markdown

    def config(losses: list | None) -> dict:
        init_args = {"losses": losses, "label_smoothing": 0.1}
        return {"model": {"class_path": "lab.tasks.Classifier", "init_args": init_args}}

    center = {"class_path": "lab.losses.CenterLoss", "init_args": {"weight": 0.1, "lr": 0.5}}
    runs = [
        Run(path=tmp_path / "a", id="ce", config=config(None)),
        Run(
            path=tmp_path / "b",
            id="center",
            config=config([{"class_path": "lab.losses.CrossEntropy"}, center]),
        ),
    ]
    table = results_table(runs)
    assert table["objective"].tolist() == [
        "cross-entropy, label smoothing 0.1",
        "cross-entropy + 0.1 x center loss, label smoothing 0.1, centers' rate 0.5",
    ]
    assert "losses" not in table.columns  # not the JSON of the list
    settings = settings_markdown(table)
    assert "class_path" not in settings and "centers' rate 0.5 |" in settings
