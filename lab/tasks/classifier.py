"""Supervised classification: a backbone, cross-entropy, and the metrics reports need."""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from torch import nn
from torch.nn import functional as F
from torchmetrics.classification import MulticlassAccuracy

from lab.errors import LabError

_MODULE_ARGS = ["backbone", "optimizer", "scheduler"]


def _built_by_cli() -> bool:
    """True while LightningCLI instantiates a module: the hyperparameters it hands over are
    the config (class paths and arguments), so a checkpoint can rebuild the backbone and
    ``load_from_checkpoint`` needs no arguments. Built in Python, the backbone is an
    ``nn.Module`` that must not be pickled into the hyperparameters."""
    return _given_hyperparameters.get() is not None


class Classifier(L.LightningModule):
    """Trains any backbone with cross-entropy and logs namespaced, per-epoch metrics.

    The backbone is a plain ``nn.Module`` with ``forward_features``, ``forward_head`` and
    ``reset_classifier`` (``lab.models.ResNet``); the classifier gets ``num_classes``
    outputs, linked by the CLI from the data module.

    Logged: ``train/loss``, ``train/acc``, ``train/lr``, ``val/loss``, ``val/acc`` per
    epoch; ``test/loss``, ``test/acc``, ``test/acc_top5`` (more than 5 classes) and
    ``test/class_acc/<class name>``.

    Args:
        backbone: the network; its classifier is replaced by a ``num_classes``-way one.
        num_classes: number of classes (set from the data module by the CLI).
        optimizer: optimizer class and arguments from YAML (``class_path``/``init_args``).
        scheduler: optional learning-rate scheduler, from YAML the same way.
        scheduler_interval: step the scheduler every ``epoch`` or every ``step``.
        label_smoothing: cross-entropy label smoothing.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise LabError(f"model.num_classes must be at least 2, got {num_classes}")
        if not 0.0 <= label_smoothing < 1.0:
            raise LabError(f"model.label_smoothing must be in [0, 1), got {label_smoothing}")
        self.save_hyperparameters(ignore=None if _built_by_cli() else _MODULE_ARGS)
        self.backbone = backbone
        self.backbone.reset_classifier(num_classes)
        self.num_classes = num_classes
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.label_smoothing = label_smoothing

        def accuracy(**kwargs: Any) -> MulticlassAccuracy:
            return MulticlassAccuracy(num_classes=num_classes, **kwargs)

        self.train_acc = accuracy(average="micro")
        self.val_acc = accuracy(average="micro")
        self.test_acc = accuracy(average="micro")
        self.test_acc_top5 = accuracy(average="micro", top_k=5) if num_classes > 5 else None
        self.test_class_acc = accuracy(average=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, ``(B, num_classes)``."""
        return self.backbone(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's pooled features (or embedding), ``(B, num_features)``."""
        return self.backbone.forward_features(x)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        logits = self(x)
        loss = self.loss(logits, y)
        self.train_acc(logits, y)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        self.log("train/lr", lr, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.val_acc(logits, y)
        self.log("val/loss", self.loss(logits, y), on_epoch=True, prog_bar=True)
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("test/loss", self.loss(logits, y), on_epoch=True)
        self.test_acc(logits, y)
        self.log("test/acc", self.test_acc, on_epoch=True)
        if self.test_acc_top5 is not None:
            self.test_acc_top5(logits, y)
            self.log("test/acc_top5", self.test_acc_top5, on_epoch=True)
        self.test_class_acc.update(logits, y)

    def on_test_epoch_end(self) -> None:
        per_class = self.test_class_acc.compute()
        self.test_class_acc.reset()
        for name, value in zip(self.class_names(), per_class, strict=True):
            self.log(f"test/class_acc/{name}", value)

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        x, y = batch if isinstance(batch, (tuple, list)) else (batch, None)
        logits = self(x)
        out = {"logits": logits, "preds": logits.argmax(dim=1)}
        if y is not None:
            out["targets"] = y
        return out

    def class_names(self) -> list[str]:
        """The data module's class names when it has them, else the class indices."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        names = getattr(datamodule, "class_names", None)
        if names is not None and len(names) == self.num_classes:
            return [str(n) for n in names]
        return [str(i) for i in range(self.num_classes)]

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval},
        }
