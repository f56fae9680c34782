"""Supervised classification: a backbone, cross-entropy, and the metrics reports need.

The training step is split into hooks (``features``, ``logits``, ``objective``) so that
the metric-learning tasks (``lab.tasks.metric_learning``) change only what differs.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn
from torch.nn import functional as F
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from lab.distributed import gather_split
from lab.errors import LabError
from lab.metrics import embedding_metrics, retrieval_metrics
from lab.models.freeze import apply_trainable_policy, count_parameters, freeze_batchnorm

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
    epoch; ``test/loss``, ``test/acc``, ``test/acc_top5`` (more than 5 classes),
    ``test/macro_f1`` and ``test/class_acc/<class name>``. With ``embedding_metrics`` the
    features are judged as an embedding too (``lab.metrics.embedding``): ``val/precision_at_1`` and
    ``val/map_at_r`` (leave-one-out within the validation split) every epoch, and at test
    ``test/knn_acc``, ``test/centroid_acc`` (``_top5``), ``test/precision_at_1``,
    ``test/map_at_r``, ``test/r_precision`` against the unaugmented training split.

    Args:
        backbone: the network; its classifier is replaced by a ``num_classes``-way one.
        num_classes: number of classes (set from the data module by the CLI).
        optimizer: optimizer class and arguments from YAML (``class_path``/``init_args``).
        scheduler: optional learning-rate scheduler, from YAML the same way.
        scheduler_interval: step the scheduler every ``epoch`` or every ``step``.
        label_smoothing: cross-entropy label smoothing.
        embedding_metrics: also judge the features as an embedding (kNN, retrieval).
        knn_k: neighbours of the kNN classifier.
        trainable: which parts of the backbone train (``lab.models.freeze``): ``all``,
            ``head`` (a linear probe), ``layer1``..``layer4``, ``conv``, ``bn``,
            ``downsample`` or ``classifier`` (``fc`` alone, an embedding layer frozen too);
            the new head always trains and frozen BatchNorm layers stay in
            eval mode. The counts are logged as ``params/trainable`` and ``params/total``.
        frozen_children: with ``trainable: all``, freeze the first k top-level children of
            torchvision's ResNet (conv1, bn1, relu, maxpool, layer1..layer4, avgpool).
        channels_last: keep the backbone's weights and the image batches in channels-last
            memory order (faster convolutions with mixed precision on recent GPUs).
        compile: ``torch.compile`` the backbone's ``forward_features`` (the checkpoint keys
            do not change).
        step_metrics: also log the loss and the batch accuracy of every training step
            (``train_step/loss``, ``train_step/acc``; thinned by the Trainer's
            ``log_every_n_steps``), for curves over steps (optimizer studies).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
        label_smoothing: float = 0.0,
        embedding_metrics: bool = True,
        knn_k: int = 10,
        trainable: str = "all",
        frozen_children: int = 0,
        channels_last: bool = False,
        compile: bool = False,
        step_metrics: bool = False,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise LabError(f"model.num_classes must be at least 2, got {num_classes}")
        if not 0.0 <= label_smoothing < 1.0:
            raise LabError(f"model.label_smoothing must be in [0, 1), got {label_smoothing}")
        if knn_k < 1:
            raise LabError(f"model.knn_k must be at least 1, got {knn_k}")
        self.save_hyperparameters(ignore=None if _built_by_cli() else _MODULE_ARGS)
        self.backbone = backbone
        self.backbone.reset_classifier(self.head_classes(num_classes))
        apply_trainable_policy(self.backbone, trainable, frozen_children)
        self.trainable = trainable
        self.num_classes = num_classes
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.label_smoothing = label_smoothing
        self.embedding_metrics = embedding_metrics
        self.knn_k = knn_k
        self.step_metrics = step_metrics
        self.channels_last = channels_last
        self.compile_backbone = compile

        def accuracy(**kwargs: Any) -> MulticlassAccuracy:
            return MulticlassAccuracy(num_classes=num_classes, **kwargs)

        self.train_acc = accuracy(average="micro")
        self.val_acc = accuracy(average="micro")
        self.test_acc = accuracy(average="micro")
        self.test_acc_top5 = accuracy(average="micro", top_k=5) if num_classes > 5 else None
        self.test_class_acc = accuracy(average=None)
        self.test_macro_f1 = MulticlassF1Score(num_classes=num_classes, average="macro")
        self._collected: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self._reference: tuple[torch.Tensor, torch.Tensor] | None = None

    # -- what a subclass may change ------------------------------------------------------

    def head_classes(self, num_classes: int) -> int:
        """Outputs of the backbone's classifier (0: no classifier)."""
        return num_classes

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's pooled features (or embedding), ``(B, num_features)``."""
        return self.backbone.forward_features(x)

    def logits(self, features: torch.Tensor) -> torch.Tensor | None:
        """Class scores ``(B, num_classes)`` from features; None if there are none yet."""
        return self.backbone.forward_head(features)

    def objective(
        self, features: torch.Tensor, logits: torch.Tensor | None, targets: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The loss to minimise under ``"loss"``, and any of its parts to log beside it."""
        return {"loss": self.loss(logits, targets)}

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), targets, label_smoothing=self.label_smoothing)

    def observe_train_features(self, features: torch.Tensor, targets: torch.Tensor) -> None:
        """Called with every training batch's features (for running statistics)."""

    def on_reference(self, features: torch.Tensor, targets: torch.Tensor) -> None:
        """Called at the start of testing with the embedded training split."""

    # -- the loop ------------------------------------------------------------------------

    def configure_model(self) -> None:
        if self.channels_last:
            self.backbone.to(memory_format=torch.channels_last)
        if self.compile_backbone and not getattr(self, "_compiled", False):
            # The task calls forward_features, not backbone(x): compile that (an instance
            # attribute, so the state dict and the checkpoints keep their keys).
            self.backbone.forward_features = torch.compile(self.backbone.forward_features)
            self._compiled = True

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """A batch of images in the memory order the backbone's weights use."""
        if self.channels_last and x.ndim == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def train(self, mode: bool = True) -> Classifier:
        """Train mode, except for frozen BatchNorm layers: they keep their statistics.

        (Lightning does not call ``train()`` when fitting starts, only after validation,
        where it restores each layer's own mode: ``on_fit_start`` sets them first.)
        """
        super().train(mode)
        if mode:
            freeze_batchnorm(self.backbone)
        return self

    def on_fit_start(self) -> None:
        if self.training and freeze_batchnorm(self.backbone):
            # Lightning warns about layers in eval mode; these are so on purpose.
            warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
        counts = count_parameters(self)
        rank_zero_info(
            f"trainable parameters: {counts['trainable']:,} of {counts['total']:,} "
            f"(model.trainable={self.trainable})"
        )
        for logger in self.loggers:
            logger.log_metrics(
                {"params/trainable": counts["trainable"], "params/total": counts["total"]},
                step=self.global_step,
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor | None:
        """Logits, ``(B, num_classes)``."""
        return self.logits(self.features(x))

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str):
        x, y = batch
        features = self.features(self.prepare(x))
        logits = self.logits(features)
        terms = self.objective(features, logits, y)
        for name, value in terms.items():
            # sync_dist: under DDP the epoch's value is the mean over every process's
            # samples (one all-reduce at the end of the epoch), not rank 0's alone.
            self.log(
                f"{stage}/{name}",
                value,
                on_step=False,
                on_epoch=True,
                prog_bar=True,
                sync_dist=True,
            )
        return features, logits, y, terms

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        features, logits, y, terms = self._step(batch, "train")
        self.observe_train_features(features.detach(), y)
        if logits is not None:
            self.train_acc.update(logits, y)  # the epoch's value only: no per-batch compute
            self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        if self.step_metrics:
            self.log("train_step/loss", terms["loss"].detach(), on_step=True, on_epoch=False)
            if logits is not None:
                batch_acc = (logits.detach().argmax(dim=1) == y).float().mean()
                self.log("train_step/acc", batch_acc, on_step=True, on_epoch=False)
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        self.log("train/lr", lr, on_step=False, on_epoch=True)
        return terms["loss"]

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        features, logits, y, _ = self._step(batch, "val")
        if logits is not None:
            self.val_acc(logits, y)
            self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True)
        return self._collect("val", features, logits, y)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        features, logits, y, _ = self._step(batch, "test")
        if logits is not None:
            self.test_acc(logits, y)
            self.log("test/acc", self.test_acc, on_epoch=True)
            if self.test_acc_top5 is not None:
                self.test_acc_top5(logits, y)
                self.log("test/acc_top5", self.test_acc_top5, on_epoch=True)
            self.test_class_acc.update(logits, y)
            self.test_macro_f1(logits, y)
            self.log("test/macro_f1", self.test_macro_f1, on_epoch=True)
        return self._collect("test", features, logits, y)

    def _collect(
        self,
        stage: str,
        features: torch.Tensor,
        logits: torch.Tensor | None,
        targets: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Keep the features for the epoch-end embedding metrics; also the step's output,
        ``{"features", "targets"}`` and ``"logits"`` when there are any, which callbacks
        (t-SNE, confusion matrix, ROC) read."""
        out = {"features": features.detach().float(), "targets": targets}
        if logits is not None:
            out["logits"] = logits.detach().float()
        if self.embedding_metrics:
            self._collected.setdefault(stage, []).append((out["features"], targets))
        return out

    def _gathered(self, stage: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        parts = self._collected.pop(stage, [])
        if not parts:
            return None
        features = torch.cat([f for f, _ in parts])
        targets = torch.cat([t for _, t in parts])
        # Under DDP: the whole split, in order and without DistributedSampler's padding.
        features = gather_split(self.trainer, features, stage)
        targets = gather_split(self.trainer, targets, stage)
        return features, targets

    def on_validation_epoch_start(self) -> None:
        self._collected.pop("val", None)

    def on_validation_epoch_end(self) -> None:
        gathered = self._gathered("val")
        if gathered is None or self.trainer.sanity_checking or len(gathered[1]) < 2:
            return
        metrics = retrieval_metrics(*gathered)
        self.log("val/precision_at_1", metrics["precision_at_1"])
        self.log("val/map_at_r", metrics["map_at_r"])

    def on_test_epoch_start(self) -> None:
        self._collected.pop("test", None)
        self._reference = None
        datamodule = getattr(self.trainer, "datamodule", None)
        if not self.embedding_metrics:
            return
        if datamodule is None or getattr(datamodule, "reference_set", None) is None:
            rank_zero_warn("no reference (training) split to embed: no embedding metrics")
            return
        features, targets = [], []
        for x, y in datamodule.reference_dataloader():
            features.append(self.features(x.to(self.device)).float())
            targets.append(y.to(self.device))
        self._reference = torch.cat(features), torch.cat(targets)
        self.on_reference(*self._reference)

    def on_test_epoch_end(self) -> None:
        if self.test_class_acc.update_called:
            per_class = self.test_class_acc.compute()
            self.test_class_acc.reset()
            for name, value in zip(self.class_names(), per_class, strict=True):
                self.log(f"test/class_acc/{name}", value)
        gathered = self._gathered("test")
        if gathered is None or self._reference is None:
            return
        metrics = embedding_metrics(*gathered, *self._reference, self.num_classes, self.knn_k)
        for name, value in metrics.items():
            self.log(f"test/{name}", value)
        self._reference = None

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        x, y = batch if isinstance(batch, (tuple, list)) else (batch, None)
        features = self.features(self.prepare(x))
        logits = self.logits(features)
        out = {"features": features}
        if logits is not None:
            out.update(logits=logits, preds=logits.argmax(dim=1))
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

    def optimized_parameters(self) -> list[nn.Parameter]:
        """What the main optimizer trains: every trainable parameter unless a subclass
        trains some with an optimizer of their own."""
        return [p for p in self.parameters() if p.requires_grad]

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.optimized_parameters())
        if self.scheduler_factory is None:
            return optimizer
        try:
            scheduler = self.scheduler_factory(optimizer)
        except ValueError as error:  # OneCycleLR without a length: this run's step count
            if "total_steps" not in str(error):
                raise
            total = int(self.trainer.estimated_stepping_batches)
            scheduler = self.scheduler_factory(optimizer, total_steps=total)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval},
        }
