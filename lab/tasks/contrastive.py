"""Contrastive representation learning (seed 004, section 2): an encoder trained with a
triplet margin loss on in-batch random triplets, no classifier.

The embedding it learns is then judged three ways: by the nearest class centre and kNN
(``test/acc``, ``test/knn_acc``, from ``TripletEmbedder``), by a linear classifier on the
frozen embedding (``Classifier`` with ``trainable: classifier``), and by the encoder plus
one or two fully connected layers trained end to end (``Classifier`` with
``trainable: all``); see experiments/contrastive*.yaml.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lab.losses import SampledTripletLoss
from lab.tasks.classifier import Classifier
from lab.tasks.metric_learning import TripletEmbedder


class ContrastiveEmbedder(TripletEmbedder):
    """Triplet margin loss (``torch.nn.TripletMarginLoss``) on in-batch random triplets.

    For every sample of a training batch that has both, a random positive (same class)
    and a random negative (another class) from the same batch (``lab.losses.
    sample_triplets``): no batch-hard mining, so no P x K batches are needed, only batches
    large enough that the classes repeat (2048 in the source). Validation and test draw
    their triplets from a generator seeded by the batch index, so ``val/loss`` compares
    from epoch to epoch.

    Like ``TripletEmbedder`` (whose centre bookkeeping it shares) it has no classifier
    during training and classifies by the nearest class centre of the training
    embeddings, so it reports ``val/acc``, ``test/acc`` and the embedding metrics of
    ``Classifier``. Logged: ``train/loss``, ``train/active_triplets`` (share of triplets
    violating the margin), ``train/triplet_anchors`` (share of the batch that got a
    triplet), and the same for ``val`` and ``test``.

    Args:
        margin: the triplet margin (> 0) on Euclidean distances (1.0 in the source).
        swap: use the distance swap (``TripletMarginLoss(swap=True)``).
        gather_across_ranks: under DDP, draw the triplets from the embeddings of every
            process (the global batch), not each process's own batch.
        The rest: see ``Classifier``. Give the backbone an ``embedding_dim`` (``z_dim``).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        margin: float = 1.0,
        swap: bool = False,
        gather_across_ranks: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            backbone, num_classes, margin=margin, gather_across_ranks=gather_across_ranks, **kwargs
        )
        self.hparams.pop("soft_margin", None)  # TripletEmbedder's, not an argument here
        self.triplet_loss = SampledTripletLoss(margin, swap, gather_across_ranks)
        self._eval_batch = 0

    def objective(self, features, logits, targets):
        generator = None if self.training else self._eval_generator(targets.device)
        loss = self.triplet_loss(features.float(), targets, generator)
        return {
            "loss": loss,
            "active_triplets": self.triplet_loss.last_active_fraction,
            "triplet_anchors": self.triplet_loss.last_anchor_fraction,
        }

    def _eval_generator(self, device: torch.device) -> torch.Generator:
        # The same triplets for the same evaluation batch every epoch.
        return torch.Generator(device=device).manual_seed(self._eval_batch)

    def on_fit_start(self) -> None:
        # Random in-batch triplets need no P x K batches: TripletEmbedder's check is
        # skipped on purpose, the rest of the start of fitting is Classifier's.
        Classifier.on_fit_start(self)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        self._eval_batch = batch_idx
        return super().validation_step(batch, batch_idx)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        self._eval_batch = batch_idx
        return super().test_step(batch, batch_idx)
