"""What the callback tests share: a tiny data module, a classifier and a trainer."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, TensorDataset

from lab.models import ResNet
from lab.tasks import Classifier
from tests import helpers

PNG = b"\x89PNG\r\n\x1a\n"
NAMES = ["ant", "bee", "cat", "dog"]


class Data(L.LightningDataModule):
    """48 8x8 greyscale images of 3 classes, named as 4 (the last one has no samples)."""

    def __init__(self, n: int = 48) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.y = torch.arange(n) % 3
        self.x = torch.randn(n, 1, 8, 8, generator=g) + self.y.view(-1, 1, 1, 1).float()
        self.class_names = NAMES

    def _loader(self):
        return DataLoader(TensorDataset(self.x, self.y), batch_size=16)

    train_dataloader = val_dataloader = test_dataloader = _loader


def classifier(num_classes: int = 4) -> Classifier:
    torch.manual_seed(0)
    backbone = ResNet(depth=18, in_channels=1, small_input=True)
    return Classifier(backbone, num_classes=num_classes, embedding_metrics=False)


def quiet_trainer(tmp_path: Path, callbacks: list, **kwargs) -> L.Trainer:
    """``helpers.quiet_trainer`` with ``callbacks``, logging to TensorBoard under ``tmp_path``."""
    kwargs.setdefault("logger", TensorBoardLogger(tmp_path, name="run"))
    return helpers.quiet_trainer(callbacks=callbacks, **kwargs)
