"""Batch-hard triplet loss (Hermans, Beyer & Leibe 2017, "In Defense of the Triplet Loss").

For every anchor in the batch: its farthest positive and its nearest negative, on plain
(not squared) Euclidean distances; the loss is ``relu(d_ap - d_an + margin)`` or, with
``soft_margin``, ``softplus(d_ap - d_an)``, averaged over the anchors that have both a
positive and a negative. Vectorised over the batch: one ``(B, B)`` matrix product.

Checked against a brute-force loop and against pytorch-metric-learning's
``BatchHardMiner`` + ``TripletMarginLoss`` (tests/test_losses.py).

Under DDP both losses are by default computed on the global batch, the embeddings of
every process (``gather_across_ranks``, ``lab.distributed``): batch-hard mining
then sees all of them, and DDP's gradient averaging gives the single-process gradient.

Also in-batch *random* triplets (``sample_triplets``, ``SampledTripletLoss``): a random
positive and a random negative per anchor under ``torch.nn.TripletMarginLoss``, as the
contrastive encoder of seed 004 was trained (tests/test_contrastive.py).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from lab.distributed import gather_embeddings, shared_generator, world_size
from lab.errors import LabError


def squared_distances(embeddings: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances ``(B, B)`` from one matrix product, clamped at 0."""
    squared = embeddings.pow(2).sum(dim=1)
    gram = embeddings @ embeddings.T
    return (squared.unsqueeze(0) + squared.unsqueeze(1) - 2.0 * gram).clamp(min=0.0)


def safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """``sqrt(x)`` for ``x >= 0`` with a zero (not infinite) gradient where ``x == 0``."""
    zero = x == 0
    return torch.sqrt(x.masked_fill(zero, 1.0)).masked_fill(zero, 0.0)


def pairwise_distances(embeddings: torch.Tensor) -> torch.Tensor:
    """Euclidean distances ``(B, B)``, with a finite gradient where a distance is 0."""
    return safe_sqrt(squared_distances(embeddings))


class BatchHardTripletLoss(nn.Module):
    """``loss(embeddings (B, D), labels (B,))``: the batch-hard triplet loss, a scalar.

    Args:
        margin: the hinge's margin (> 0); unused with ``soft_margin``.
        soft_margin: ``softplus(d_ap - d_an)`` instead of the hinge.
        gather_across_ranks: under DDP, mine the triplets in the global batch (every
            process's embeddings, see ``lab.distributed``); the loss is then the
            global batch's on every process. False: each process mines its own batch.

    After each call, ``last_active_fraction`` holds the share of the valid anchors whose
    triplet still violates the margin (a detached tensor: logging it costs no sync).
    """

    def __init__(
        self, margin: float = 0.2, soft_margin: bool = False, gather_across_ranks: bool = True
    ) -> None:
        super().__init__()
        if not soft_margin and margin <= 0:
            raise LabError(f"model.margin must be > 0 (or use soft_margin), got {margin}")
        self.margin = margin
        self.soft_margin = soft_margin
        self.gather_across_ranks = gather_across_ranks
        self.last_active_fraction = torch.tensor(0.0)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.gather_across_ranks and world_size() > 1:
            embeddings, labels = gather_embeddings(embeddings, labels)
        # The hardest pairs are chosen on squared distances (the root is monotonic), and
        # only those 2B distances are rooted: no (B, B) square root and its backward.
        distances = squared_distances(embeddings)
        same = labels.unsqueeze(0) == labels.unsqueeze(1)
        eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        positive = same & ~eye
        negative = ~same
        # Farthest positive: non-positives count as 0 (distances are >= 0). Nearest
        # negative: non-negatives count as +inf.
        hardest_positive = distances.masked_fill(~positive, 0.0).amax(dim=1)
        hardest_negative = distances.masked_fill(~negative, float("inf")).amin(dim=1)
        valid = positive.any(dim=1) & negative.any(dim=1)
        if not valid.any():
            self.last_active_fraction = embeddings.new_zeros(()).detach()
            return embeddings.sum() * 0.0  # keeps the graph: backward gives zero gradients
        gap = safe_sqrt(hardest_positive[valid]) - safe_sqrt(hardest_negative[valid])
        losses = F.softplus(gap) if self.soft_margin else F.relu(gap + self.margin)
        violated = gap > 0 if self.soft_margin else gap + self.margin > 0
        self.last_active_fraction = violated.float().mean().detach()
        return losses.mean()


def sample_triplets(
    targets: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """In-batch random triplets: ``(anchor, positive, negative)`` index tensors.

    Every sample that has another sample of its class in the batch and a sample of
    another class is an anchor once; its positive is drawn uniformly from the other
    samples of its class, its negative uniformly from the samples of other classes (the
    source's ``np.random.choice`` over ``np.where`` per anchor, here vectorised). Anchors
    without a positive or a negative are left out.

    O(B log B) and no ``(B, B)`` matrix: the batch is sorted by class, so each class is a
    run ``[offset, offset + count)``; the k-th other member of a class, skipping the anchor
    itself, and the k-th sample outside the run are then plain index arithmetic.

    Args:
        targets: class labels ``(B,)``.
        generator: random source on ``targets``' device (None: torch's global one, so
            ``seed_everything`` makes runs repeatable).
    """
    if targets.ndim != 1:
        raise ValueError(f"targets must be a vector (B,), got shape {tuple(targets.shape)}")
    size = len(targets)
    order = torch.argsort(targets, stable=True)  # sample indices grouped by class
    _, inverse, counts = torch.unique(targets, return_inverse=True, return_counts=True)
    offsets = torch.cumsum(counts, dim=0) - counts  # where each class's run starts
    rank = torch.empty_like(order)
    rank[order] = torch.arange(size, device=targets.device)  # each sample's sorted place
    own, start = counts[inverse], offsets[inverse]
    positives, negatives = own - 1, size - own
    valid = (positives > 0) & (negatives > 0)
    draws = torch.rand(2, size, generator=generator, device=targets.device, dtype=torch.float64)

    def pick(n: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        # floor(u * n) is uniform on 0 .. n - 1 (clamped against rounding up to n).
        return torch.minimum((u * n).floor().long(), (n - 1).clamp(min=0))

    k = pick(positives, draws[0])
    positive_rank = start + k
    positive_rank = positive_rank + (positive_rank >= rank).long()  # step over the anchor
    k = pick(negatives, draws[1])
    negative_rank = k + (k >= start).long() * own  # step over the anchor's class run
    anchors = torch.arange(size, device=targets.device)[valid]
    return anchors, order[positive_rank[valid]], order[negative_rank[valid]]


class SampledTripletLoss(nn.Module):
    """``loss(embeddings (B, D), labels (B,))``: triplet margin loss on in-batch random
    triplets (:func:`sample_triplets`), a scalar.

    The loss is ``torch.nn.TripletMarginLoss``: ``relu(d(a, p) - d(a, n) + margin)`` on
    plain (not squared) Euclidean distances, averaged over the sampled triplets. Unlike
    :class:`BatchHardTripletLoss` it needs no P x K batches: a large random batch (2048 in
    the source) gives nearly every anchor a positive.

    Args:
        margin: the hinge's margin (> 0).
        swap: the distance swap of Balntas et al. (``TripletMarginLoss(swap=True)``).
        gather_across_ranks: under DDP, draw the triplets from the global batch (every
            process's embeddings, see ``lab.distributed``) with a generator seeded
            alike on every process when none is given, so the loss is the global batch's
            on every process. False: each process draws from its own batch.

    After each call, ``last_active_fraction`` holds the share of sampled triplets that
    violate the margin and ``last_anchor_fraction`` the share of the batch that got a
    triplet (detached tensors: logging them costs no sync).
    """

    def __init__(
        self, margin: float = 1.0, swap: bool = False, gather_across_ranks: bool = True
    ) -> None:
        super().__init__()
        if margin <= 0:
            raise LabError(f"model.margin must be > 0, got {margin}")
        self.margin = margin
        self.gather_across_ranks = gather_across_ranks
        self.per_triplet = nn.TripletMarginLoss(margin=margin, p=2.0, swap=swap, reduction="none")
        self.last_active_fraction = torch.tensor(0.0)
        self.last_anchor_fraction = torch.tensor(0.0)

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        if self.gather_across_ranks and world_size() > 1:
            embeddings, labels = gather_embeddings(embeddings, labels)
            if generator is None:  # the processes' global random states may differ
                generator = shared_generator(labels.device)
        anchors, positives, negatives = sample_triplets(labels, generator)
        self.last_anchor_fraction = embeddings.new_tensor(len(anchors) / max(len(labels), 1))
        if not len(anchors):
            self.last_active_fraction = embeddings.new_zeros(()).detach()
            return embeddings.sum() * 0.0  # keeps the graph: backward gives zero gradients
        losses = self.per_triplet(embeddings[anchors], embeddings[positives], embeddings[negatives])
        self.last_active_fraction = (losses > 0).float().mean().detach()
        return losses.mean()
