"""The classification task: its test metrics against scikit-learn, training, the
optimizer's parameters, bad values, and the loss terms and prediction options."""

import lightning as L
import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, recall_score, top_k_accuracy_score
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from lab.errors import LabError
from lab.losses import BatchHardTripletLoss, CrossEntropy
from lab.models import resnet18
from lab.tasks import Classifier
from tests.helpers import quiet_trainer


class Data(L.LightningDataModule):
    """A fixed random batch set with class names, for checking metrics."""

    def __init__(self, n: int = 96, classes: int = 8) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 1, 8, 8, generator=g)
        self.y = torch.randint(0, classes, (n,), generator=g)
        self.class_names = [f"c{i}" for i in range(classes)]

    def test_dataloader(self):
        return DataLoader(TensorDataset(self.x, self.y), batch_size=20)

    predict_dataloader = test_dataloader


def trainer() -> L.Trainer:
    return L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)


def test_test_metrics_equal_sklearn_on_the_same_predictions():
    torch.manual_seed(0)
    data = Data()
    model = Classifier(resnet18(in_channels=1, small_input=True), num_classes=8)
    metrics = trainer().test(model, datamodule=data, verbose=False)[0]
    outputs = trainer().predict(model, datamodule=data)
    logits = torch.cat([o["logits"] for o in outputs]).numpy()
    y = data.y.numpy()
    preds = logits.argmax(1)

    assert metrics["test/acc"] == pytest.approx(accuracy_score(y, preds), abs=1e-6)
    top5 = top_k_accuracy_score(y, logits, k=5, labels=np.arange(8))
    assert metrics["test/acc_top5"] == pytest.approx(top5, abs=1e-6)
    recalls = recall_score(y, preds, average=None, labels=np.arange(8), zero_division=0)
    for i, recall in enumerate(recalls):
        assert metrics[f"test/class_acc/c{i}"] == pytest.approx(recall, abs=1e-6)
    f1 = f1_score(y, preds, average="macro", labels=np.arange(8), zero_division=0)
    assert metrics["test/macro_f1"] == pytest.approx(f1, abs=1e-6)
    loss = torch.nn.functional.cross_entropy(torch.from_numpy(logits), data.y)
    assert metrics["test/loss"] == pytest.approx(loss.item(), rel=1e-5)


def test_no_top5_for_five_classes_or_fewer():
    torch.manual_seed(0)
    model = Classifier(resnet18(in_channels=1, small_input=True), num_classes=5)
    metrics = trainer().test(model, datamodule=Data(classes=5), verbose=False)[0]
    assert "test/acc" in metrics and "test/acc_top5" not in metrics


class EpochLosses(L.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.losses.append(float(trainer.callback_metrics["train/loss"]))


def test_training_lowers_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    data = Data(n=32, classes=4)
    model = Classifier(
        resnet18(in_channels=1, small_input=True),
        num_classes=4,
        optimizer=lambda p: torch.optim.Adam(p, lr=1e-3),
    )
    loader = DataLoader(TensorDataset(data.x, data.y), batch_size=32)
    record = EpochLosses()
    quiet_trainer(max_epochs=15, callbacks=[record], limit_val_batches=0).fit(model, loader)
    assert len(record.losses) == 15
    assert record.losses[-1] < 0.2 * record.losses[0]


def test_optimizer_sees_only_trainable_parameters_and_scheduler_is_attached():
    backbone = resnet18(in_channels=1, small_input=True)
    for p in backbone.conv1.parameters():
        p.requires_grad = False
    model = Classifier(
        backbone,
        num_classes=3,
        optimizer=lambda p: torch.optim.SGD(p, lr=0.1),
        scheduler=lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=1),
        scheduler_interval="step",
    )
    config = model.configure_optimizers()
    params = config["optimizer"].param_groups[0]["params"]
    assert len(params) == sum(1 for p in model.parameters() if p.requires_grad)
    assert config["lr_scheduler"]["interval"] == "step"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 1}, "num_classes"),
        ({"num_classes": 3, "label_smoothing": 1.0}, "label_smoothing"),
        ({"num_classes": 3, "predict": "knn"}, "predict"),
        ({"num_classes": 3, "losses": [torch.nn.MSELoss()]}, "not a loss term"),
        ({"num_classes": 3, "losses": [CrossEntropy(), CrossEntropy()]}, "share a name"),
        ({"num_classes": 3, "losses": [BatchHardTripletLoss()], "predict": "head"}, "predict=head"),
    ],
)
def test_bad_values_raise(kwargs, message):
    with pytest.raises(LabError, match=message):
        Classifier(resnet18(), **kwargs)


def test_the_default_objective_is_cross_entropy_with_the_tasks_label_smoothing():
    torch.manual_seed(0)
    model = Classifier(
        resnet18(in_channels=1, small_input=True), num_classes=4, label_smoothing=0.2
    )
    (term,) = model.losses
    assert isinstance(term, CrossEntropy) and term.label_smoothing == 0.2
    features, y = torch.randn(6, 512), torch.arange(6) % 4
    logits = model.logits(features)
    expected = F.cross_entropy(logits, y, label_smoothing=0.2)
    torch.testing.assert_close(model.objective(features, logits, y), {"loss": expected})
    own = CrossEntropy(label_smoothing=0.05)
    Classifier(resnet18(), num_classes=4, losses=[own], label_smoothing=0.2)
    assert own.label_smoothing == 0.05  # a term's own smoothing wins


def test_predict_auto_chooses_the_head_only_when_a_term_uses_logits():
    head = Classifier(resnet18(), num_classes=4, losses=[CrossEntropy(), BatchHardTripletLoss()])
    assert head.predict == "head" and head.backbone.fc.out_features == 4 and head.means is None
    centre = Classifier(resnet18(), num_classes=4, losses=[BatchHardTripletLoss()])
    assert centre.predict == "nearest_centre" and isinstance(centre.backbone.fc, torch.nn.Identity)
    both = Classifier(resnet18(), num_classes=4, predict="nearest_centre")
    assert both.backbone.fc.out_features == 4 and both.means is not None
    features, y = torch.randn(8, 512), torch.arange(8) % 4
    assert both.logits(features) is None  # no centres yet
    both.means.fit(features, y)
    assert both.means.ready
    expected = torch.stack([features[y == c].mean(0) for c in range(4)])
    torch.testing.assert_close(both.means.centres, expected)
    torch.testing.assert_close(both.logits(features), -torch.cdist(features, expected))
