"""Supervised classification: a backbone, a list of weighted loss terms, and the metrics
reports need.

The objective is ``model.losses`` (``lab.tasks.objective.Objective``): cross-entropy by
default, or any mix of ``lab.losses`` terms (batch-hard or sampled triplets, center loss,
...). Classifying by the nearest class centre of the training embeddings is an option
(``predict``), for objectives without a classifier head. The training step is split into
hooks (``features``, ``logits``, ``objective``) that the other tasks override.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from lab.errors import LabError
from lab.losses import CrossEntropy, LossTerm
from lab.models.freeze import apply_trainable_policy, count_parameters, freeze_batchnorm
from lab.tasks.centres import ClassMeans
from lab.tasks.compiled import CompiledFeatures
from lab.tasks.nearest_centre import nearest_centre_logits
from lab.tasks.objective import Objective
from lab.tasks.split_metrics import SplitMetrics

_MODULE_ARGS = ["backbone", "losses", "optimizer", "scheduler"]
_PREDICT = ("auto", "head", "nearest_centre")


def _built_by_cli() -> bool:
    """True while LightningCLI instantiates a module: the hyperparameters it hands over are
    the config (class paths and arguments), so a checkpoint can rebuild the backbone and
    ``load_from_checkpoint`` needs no arguments. Built in Python, the backbone is an
    ``nn.Module`` that must not be pickled into the hyperparameters."""
    return _given_hyperparameters.get() is not None


class Classifier(SplitMetrics, L.LightningModule):
    """Trains any backbone with a list of weighted loss terms and logs namespaced,
    per-epoch metrics.

    The backbone is a plain ``nn.Module`` with ``forward_features``, ``forward_head`` and
    ``reset_classifier`` (``lab.models.ResNet``); the classifier gets ``num_classes``
    outputs, linked by the CLI from the data module, or none when no term uses logits
    and nothing predicts with it.

    Logged: ``train/loss`` (the weighted sum), ``train/<term name>`` for each term when
    there are several, the terms' stats (e.g. ``train/active_triplets``), ``train/acc``,
    ``train/lr`` per epoch, the same for ``val/``; ``test/loss``, ``test/acc``,
    ``test/acc_top5`` (more than 5 classes), ``test/macro_f1`` and
    ``test/class_acc/<class name>`` (under DDP from the gathered test split, without the
    sampler's repeated samples). With ``embedding_metrics`` the features are judged as an
    embedding too (``lab.metrics.embedding``): ``val/precision_at_1`` and ``val/map_at_r``
    (leave-one-out within the validation split) every epoch, and at test
    ``test/knn_acc``, ``test/centroid_acc`` (``_top5``), ``test/precision_at_1``,
    ``test/map_at_r``, ``test/r_precision`` against the unaugmented training split.

    Args:
        backbone: the network; its classifier is replaced by a ``num_classes``-way one.
        num_classes: number of classes (set from the data module by the CLI).
        losses: the loss terms (``lab.losses``), summed with their weights; default
            ``[CrossEntropy()]``. A term that ``needs_pk_batches`` makes P x K batches
            (``data.pk_classes``, ``data.pk_samples``) required.
        predict: how the task classifies: ``head`` (the backbone's classifier),
            ``nearest_centre`` (the nearest class centre of the training embeddings:
            the epoch's, from the training steps, during training; the whole unaugmented
            training split's at test), or ``auto``: ``nearest_centre`` when no term uses
            the logits (e.g. a triplet loss alone: the backbone then gets no classifier
            head), else ``head``.
        optimizer: optimizer class and arguments from YAML (``class_path``/``init_args``).
        scheduler: optional learning-rate scheduler, from YAML the same way.
        scheduler_interval: step the scheduler every ``epoch`` or every ``step``.
        label_smoothing: label smoothing of the cross-entropy terms that set none.
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
        compile: ``torch.compile`` the backbone's feature path (``lab.tasks.compiled``;
            the checkpoint keys do not change).
        step_metrics: also log the loss and the batch accuracy of every training step
            (``train_step/loss``, ``train_step/acc``; thinned by the Trainer's
            ``log_every_n_steps``), for curves over steps (optimizer studies).
    """

    #: ``torch.compile`` options of ``compile: true`` (tests choose ``backend="eager"``).
    compile_options: dict[str, Any] = {}

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        losses: Sequence[LossTerm] | None = None,
        predict: Literal["auto", "head", "nearest_centre"] = "auto",
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
        if predict not in _PREDICT:
            raise LabError(f"model.predict must be one of {', '.join(_PREDICT)}, got {predict!r}")
        self.save_hyperparameters(ignore=None if _built_by_cli() else _MODULE_ARGS)
        self.losses = Objective(list(losses) if losses else [CrossEntropy()], label_smoothing)
        if predict == "auto":
            predict = "head" if self.losses.uses_logits else "nearest_centre"
        if predict == "head" and not self.losses.uses_logits:
            raise LabError(
                "model.predict=head needs a loss on the logits to train the head (add "
                "lab.losses.CrossEntropy to model.losses), or use predict: nearest_centre"
            )
        self.predict = predict
        self.backbone = backbone
        self.backbone.reset_classifier(self.head_classes(num_classes))
        apply_trainable_policy(self.backbone, trainable, frozen_children)
        self.losses.build(num_classes, self.backbone.num_features)
        self.means = (
            ClassMeans(num_classes, self.backbone.num_features)
            if predict == "nearest_centre"
            else None
        )
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
        # Per-step metrics without argument checks (they would sync with the host).
        self.train_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self._collected: dict[str, list[dict[str, torch.Tensor]]] = {}
        self._reference: tuple[torch.Tensor, torch.Tensor] | None = None
        self._lr_sum, self._lr_steps = 0.0, 0

    # -- what a subclass may change ------------------------------------------------------

    def head_classes(self, num_classes: int) -> int:
        """Outputs of the backbone's classifier (0: no classifier)."""
        return num_classes if self.losses.uses_logits or self.predict == "head" else 0

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's pooled features (or embedding), ``(B, num_features)``."""
        compiled = self.__dict__.get("_compiled_features")
        if compiled is not None:
            return compiled(x)
        return self.backbone.forward_features(x)

    def logits(self, features: torch.Tensor) -> torch.Tensor | None:
        """Class scores ``(B, num_classes)`` from features; None if there are none yet."""
        if self.means is not None:
            return nearest_centre_logits(features, self.means)
        return self.backbone.forward_head(features)

    def objective(
        self, features: torch.Tensor, logits: torch.Tensor | None, targets: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The loss to minimise under ``"loss"``, and its terms and stats to log beside it."""
        if self.means is not None and self.losses.uses_logits:
            # The terms train the head; the nearest centre only predicts.
            logits = self.backbone.forward_head(features)
        return self.losses(features, logits, targets)

    # -- the loop ------------------------------------------------------------------------

    def configure_model(self) -> None:
        if self.channels_last:
            self.backbone.to(memory_format=torch.channels_last)
        if self.compile_backbone and "_compiled_features" not in self.__dict__:
            # A plain attribute, not a submodule: see lab.tasks.compiled.
            compiled = CompiledFeatures(self.backbone, **self.compile_options)
            object.__setattr__(self, "_compiled_features", compiled)

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
        if self.losses.needs_pk_batches:
            self._require_pk_batches()
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

    def _require_pk_batches(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and getattr(datamodule, "pk_classes", None) is None:
            needing = [type(t).__name__ for t in self.losses.terms if t.needs_pk_batches]
            raise LabError(
                f"{', '.join(needing)} needs P x K batches (every anchor needs a positive): "
                "set data.init_args.pk_classes and data.init_args.pk_samples"
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
        if self.means is not None:
            self.means.update(features, y)
        if logits is not None:
            self.train_acc.update(logits, y)  # the epoch's value only: no per-batch compute
            self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        if self.step_metrics:
            self.log("train_step/loss", terms["loss"].detach(), on_step=True, on_epoch=False)
            if logits is not None:
                batch_acc = (logits.detach().argmax(dim=1) == y).float().mean()
                self.log("train_step/acc", batch_acc, on_step=True, on_epoch=False)
        # The epoch's mean rate, logged once at its end (a float logged every step would
        # be copied to the device every step).
        self._lr_sum += self.trainer.optimizers[0].param_groups[0]["lr"]
        self._lr_steps += 1
        return terms["loss"]

    def on_train_epoch_start(self) -> None:
        self._lr_sum, self._lr_steps = 0.0, 0
        if self.means is not None:
            self.means.reset()

    def on_train_epoch_end(self) -> None:
        if self._lr_steps:
            self.log("train/lr", self._lr_sum / self._lr_steps, on_step=False, on_epoch=True)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Once per step of the task's optimizer, after gradient accumulation and after
        # the AMP scaler has unscaled its gradients: the terms step their own optimizers.
        self.losses.before_optimizer_step(self)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        self.losses.eval_batch(batch_idx)
        features, logits, y, _ = self._step(batch, "val")
        if logits is not None:
            self.val_acc(logits, y)
            self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True)
        return self._collect("val", features, logits, y)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        self.losses.eval_batch(batch_idx)
        features, logits, y, _ = self._step(batch, "test")
        return self._collect("test", features, logits, y)

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
        """What the main optimizer trains: every trainable parameter but those the loss
        terms train with optimizers of their own (center loss's centres)."""
        own = {id(p) for p in self.losses.own_parameters()}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in own]

    def configure_optimizers(self):
        self.losses.configure_optimizers()
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
