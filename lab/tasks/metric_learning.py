"""Metric-learning tasks: center loss and batch-hard triplet, with or without cross-entropy.

- ``CenterLossClassifier``: cross-entropy + lambda * center loss (Wen et al. 2016) on the
  features; the centers have an optimizer of their own with rate alpha.
- ``TripletClassifier``: cross-entropy + weight * batch-hard triplet loss on the features.
- ``TripletEmbedder``: batch-hard triplet alone on an embedding (Hermans et al. 2017); it
  classifies by the nearest class centre, so it still reports accuracy, top-5 and per-class
  accuracy like any classifier.

All of them report the embedding metrics of ``Classifier`` (kNN, class-centre, retrieval).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lab.errors import LabError
from lab.losses import BatchHardTripletLoss, CenterLoss
from lab.metrics import centroid_logits
from lab.tasks.classifier import Classifier


def _require_pk_batches(task: Classifier) -> None:
    datamodule = getattr(task.trainer, "datamodule", None)
    if datamodule is not None and getattr(datamodule, "pk_classes", None) is None:
        raise LabError(
            f"{type(task).__name__} trains with batch-hard triplets, which need P x K batches "
            "(every anchor needs a positive): set data.init_args.pk_classes and "
            "data.init_args.pk_samples"
        )


class CenterLossClassifier(Classifier):
    """Cross-entropy + ``center_weight`` * center loss on the backbone's features.

    The centers are kept out of the main optimizer and moved by plain SGD at rate
    ``center_lr`` (the paper's alpha) after their gradient is divided by ``center_weight``
    (the paper's lambda), so lambda sets how much the features are pulled to the centers
    but not how fast the centers move (as in KaiyangZhou/pytorch-center-loss, whose
    command-line "alpha" is our ``center_weight`` and whose ``lr_cent`` is our
    ``center_lr``).

    Args:
        center_weight: lambda, the weight of the center loss (>= 0).
        center_lr: alpha, the centers' learning rate (> 0).
        The rest: see ``Classifier``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        center_weight: float = 0.1,
        center_lr: float = 0.5,
        **kwargs: Any,
    ) -> None:
        if center_weight < 0:
            raise LabError(f"model.center_weight (lambda) must be >= 0, got {center_weight}")
        if center_lr <= 0:
            raise LabError(f"model.center_lr (alpha) must be > 0, got {center_lr}")
        super().__init__(backbone, num_classes, **kwargs)
        self.center_weight = center_weight
        self.center_lr = center_lr
        self.center_loss = CenterLoss(num_classes, self.backbone.num_features)
        self._center_optimizer: torch.optim.Optimizer | None = None

    def objective(self, features, logits, targets):
        cross_entropy = self.loss(logits, targets)
        center = self.center_loss(features.float(), targets)
        return {
            "loss": cross_entropy + self.center_weight * center,
            "ce": cross_entropy,
            "center": center,
        }

    def optimized_parameters(self) -> list[nn.Parameter]:
        centers = {id(p) for p in self.center_loss.parameters()}
        return [p for p in super().optimized_parameters() if id(p) not in centers]

    def configure_optimizers(self):
        self._center_optimizer = self.center_loss.center_optimizer(self.center_lr)
        return super().configure_optimizers()

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Called once per optimizer step, after gradient accumulation and after the AMP
        # scaler has unscaled the main optimizer's gradients (not the centers').
        grad = self.center_loss.centers.grad
        if grad is None or self._center_optimizer is None:
            return
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        if scaler is not None:
            grad.div_(scaler.get_scale())
        if torch.isfinite(grad).all():  # an overflowing fp16 step is skipped by the scaler
            self.center_loss.rescale_center_grad(self.center_weight)
            self._center_optimizer.step()
        self._center_optimizer.zero_grad(set_to_none=True)


class TripletClassifier(Classifier):
    """Cross-entropy + ``triplet_weight`` * batch-hard triplet loss on the features.

    Needs P x K training batches (``data.pk_classes``, ``data.pk_samples``).

    Args:
        triplet_weight: weight of the triplet term (>= 0).
        margin: triplet margin (> 0) on Euclidean distances.
        soft_margin: softplus instead of the hinge (no margin).
        gather_across_ranks: under DDP, mine the triplets among the features of every
            process (the global batch), not each process's own batch.
        The rest: see ``Classifier``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        triplet_weight: float = 1.0,
        margin: float = 0.2,
        soft_margin: bool = False,
        gather_across_ranks: bool = True,
        **kwargs: Any,
    ) -> None:
        if triplet_weight < 0:
            raise LabError(f"model.triplet_weight must be >= 0, got {triplet_weight}")
        super().__init__(backbone, num_classes, **kwargs)
        self.triplet_weight = triplet_weight
        self.triplet_loss = BatchHardTripletLoss(margin, soft_margin, gather_across_ranks)

    def on_fit_start(self) -> None:
        _require_pk_batches(self)
        super().on_fit_start()

    def objective(self, features, logits, targets):
        cross_entropy = self.loss(logits, targets)
        triplet = self.triplet_loss(features.float(), targets)
        return {
            "loss": cross_entropy + self.triplet_weight * triplet,
            "ce": cross_entropy,
            "triplet": triplet,
            "active_triplets": self.triplet_loss.last_active_fraction,
        }


class TripletEmbedder(Classifier):
    """Batch-hard triplet loss alone, on the backbone's embedding; no classifier.

    It classifies by the nearest class centre: during training the centres are the mean
    training embeddings of the epoch (from the training steps, so with augmentation), at
    test the mean embeddings of the whole unaugmented training split. ``test/acc`` and
    ``test/acc_top5`` are therefore nearest-centre accuracies, comparable with a
    classifier's; ``test/knn_acc`` is the kNN one.

    Needs P x K training batches (``data.pk_classes``, ``data.pk_samples``). Give the
    backbone an ``embedding_dim`` (and usually ``normalize_embedding: true``).

    Args:
        margin: triplet margin (> 0) on Euclidean distances.
        soft_margin: softplus instead of the hinge (no margin), as Hermans et al. prefer.
        gather_across_ranks: under DDP, mine the triplets among the embeddings of every
            process (the global batch), not each process's own batch.
        The rest: see ``Classifier`` (there is no cross-entropy, so no label smoothing).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        margin: float = 0.2,
        soft_margin: bool = False,
        gather_across_ranks: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone, num_classes, label_smoothing=0.0, **kwargs)
        self.hparams.pop("label_smoothing", None)  # not an argument of this class
        self.triplet_loss = BatchHardTripletLoss(margin, soft_margin, gather_across_ranks)
        dim = self.backbone.num_features
        self.register_buffer("centres", torch.zeros(num_classes, dim))
        self.register_buffer("centre_present", torch.zeros(num_classes, dtype=torch.bool))
        self.register_buffer("_sums", torch.zeros(num_classes, dim), persistent=False)
        self.register_buffer("_counts", torch.zeros(num_classes), persistent=False)

    def head_classes(self, num_classes: int) -> int:
        return 0

    def logits(self, features: torch.Tensor) -> torch.Tensor | None:
        if not bool(self.centre_present.any()):
            return None  # before the first epoch has made centres
        return centroid_logits(features, self.centres, self.centre_present)

    def objective(self, features, logits, targets):
        return {
            "loss": self.triplet_loss(features.float(), targets),
            "active_triplets": self.triplet_loss.last_active_fraction,
        }

    def on_fit_start(self) -> None:
        _require_pk_batches(self)
        super().on_fit_start()

    def on_train_epoch_start(self) -> None:
        self._sums.zero_()
        self._counts.zero_()

    def observe_train_features(self, features: torch.Tensor, targets: torch.Tensor) -> None:
        self._sums.index_add_(0, targets, features.float())
        self._counts += torch.bincount(targets, minlength=self.num_classes)

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        if self.trainer.sanity_checking or not bool(self._counts.any()):
            return  # no training epoch yet: keep the centres that were loaded, if any
        sums = self.trainer.strategy.reduce(self._sums, reduce_op="sum")
        counts = self.trainer.strategy.reduce(self._counts, reduce_op="sum")
        self._set_centres(sums / counts.clamp(min=1).unsqueeze(1), counts > 0)

    def on_reference(self, features: torch.Tensor, targets: torch.Tensor) -> None:
        sums = torch.zeros_like(self.centres).index_add_(0, targets, features)
        counts = torch.bincount(targets, minlength=self.num_classes).to(sums.dtype)
        self._set_centres(sums / counts.clamp(min=1).unsqueeze(1), counts > 0)

    def _set_centres(self, centres: torch.Tensor, present: torch.Tensor) -> None:
        self.centres.copy_(centres)
        self.centre_present.copy_(present)
