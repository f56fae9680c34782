"""``lab svm``: SVMs on CNN features and raw-score evaluation files (the feature cache:
test_features.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import make_blobs
from sklearn.metrics import confusion_matrix, f1_score, roc_auc_score, roc_curve
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler, label_binarize
from sklearn.svm import SVC

import lab.commands.svm
from lab.callbacks.evaluation import write_evaluation
from lab.cli import main
from lab.commands.svm import (
    SCALERS,
    best_row,
    evaluate,
    expand_settings,
    make_pipeline,
    run_svm,
    to_markdown,
)
from lab.data.fakes.stl10 import write_stl10
from lab.errors import LabError
from lab.runs.stats import wilson_interval
from tests.conftest import REPO

CONFIG = REPO / "experiments" / "stl10-svm.yaml"
PNG = b"\x89PNG\r\n\x1a\n"
NAMES = ["a", "b", "c", "d"]
EVALUATION_FILES = [
    "auc.csv",
    "confusion_matrix.csv",
    "confusion_matrix.png",
    "per_class_accuracy.csv",
    "per_class_accuracy.png",
    "roc.csv",
    "roc.png",
]
PER_SETTING = sorted([*EVALUATION_FILES, "intervals.csv", "predictions.csv"])


def blobs(seed: int = 0, shift: float = 0.0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Separable 4-class features split 60 / 30 / 30; ``shift`` moves val and test."""
    x, y = make_blobs(
        n_samples=120, n_features=6, centers=4, cluster_std=1.0, center_box=(-8, 8),
        random_state=seed,
    )  # fmt: skip
    x = (x + 20.0).astype(np.float32)  # away from 0: the scalers have something to do
    order = np.argsort(np.arange(120) % 4, kind="stable")  # interleave for equal shares
    x, y = x[order], y[order]
    parts = {"train": slice(0, 60), "val": slice(60, 90), "test": slice(90, 120)}
    out = {}
    for split, rows in parts.items():
        offset = 0.0 if split == "train" else shift
        out[split] = (x[rows] + offset, y[rows].astype(np.int64))
    return out


def reference_pipeline(kernel: str, scaler: str) -> Pipeline:
    """The same SVM built straight from scikit-learn, predicting by the ovr arg-max."""
    scale = {"none": "passthrough", "standard": StandardScaler(), "minmax": MinMaxScaler()}
    svc = SVC(kernel=kernel, decision_function_shape="ovr", break_ties=True, random_state=0)
    return Pipeline([("scale", scale[scaler]), ("svm", svc)])


# -- fitting, evaluating, the tables ---------------------------------------------------------


def test_every_kernel_and_scaler_separates_blobs_and_writes_every_file(tmp_path: Path):
    data = blobs()
    settings = expand_settings(["penultimate"], ["rbf", "linear", "poly"], SCALERS)
    table = run_svm({"penultimate": data}, NAMES, settings, tmp_path)

    assert len(table) == 9
    assert list(table.columns) == [
        "layer", "kernel", "scaler", "n_train", "val_acc", "test_acc", "test_acc_low",
        "test_acc_high", "test_macro_f1", "test_macro_f1_low", "test_macro_f1_high",
        "test_auc_macro", "fit_seconds", "predict_seconds",
    ]  # fmt: skip
    assert (table["val_acc"] >= 0.95).all() and (table["test_acc"] >= 0.95).all()
    assert (table["n_train"] == 60).all()
    x_test, y_test = data["test"]
    for setting, (_, row) in zip(settings, table.iterrows(), strict=True):
        reference = reference_pipeline(setting.kernel, setting.scaler).fit(*data["train"])
        predicted = reference.predict(x_test)
        assert row["test_acc"] == pytest.approx(np.mean(predicted == y_test))
        assert row["val_acc"] == pytest.approx(reference.score(*data["val"]))
        assert row["test_macro_f1"] == pytest.approx(f1_score(y_test, predicted, average="macro"))
        folder = tmp_path / setting.name
        assert sorted(p.name for p in folder.iterdir()) == PER_SETTING
        matrix = pd.read_csv(folder / "confusion_matrix.csv", index_col=0)
        assert np.array_equal(matrix.to_numpy(), confusion_matrix(y_test, predicted))
        auc = pd.read_csv(folder / "auc.csv")
        scores = reference.decision_function(x_test)
        expected = roc_auc_score(label_binarize(y_test, classes=range(4)), scores, average=None)
        assert auc["auc"].iloc[:4].to_numpy() == pytest.approx(expected)
        assert row["test_auc_macro"] == pytest.approx(expected.mean())
        assert (folder / "roc.png").read_bytes()[:8] == PNG
        written = pd.read_csv(folder / "predictions.csv")  # per image, from the same scores
        assert np.array_equal(written["prediction"], predicted)
        assert np.mean(written["prediction"] == written["target"]) == pytest.approx(row["test_acc"])
        low, high = wilson_interval(int(round(row["test_acc"] * 30)), 30)
        assert (row["test_acc_low"], row["test_acc_high"]) == pytest.approx((low, high))

    saved = pd.read_csv(tmp_path / "svm.csv")
    assert saved[["layer", "kernel", "scaler"]].equals(table[["layer", "kernel", "scaler"]])
    assert np.allclose(saved["test_acc"], table["test_acc"], atol=1e-5)
    markdown = (tmp_path / "svm.md").read_text().splitlines()
    marked = [line for line in markdown if "best (val)" in line]
    best = table.iloc[int(table["val_acc"].to_numpy().argmax())]
    assert len(marked) == 1
    assert [c.strip() for c in marked[0].split("|")[2:5]] == list(
        best[["layer", "kernel", "scaler"]]
    )
    assert (tmp_path / "svm.png").read_bytes()[:8] == PNG
    assert not list(tmp_path.rglob("*.tmp"))


def test_grid_values_get_columns_and_folders(tmp_path: Path):
    data = blobs(seed=3)
    settings = expand_settings(["penultimate"], ["linear"], ["standard"], {"C": [0.001, 1.0]})
    table = run_svm({"penultimate": data}, NAMES, settings, tmp_path, svm={"C": 5.0})
    assert table["C"].tolist() == [0.001, 1.0]  # the grid overrides svm's C
    assert [s.name for s in settings] == [
        "penultimate-linear-standard-C=0.001",
        "penultimate-linear-standard-C=1.0",
    ]
    for setting in settings:
        assert sorted(p.name for p in (tmp_path / setting.name).iterdir()) == PER_SETTING
    reference = [
        make_pipeline("linear", "standard", C=c).fit(*data["train"]).score(*data["val"])
        for c in (0.001, 1.0)
    ]
    assert table["val_acc"].tolist() == pytest.approx(reference)
    header = (tmp_path / "svm.md").read_text().splitlines()[0]
    assert [c.strip() for c in header.split("|")[1:6]] == ["best", "layer", "kernel", "scaler", "C"]


def test_the_best_setting_is_chosen_by_val_never_by_test():
    table = pd.DataFrame(
        {
            "layer": ["penultimate"] * 3,
            "kernel": ["rbf", "linear", "poly"],
            "scaler": ["none"] * 3,
            "val_acc": [0.5, 0.9, 0.9],
            "test_acc": [0.99, 0.1, 0.5],
            "test_acc_low": [0.9, 0.05, float("nan")],
            "test_acc_high": [1.0, 0.2, float("nan")],
        }
    )
    assert best_row(table) == 1  # the first of the equal val accuracies
    rows = to_markdown(table).splitlines()[2:]
    assert [("best (val)" in row) for row in rows] == [False, True, False]
    test_cells = [row.split("|")[-2].strip() for row in rows]
    assert test_cells == ["0.9900 [0.9000, 1.0000]", "0.1000 [0.0500, 0.2000]", "0.5000"]


def test_the_scaler_is_fitted_on_the_training_features_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    data = blobs(shift=5.0)  # val and test far from the training mean
    x_train, y_train = data["train"]
    x_test, y_test = data["test"]
    pipeline = make_pipeline("linear", "standard").fit(x_train, y_train)
    mean = pipeline["scale"].mean_.copy()
    assert np.allclose(mean, x_train.mean(axis=0), rtol=1e-5)
    assert not np.allclose(mean, x_test.mean(axis=0), rtol=1e-2)

    def refuse(*args, **kwargs):
        raise AssertionError("evaluation must not fit anything")

    for cls, name in [
        (Pipeline, "fit"), (Pipeline, "fit_transform"), (Pipeline, "fit_predict"),
        (StandardScaler, "fit"), (StandardScaler, "partial_fit"),
        (StandardScaler, "fit_transform"), (SVC, "fit"),
    ]:  # fmt: skip
        monkeypatch.setattr(cls, name, refuse)
    result = evaluate(pipeline, x_test, y_test, num_classes=4)
    assert np.array_equal(pipeline["scale"].mean_, mean)
    assert result.scores.shape == (30, 4)
    assert np.array_equal(result.predictions, result.scores.argmax(1))
    monkeypatch.undo()

    # run_svm fits every pipeline on exactly the training features, nothing else
    fitted_on: list[np.ndarray] = []
    original_fit = Pipeline.fit

    def spy(self, x, y=None, **kwargs):
        fitted_on.append(np.asarray(x))
        return original_fit(self, x, y, **kwargs)

    monkeypatch.setattr(Pipeline, "fit", spy)
    settings = expand_settings(["penultimate"], ["linear"], SCALERS)
    run_svm({"penultimate": data}, NAMES, settings, tmp_path)
    assert len(fitted_on) == 3
    assert all(x is x_train for x in fitted_on)


def test_an_unfitted_pipeline_or_a_missing_training_class_is_refused(tmp_path: Path):
    data = blobs()
    with pytest.raises(Exception, match="not fitted"):
        evaluate(make_pipeline("rbf", "none"), *data["test"], num_classes=4)
    x, y = data["train"]
    partial = dict(data, train=(x[y < 3], y[y < 3]))
    settings = expand_settings(["penultimate"], ["rbf"], ["none"])
    with pytest.raises(LabError, match="classes"):
        run_svm({"penultimate": partial}, NAMES, settings, tmp_path)


# -- raw scores in the evaluation files ------------------------------------------------------


def test_write_evaluation_takes_raw_scores_as_they_are(tmp_path: Path):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 200)
    scores = 3 * rng.normal(size=(200, 4)) + 2 * np.eye(4)[y]  # far outside [0, 1]
    auc = write_evaluation(tmp_path, scores, y, NAMES, softmax=False)
    expected = roc_auc_score(label_binarize(y, classes=range(4)), scores, average=None)
    assert auc["auc"].iloc[:4].to_numpy() == pytest.approx(expected, abs=1e-12)
    assert auc["auc"].iloc[-1] == pytest.approx(expected.mean(), abs=1e-12)
    assert pd.read_csv(tmp_path / "auc.csv")["auc"].iloc[:4].to_numpy() == pytest.approx(expected)
    roc = pd.read_csv(tmp_path / "roc.csv")
    for c in range(4):
        fpr, tpr, thresholds = roc_curve(y == c, scores[:, c])
        points = roc[roc["class"] == c]
        assert np.allclose(points["fpr"], fpr) and np.allclose(points["tpr"], tpr)
        assert np.allclose(points["threshold"].iloc[1:], thresholds[1:])  # in score units
    assert sorted(p.name for p in tmp_path.iterdir()) == EVALUATION_FILES
    # the softmax of these scores ranks the samples of a class differently
    softmaxed = write_evaluation(None, scores, y, NAMES)
    assert not np.allclose(softmaxed["auc"].iloc[:4], expected, atol=1e-4)


# -- the command --------------------------------------------------------------------------


def _arguments(root: Path, *extra: str) -> list[str]:
    return [
        "svm", "--config", str(CONFIG),
        "--data.init_args.verify=false", f"--data.init_args.root={root}",
        "--data.init_args.image_size=32", "--data.init_args.num_workers=0",
        "--backbone.init_args.depth=18", "--backbone.init_args.weights=null",
        "--kernels=[linear]", "--scalers=[standard]", *extra,
    ]  # fmt: skip


def test_lab_svm_end_to_end_on_the_stl10_fixture(
    workdir: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(workdir / "cache"))  # a cache root of its own
    root = workdir / "data"
    write_stl10(root, per_class_train=10)
    main(_arguments(root, "--max_train=50"))
    run = workdir / "lightning_logs" / "stl10-svm" / "version_0"
    table = pd.read_csv(run / "svm.csv")
    assert table["layer"].tolist() == ["penultimate", "logits"]
    assert (table["n_train"] == 50).all()
    assert table["val_acc"].between(0, 1).all() and table["test_acc"].between(0, 1).all()
    for name in ("penultimate-linear-standard", "logits-linear-standard"):
        assert sorted(p.name for p in (run / name).iterdir()) == PER_SETTING
    assert (run / "svm.png").read_bytes()[:8] == PNG
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["experiment"] == "stl10-svm"
    assert config["backbone"]["init_args"]["num_classes"] == 1000
    features = workdir / "cache" / "lab" / "features"  # under XDG_CACHE_HOME, not the data root
    assert config["cache_dir"] == str(features) and not (root / "cache").exists()
    printed = capsys.readouterr().out
    assert (
        "best (val)" in printed and f"svm: {Path('lightning_logs/stl10-svm/version_0')}" in printed
    )
    assert len(list(features.glob("*.npz"))) == 6  # 2 layers x 3 splits

    def no_extraction(*args, **kwargs):
        raise AssertionError("features should come from the cache")

    monkeypatch.setattr(lab.commands.svm, "extract_layers", no_extraction)
    main(_arguments(root, "--max_train=50", "--kernels=[rbf]"))
    again = pd.read_csv(workdir / "lightning_logs" / "stl10-svm" / "version_1" / "svm.csv")
    assert again["kernel"].tolist() == ["rbf", "rbf"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--kernels=[rbf,cubic]"], "kernels: unknown cubic; expected some of rbf, linear"),
        (["--scalers=[robust]"], "scalers: unknown robust"),
        (["--layers=[conv5]"], "layers: unknown conv5"),
        (["--svm={gama: 1}"], "svm.gama is not an SVC parameter"),
        (["--grid={C: [-1]}"], "SVC({'C': -1"),
        (["--backbone.init_args.depth=19"], "depth"),
        (["missing"], "stl10_binary not found"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(
    workdir: Path, capsys: pytest.CaptureFixture, extra: list[str], message: str
):
    root = workdir / "data"
    if extra != ["missing"]:
        write_stl10(root, per_class_train=4)
    else:
        root.mkdir()
        extra = []
    with pytest.raises(SystemExit) as exit_info:
        main(_arguments(root, *extra))
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lab: error: ")
    assert message in lines[0]
    assert not (workdir / "lightning_logs").exists()  # no run folder for a refused run
