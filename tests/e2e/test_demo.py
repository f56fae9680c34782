"""The demo with its own settings: what `make demo` promises, checked end to end."""

import pandas as pd
import pytest

from tests.conftest import REPO


def fit_and_test(lab, workdir, name: str) -> pd.Series:
    """Fit and test experiments/<name>.yaml; the last value of every logged metric."""
    config = REPO / "experiments" / f"{name}.yaml"
    lab("fit", "--config", config)
    lab("test", "--config", config, "--ckpt_path", "last")
    run = workdir / "lightning_logs" / name / "version_0"
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["epoch"].max() == 14  # the configured 15 epochs ran
    assert len(pd.read_csv(run / "tsne.csv")) == 360  # every test image embedded
    return metrics.ffill().iloc[-1]


@pytest.mark.slow
def test_demo_cross_entropy_reaches_95_percent_test_accuracy(lab, workdir):
    last = fit_and_test(lab, workdir, "demo")
    assert last["test/acc"] >= 0.95, f"demo test accuracy {last['test/acc']:.4f} < 0.95"
    assert last["test/knn_acc"] >= 0.95, f"demo kNN accuracy {last['test/knn_acc']:.4f} < 0.95"


@pytest.mark.slow
def test_demo_triplet_reaches_95_percent_by_class_centre_and_by_knn(lab, workdir):
    last = fit_and_test(lab, workdir, "demo-triplet")
    # demo-triplet's test/acc (predict: nearest_centre) is the nearest-class-centre accuracy.
    assert last["test/acc"] == pytest.approx(last["test/centroid_acc"])
    for key in ("test/acc", "test/knn_acc"):
        assert last[key] >= 0.95, f"demo-triplet {key} {last[key]:.4f} < 0.95"
    assert last["test/precision_at_1"] >= 0.95


@pytest.mark.slow
def test_demo_center_reaches_95_percent_and_pulls_features_to_centres(lab, workdir):
    last = fit_and_test(lab, workdir, "demo-center")
    for key in ("test/acc", "test/knn_acc", "test/centroid_acc"):
        assert last[key] >= 0.95, f"demo-center {key} {last[key]:.4f} < 0.95"
