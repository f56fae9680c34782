"""The evaluation callbacks: confusion matrix, per-class accuracy, ROC/AUC (against
scikit-learn), in a real run and on fixed scores."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from sklearn.metrics import confusion_matrix, recall_score, roc_auc_score, roc_curve

from lab.callbacks.evaluation import (
    INDEX_NAME,
    TestEvaluation,
    auc_table,
    confusion_table,
    per_class_table,
    plot_confusion,
    plot_per_class,
    plot_roc,
    roc_table,
)
from lab.errors import LabError
from tests.callbacks import NAMES, PNG, Data, classifier, quiet_trainer


def fixed_scores(n: int = 300, classes: int = 4, present: int | None = None, seed: int = 0):
    """Logits with some signal (and ties, from rounding) and targets in ``[0, present)``."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, present or classes, n)
    logits = rng.normal(size=(n, classes)) + 1.5 * np.eye(classes)[targets]
    return np.round(logits, 1).astype(np.float32), targets


def softmax(logits: np.ndarray) -> np.ndarray:
    return torch.from_numpy(logits).float().softmax(1).numpy()


# -- confusion matrix and per-class accuracy ---------------------------------------------


def test_confusion_table_equals_sklearn_with_class_names_on_both_axes():
    logits, targets = fixed_scores()
    table = confusion_table(logits, targets, NAMES)
    expected = confusion_matrix(targets, logits.argmax(1), labels=range(4))
    assert np.array_equal(table.to_numpy(), expected)
    assert table.index.name == INDEX_NAME
    assert list(table.index) == NAMES and list(table.columns) == NAMES
    assert table.to_numpy().dtype == np.int64


def test_per_class_accuracy_equals_sklearn_recall_and_is_nan_without_samples():
    logits, targets = fixed_scores(present=3)
    table = per_class_table(logits, targets, NAMES)
    assert list(table.columns) == ["class", "class_name", "accuracy", "support"]
    expected = recall_score(
        targets, logits.argmax(1), labels=range(4), average=None, zero_division=np.nan
    )
    assert np.allclose(table["accuracy"], expected, equal_nan=True)
    assert np.isnan(table["accuracy"].iloc[3])
    assert table["support"].tolist() == np.bincount(targets, minlength=4).tolist()
    assert table["class_name"].tolist() == NAMES


# -- ROC and AUC ---------------------------------------------------------------------------


def test_auc_equals_sklearn_per_class_and_macro():
    logits, targets = fixed_scores()
    probabilities = softmax(logits)
    table = auc_table(logits, targets, NAMES)
    assert list(table.columns) == ["class", "class_name", "auc"]
    assert table["class"].tolist() == [0, 1, 2, 3, -1]
    assert table["class_name"].tolist() == [*NAMES, "macro"]
    for c in range(4):
        expected = roc_auc_score(targets == c, probabilities[:, c])
        assert table["auc"].iloc[c] == pytest.approx(expected, abs=1e-6)
    macro = roc_auc_score(targets, probabilities, multi_class="ovr", average="macro")
    assert table["auc"].iloc[-1] == pytest.approx(macro, abs=1e-6)


@pytest.mark.parametrize("drop_intermediate", [False, True])
def test_roc_points_equal_sklearn_roc_curve(drop_intermediate: bool):
    logits, targets = fixed_scores()
    probabilities = softmax(logits)
    table = roc_table(logits, targets, NAMES, drop_intermediate=drop_intermediate)
    assert list(table.columns) == ["class", "class_name", "fpr", "tpr", "threshold"]
    for c in range(4):
        points = table[table["class"] == c]
        assert (points["class_name"] == NAMES[c]).all()
        fpr, tpr, thresholds = roc_curve(
            targets == c, probabilities[:, c], drop_intermediate=drop_intermediate
        )
        assert len(points) == len(fpr)
        assert np.allclose(points["fpr"], fpr, atol=1e-7)
        assert np.allclose(points["tpr"], tpr, atol=1e-7)
        assert np.isinf(points["threshold"].iloc[0]) and np.isinf(thresholds[0])
        assert np.allclose(points["threshold"].iloc[1:], thresholds[1:], atol=1e-7)
        area = np.trapezoid(points["tpr"], points["fpr"])
        assert area == pytest.approx(roc_auc_score(targets == c, probabilities[:, c]), abs=1e-6)
    # Ties (rounded logits) make fewer points than samples; dropping keeps only corners.
    assert len(table) < 4 * (len(targets) + 1)


def test_intermediate_points_lie_on_the_kept_curve():
    logits, targets = fixed_scores(n=500)
    full = roc_table(logits, targets, NAMES, drop_intermediate=False)
    kept = roc_table(logits, targets, NAMES)
    assert len(kept) < len(full)
    for c in range(4):
        a, b = full[full["class"] == c], kept[kept["class"] == c]
        assert set(zip(b["fpr"], b["tpr"], strict=True)) <= set(
            zip(a["fpr"], a["tpr"], strict=True)
        )
        # Every full point on the piecewise-linear kept curve (a monotone staircase with
        # vertical and horizontal runs: interpolate along the curve's arc).
        arc_b = np.r_[0, np.cumsum(np.hypot(np.diff(b["fpr"]), np.diff(b["tpr"])))]
        arc_a = np.r_[0, np.cumsum(np.hypot(np.diff(a["fpr"]), np.diff(a["tpr"])))]
        assert arc_a[-1] == pytest.approx(arc_b[-1], abs=1e-9)  # same length: same path
        assert np.allclose(np.interp(arc_a, arc_b, b["fpr"]), a["fpr"], atol=1e-9)
        assert np.allclose(np.interp(arc_a, arc_b, b["tpr"]), a["tpr"], atol=1e-9)


def test_an_absent_class_has_no_curve_nan_auc_and_no_part_in_the_macro_auc():
    logits, targets = fixed_scores(present=3)
    probabilities = softmax(logits)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torchmetrics' warnings about it are handled
        roc = roc_table(logits, targets, NAMES)
        auc = auc_table(logits, targets, NAMES)
    assert sorted(set(roc["class"])) == [0, 1, 2]
    assert np.isnan(auc["auc"].iloc[3])
    expected = [roc_auc_score(targets == c, probabilities[:, c]) for c in range(3)]
    assert auc["auc"].iloc[:3].to_numpy() == pytest.approx(expected, abs=1e-6)
    assert auc["auc"].iloc[-1] == pytest.approx(np.mean(expected), abs=1e-6)


def test_a_single_class_present_has_no_roc_at_all():
    logits, _ = fixed_scores(n=20)
    targets = np.zeros(20, dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert roc_table(logits, targets, NAMES).empty
        assert auc_table(logits, targets, NAMES)["auc"].isna().all()


@pytest.mark.parametrize(
    ("logits", "targets", "names", "match"),
    [
        (np.zeros((5, 4)), np.zeros(4, dtype=int), NAMES, "shapes"),
        (np.zeros(5), np.zeros(5, dtype=int), NAMES, "shapes"),
        (np.zeros((5, 4)), np.zeros(5, dtype=int), NAMES[:3], "class name"),
        (np.zeros((5, 4)), np.full(5, 4), NAMES, r"\[0, 4\)"),
        (np.zeros((5, 4)), np.full(5, -1), NAMES, r"\[0, 4\)"),
        (np.zeros((0, 4)), np.zeros(0, dtype=int), NAMES, "at least one"),
    ],
)
def test_bad_input_is_refused_with_a_lab_error(logits, targets, names, match):
    for function in (confusion_table, per_class_table, roc_table, auc_table):
        with pytest.raises(LabError, match=match):
            function(logits, targets, names)


# -- figures -------------------------------------------------------------------------------


def test_confusion_figure_has_counts_and_rows_normalised_to_one():
    logits, targets = fixed_scores(present=3)
    table = confusion_table(logits, targets, NAMES)
    figure = plot_confusion(table)
    counts_ax, share_ax = (ax for ax in figure.axes if ax.images and ax.get_title())
    assert np.array_equal(np.asarray(counts_ax.images[0].get_array()), table.to_numpy())
    share = np.asarray(share_ax.images[0].get_array())
    assert np.allclose(share[:3].sum(axis=1), 1.0) and (share[3] == 0).all()
    assert [t.get_text() for t in counts_ax.get_xticklabels()] == NAMES
    assert len(counts_ax.texts) == 16  # annotated: 4 x 4 cells
    single = plot_confusion(table, normalize=False)
    assert sum(1 for ax in single.axes if ax.images and ax.get_title()) == 1


def test_per_class_figure_draws_the_overall_accuracy():
    logits, targets = fixed_scores()
    figure = plot_per_class(per_class_table(logits, targets, NAMES))
    (line,) = figure.axes[0].get_lines()
    overall = (logits.argmax(1) == targets).mean()
    assert line.get_ydata()[0] == pytest.approx(overall)
    heights = [bar.get_height() for bar in figure.axes[0].patches]
    assert np.allclose(heights, per_class_table(logits, targets, NAMES)["accuracy"])


def test_roc_figure_legend_names_classes_with_auc_and_is_left_out_beyond_20():
    logits, targets = fixed_scores(present=3)
    figure = plot_roc(roc_table(logits, targets, NAMES), auc_table(logits, targets, NAMES))
    labels = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    auc = auc_table(logits, targets, NAMES)["auc"]
    assert labels[:3] == [f"{NAMES[c]} (AUC {auc[c]:.3f})" for c in range(3)]
    assert labels[-1] == "chance" and len(labels) == 4
    logits, targets = fixed_scores(n=400, classes=25)
    names = [f"c{i}" for i in range(25)]
    many = plot_roc(roc_table(logits, targets, names), auc_table(logits, targets, names))
    assert many.axes[0].get_legend() is None
    assert len(many.axes[0].get_lines()) == 26


# -- the callback in a real run ------------------------------------------------------------


class Recorder(L.Callback):
    """Keeps the test logits and targets the task returned, to check the files against."""

    def __init__(self) -> None:
        self.logits: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.logits.append(outputs["logits"])
        self.targets.append(outputs["targets"])


def test_callback_writes_every_file_tensorboard_figures_and_the_macro_auc(tmp_path: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    csv_logger = CSVLogger(tmp_path, name="csv")
    tensorboard = TensorBoardLogger(tmp_path, name="tb")
    recorder = Recorder()
    trainer = quiet_trainer(
        tmp_path,
        [TestEvaluation(), recorder],
        logger=[csv_logger, tensorboard],  # the figures go to the first that takes them
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
    )
    data, model = Data(), classifier()
    trainer.fit(model, datamodule=data)
    (results,) = trainer.test(model, datamodule=data, verbose=False)
    run = Path(trainer.log_dir)
    assert run == Path(csv_logger.log_dir)

    logits = torch.cat(recorder.logits).numpy()
    targets = torch.cat(recorder.targets).numpy()
    probabilities = softmax(logits)
    assert len(targets) == 48

    matrix = pd.read_csv(run / "confusion_matrix.csv", index_col=0)
    assert matrix.index.name == INDEX_NAME
    assert list(matrix.index) == NAMES and list(matrix.columns) == NAMES
    expected = confusion_matrix(targets, logits.argmax(1), labels=range(4))
    assert np.array_equal(matrix.to_numpy(), expected)

    per_class = pd.read_csv(run / "per_class_accuracy.csv")
    assert per_class["support"].tolist() == [16, 16, 16, 0]
    recall = recall_score(
        targets, logits.argmax(1), labels=range(4), average=None, zero_division=np.nan
    )
    assert np.allclose(per_class["accuracy"], recall, equal_nan=True)
    assert np.isnan(per_class["accuracy"].iloc[3])

    auc = pd.read_csv(run / "auc.csv")
    expected_auc = [roc_auc_score(targets == c, probabilities[:, c]) for c in range(3)]
    assert auc["auc"].iloc[:3].to_numpy() == pytest.approx(expected_auc, abs=1e-6)
    assert np.isnan(auc["auc"].iloc[3]) and auc["class_name"].iloc[-1] == "macro"
    assert auc["auc"].iloc[-1] == pytest.approx(np.mean(expected_auc), abs=1e-6)
    assert results["test/auc_macro"] == pytest.approx(np.mean(expected_auc), abs=1e-6)
    assert float(trainer.callback_metrics["test/auc_macro"]) == pytest.approx(
        np.mean(expected_auc), abs=1e-6
    )

    roc = pd.read_csv(run / "roc.csv")
    assert sorted(set(roc["class"])) == [0, 1, 2]
    for c in range(3):
        points = roc[roc["class"] == c]
        area = np.trapezoid(points["tpr"], points["fpr"])
        assert area == pytest.approx(expected_auc[c], abs=1e-6)

    for name in ("confusion_matrix", "per_class_accuracy", "roc"):
        assert (run / f"{name}.png").read_bytes()[:8] == PNG
    assert not list(run.glob(".*.tmp"))
    assert "test/auc_macro" in pd.read_csv(run / "metrics.csv").columns

    events = EventAccumulator(tensorboard.log_dir, size_guidance={"images": 0}).Reload()
    assert {"test/confusion_matrix", "test/per_class_accuracy", "test/roc"} <= set(
        events.Tags()["images"]
    )


def test_batches_without_logits_write_nothing(tmp_path: Path):
    callback = TestEvaluation()
    callback.on_test_epoch_start(None, None)
    callback.on_test_batch_end(
        None, None, {"features": torch.ones(2, 3), "targets": torch.zeros(2)}, None, 0
    )
    trainer = SimpleNamespace(world_size=1, is_global_zero=True, log_dir=str(tmp_path))
    callback.on_test_epoch_end(trainer, None)
    assert list(tmp_path.iterdir()) == []


def test_switched_off_parts_are_not_written(tmp_path: Path):
    switched_off = TestEvaluation(confusion_matrix=False, roc=False, predictions=False)
    trainer = quiet_trainer(tmp_path, [switched_off])
    model = classifier()
    trainer.test(model, datamodule=Data(), verbose=False)
    written = sorted(p.name for p in Path(trainer.log_dir).glob("*.*") if p.suffix != "")
    assert [n for n in written if not n.startswith("events")] == [
        "hparams.yaml",
        "per_class_accuracy.csv",
        "per_class_accuracy.png",
    ]
    assert "test/auc_macro" not in trainer.callback_metrics
