"""Logistic and softmax regression (``LinearModel`` with ``BinaryClassifier`` /
``Classifier``) against scikit-learn, and early stopping as the softmax experiments
configure it."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import EarlyStopping
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from lab.cli import main
from lab.errors import LabError
from lab.models import LinearModel
from lab.tasks import BinaryClassifier, Classifier
from tests.conftest import REPO

QUIET = {
    "accelerator": "cpu",
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
}


def _problem(num_classes: int, seed: int = 0):
    """A small, nearly linearly separable problem as 1 x 4 x 4 "images", standardised."""
    x, y = make_classification(
        n_samples=600,
        n_features=16,
        n_informative=6,
        n_redundant=0,
        n_classes=num_classes,
        n_clusters_per_class=1,
        class_sep=1.2,
        flip_y=0.02,
        random_state=seed,
    )
    scaler = StandardScaler().fit(x[:400])
    x = scaler.transform(x).astype(np.float32)
    return x[:400], y[:400], x[400:], y[400:]


def _fit(task: Classifier, x: np.ndarray, y: np.ndarray, epochs: int) -> np.ndarray:
    """Train ``task`` on CPU with a plain Trainer; return its predictions as a function."""
    L.seed_everything(0, verbose=False)
    images = torch.from_numpy(x).view(-1, 1, 4, 4)
    loader = DataLoader(TensorDataset(images, torch.from_numpy(y)), batch_size=32, shuffle=True)
    L.Trainer(max_epochs=epochs, **QUIET).fit(task, train_dataloaders=loader)
    task.eval()

    def predict(points: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return task(torch.from_numpy(points).view(-1, 1, 4, 4)).argmax(dim=1).numpy()

    return predict


def _sgd(params):
    return torch.optim.SGD(params, lr=0.1, momentum=0.9)


def test_logistic_regression_matches_scikit_learn():
    x, y, x_test, y_test = _problem(num_classes=2)
    reference = LogisticRegression(max_iter=1000).fit(x, y)
    backbone = LinearModel(in_channels=1, image_size=4)
    task = BinaryClassifier(backbone, num_classes=2, optimizer=_sgd, embedding_metrics=False)
    assert backbone.fc.out_features == 1  # one logit, not two
    predict = _fit(task, x, y, epochs=30)
    ours, theirs = predict(x_test), reference.predict(x_test)
    assert 0.75 < (theirs == y_test).mean()  # a problem where accuracy says something
    assert abs((ours == y_test).mean() - (theirs == y_test).mean()) <= 0.03
    assert (ours == theirs).mean() >= 0.95


def test_softmax_regression_matches_scikit_learn():
    x, y, x_test, y_test = _problem(num_classes=4)
    reference = LogisticRegression(max_iter=1000).fit(x, y)  # multinomial
    task = Classifier(
        LinearModel(in_features=16), num_classes=4, optimizer=_sgd, embedding_metrics=False
    )
    predict = _fit(task, x, y, epochs=30)
    ours, theirs = predict(x_test), reference.predict(x_test)
    assert 0.6 < (theirs == y_test).mean()
    assert abs((ours == y_test).mean() - (theirs == y_test).mean()) <= 0.04
    assert (ours == theirs).mean() >= 0.9


def test_binary_logits_are_zero_and_z_and_the_loss_is_binary_cross_entropy():
    torch.manual_seed(0)
    backbone = LinearModel(in_features=6)
    task = BinaryClassifier(backbone, embedding_metrics=False)
    x, y = torch.randn(8, 6), torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])
    logits = task(x)
    z = backbone.fc(x)[:, 0]
    assert logits.shape == (8, 2) and torch.equal(logits[:, 0], torch.zeros(8))
    assert torch.allclose(logits[:, 1], z)
    assert torch.allclose(logits.softmax(dim=1)[:, 1], torch.sigmoid(z), atol=1e-6)
    expected = -(y * F.logsigmoid(z) + (1 - y) * F.logsigmoid(-z)).mean()
    assert torch.allclose(task.loss(logits, y), expected, atol=1e-6)
    # ... which is also two-class cross-entropy on [0, z], label smoothing included.
    assert torch.allclose(task.loss(logits, y), F.cross_entropy(logits, y), atol=1e-6)
    task.label_smoothing = 0.2
    smoothed = F.cross_entropy(logits, y, label_smoothing=0.2)
    assert torch.allclose(task.loss(logits, y), smoothed, atol=1e-6)


def test_binary_classifier_refuses_other_than_two_classes():
    with pytest.raises(LabError, match="exactly 2 classes"):
        BinaryClassifier(LinearModel(in_features=4), num_classes=10)


# -- early stopping as the experiments configure it --------------------------------------


def early_stopping_of(experiment: str, capsys) -> dict:
    """The ``early_stopping`` section of an experiment as the ``lab`` CLI resolves it
    (the project's defaults with the YAML's values on top)."""
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(REPO / "experiments" / experiment), "--print_config"])
    return yaml.safe_load(capsys.readouterr().out)["early_stopping"]


class Scripted(L.LightningModule):
    """Logs a given ``val/acc`` at each epoch's validation; trains nothing of note."""

    def __init__(self, values: list[float]) -> None:
        super().__init__()
        self.values = values
        self.weight = nn.Parameter(torch.zeros(1))
        self.validated: list[int] = []

    def training_step(self, batch, batch_idx):
        return (self.weight - 1).pow(2).sum()

    def validation_step(self, batch, batch_idx):
        self.validated.append(self.current_epoch)
        self.log("val/acc", self.values[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def _loader(self) -> DataLoader:
        return DataLoader(TensorDataset(torch.zeros(2, 1)), batch_size=2)  # one batch

    train_dataloader = val_dataloader = _loader


def run_scripted(config: dict, values: list[float]) -> tuple[EarlyStopping, Scripted]:
    stopping = EarlyStopping(**config)
    module = Scripted(values)
    trainer = L.Trainer(
        max_epochs=len(values), callbacks=[stopping], num_sanity_val_steps=0, **QUIET
    )
    trainer.fit(module)
    return stopping, module


def test_logistic_run_stops_once_val_acc_passes_the_threshold(capsys, workdir):
    config = early_stopping_of("softmax-logistic.yaml", capsys)
    assert config["monitor"] == "val/acc" and config["mode"] == "max"
    assert config["stopping_threshold"] == 0.8 and config["patience"] >= 10
    # Still improving, so only the threshold can stop it: 0.80 is not past 0.8, 0.81 is.
    values = [0.55, 0.70, 0.78, 0.80, 0.81, 0.83, 0.85, 0.86]
    stopping, module = run_scripted(config, values)
    assert stopping.stopped_epoch == 4
    assert module.validated == [0, 1, 2, 3, 4]


def test_softmax_run_stops_after_patience_epochs_without_improvement(capsys, workdir):
    config = early_stopping_of("softmax-multiclass.yaml", capsys)
    assert config["monitor"] == "val/acc" and config["mode"] == "max"
    assert config.get("stopping_threshold") is None
    patience = config["patience"]
    assert patience == 5
    # Best at epoch 2; equal values are no improvement; the late jump is never reached.
    values = [0.20, 0.24, 0.26] + [0.26, 0.25] * patience + [0.40]
    stopping, module = run_scripted(config, values)
    assert stopping.stopped_epoch == 2 + patience
    assert module.validated == list(range(3 + patience))
