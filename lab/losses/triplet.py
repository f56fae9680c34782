"""Batch-hard triplet loss (Hermans, Beyer & Leibe 2017, "In Defense of the Triplet Loss").

For every anchor in the batch: its farthest positive and its nearest negative, on plain
(not squared) Euclidean distances; the loss is ``relu(d_ap - d_an + margin)`` or, with
``soft_margin``, ``softplus(d_ap - d_an)``, averaged over the anchors that have both a
positive and a negative. Vectorised over the batch: one ``(B, B)`` matrix product.

Checked against a brute-force loop and against pytorch-metric-learning's
``BatchHardMiner`` + ``TripletMarginLoss`` (tests/losses/test_triplet.py).

Both are terms of ``lab.tasks.Classifier`` (``model.losses``): alone on an embedding
(the task then has no classifier head and classifies by the nearest class centre) or
beside cross-entropy on the pooled features. The batch-hard loss needs P x K batches
(``needs_pk_batches``); the sampled one only batches large enough that classes repeat.

Under DDP both losses are by default computed on the global batch, the embeddings of
every process (``gather_across_ranks``, ``lab.distributed``): batch-hard mining
then sees all of them, and DDP's gradient averaging gives the single-process gradient.

Also in-batch *random* triplets (``sample_triplets``, ``SampledTripletLoss``): a random
positive and a random negative per anchor under ``torch.nn.TripletMarginLoss``, as the
contrastive encoder of seed 004 was trained (tests/losses/test_sampled_triplet.py).
Validation and test draw their triplets from a generator seeded by the batch index, so
``val/loss`` compares from epoch to epoch.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from lab.distributed import gather_embeddings, shared_generator, world_size
from lab.errors import LabError
from lab.losses.precision import float32_loss
from lab.losses.term import LossTerm


def squared_distances(embeddings: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances ``(B, B)`` from one matrix product, clamped at 0."""
    squared = embeddings.pow(2).sum(dim=1)
    gram = embeddings @ embeddings.T
    return (squared.unsqueeze(0) + squared.unsqueeze(1) - 2.0 * gram).clamp(min=0.0)


def safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """``sqrt(x)`` for ``x >= 0`` with a zero (not infinite) gradient where ``x == 0``."""
    zero = x == 0
    return torch.sqrt(x.masked_fill(zero, 1.0)).masked_fill(zero, 0.0)


def mining_groups(same: torch.Tensor, group_samples: int) -> torch.Tensor:
    """Each sample's group ``(B,)`` from the same-class matrix ``same`` ``(B, B)``: its
    place among its class's samples in the batch (0, 1, ... in batch order: how many
    earlier ones share its class), integer-divided by ``group_samples``. No data-dependent
    shape, so no host sync."""
    earlier = torch.ones_like(same).tril(diagonal=-1)
    return (same & earlier).sum(dim=1) // group_samples


class BatchHardTripletLoss(LossTerm):
    """``loss(embeddings (B, D), labels (B,))``: the batch-hard triplet loss, a scalar.

    Args:
        weight: the term's factor in the total loss (>= 0).
        margin: the hinge's margin (> 0); unused with ``soft_margin``.
        soft_margin: ``softplus(d_ap - d_an)`` instead of the hinge.
        group_samples: mine within groups of the batch instead of the whole batch: group
            ``g`` holds the ``g``-th run of ``group_samples`` images of every class (in
            batch order), and an anchor's hardest positive and negative are chosen in its
            group. A P x K batch with ``group_samples=2`` then trains on the mean of K / 2
            batch-hard losses of P x 2 batches, at the big batch's speed. None: the whole
            batch (Hermans et al.).
        gather_across_ranks: under DDP, mine the triplets in the global batch (every
            process's embeddings, see ``lab.distributed``); the loss is then the
            global batch's on every process. False: each process mines its own batch.
        name: logged as ``train/<name>``; ``triplet`` by default.

    After each call, ``last_active_fraction`` holds the share of the valid anchors whose
    triplet still violates the margin (a detached tensor: logging it, as
    ``train/active_triplets``, costs no sync).
    """

    default_name = "triplet"
    needs_pk_batches = True

    def __init__(
        self,
        weight: float = 1.0,
        margin: float = 0.2,
        soft_margin: bool = False,
        group_samples: int | None = None,
        gather_across_ranks: bool = True,
        name: str | None = None,
    ) -> None:
        super().__init__(weight, name)
        if not soft_margin and margin <= 0:
            raise LabError(
                f"BatchHardTripletLoss: margin must be > 0 (or soft_margin), got {margin}"
            )
        if group_samples is not None and group_samples < 2:
            raise LabError(
                "BatchHardTripletLoss: group_samples must be at least 2 (an anchor needs a "
                f"positive in its group) or null for the whole batch, got {group_samples}"
            )
        self.margin = margin
        self.soft_margin = soft_margin
        self.group_samples = group_samples
        self.gather_across_ranks = gather_across_ranks
        self.last_active_fraction = torch.tensor(0.0)

    def stats(self) -> dict[str, torch.Tensor]:
        return {"active_triplets": self.last_active_fraction}

    @float32_loss
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
        if self.group_samples is not None:
            group = mining_groups(same, self.group_samples)
            same_group = group.unsqueeze(0) == group.unsqueeze(1)
            positive, negative = positive & same_group, negative & same_group
        # Farthest positive: non-positives count as 0 (distances are >= 0). Nearest
        # negative: non-negatives count as +inf.
        hardest_positive = distances.masked_fill(~positive, 0.0).amax(dim=1)
        hardest_negative = distances.masked_fill(~negative, float("inf")).amin(dim=1)
        valid = positive.any(dim=1) & negative.any(dim=1)
        # Anchors without a positive or a negative are masked out, not indexed away: no
        # data-dependent shape, so no host sync. Their gap is finite or -inf, and the
        # masked branch gives them a zero gradient.
        gap = safe_sqrt(hardest_positive) - safe_sqrt(hardest_negative)
        losses = F.softplus(gap) if self.soft_margin else F.relu(gap + self.margin)
        violated = (gap > 0 if self.soft_margin else gap + self.margin > 0) & valid
        count = valid.sum().clamp(min=1)
        self.last_active_fraction = (violated.sum() / count).float().detach()
        # Without a valid anchor the loss is 0, still on the graph (zero gradients).
        return torch.where(valid, losses, 0.0).sum() / count


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
    draws = torch.rand(2, size, generator=generator, device=targets.device, dtype=torch.float32)

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


class SampledTripletLoss(LossTerm):
    """``loss(embeddings (B, D), labels (B,))``: triplet margin loss on in-batch random
    triplets (:func:`sample_triplets`), a scalar.

    The loss is ``torch.nn.TripletMarginLoss``: ``relu(d(a, p) - d(a, n) + margin)`` on
    plain (not squared) Euclidean distances, averaged over the sampled triplets. Unlike
    :class:`BatchHardTripletLoss` it needs no P x K batches: a large random batch (2048 in
    the source) gives nearly every anchor a positive.

    Args:
        weight: the term's factor in the total loss (>= 0).
        margin: the hinge's margin (> 0).
        swap: the distance swap of Balntas et al. (``TripletMarginLoss(swap=True)``).
        gather_across_ranks: under DDP, draw the triplets from the global batch (every
            process's embeddings, see ``lab.distributed``) with a generator seeded
            alike on every process when none is given, so the loss is the global batch's
            on every process. False: each process draws from its own batch.
        name: logged as ``train/<name>``; ``triplet`` by default.

    After each call, ``last_active_fraction`` holds the share of sampled triplets that
    violate the margin and ``last_anchor_fraction`` the share of the batch that got a
    triplet (detached tensors: logging them costs no sync).
    """

    default_name = "triplet"

    def __init__(
        self,
        weight: float = 1.0,
        margin: float = 1.0,
        swap: bool = False,
        gather_across_ranks: bool = True,
        name: str | None = None,
    ) -> None:
        super().__init__(weight, name)
        if margin <= 0:
            raise LabError(f"SampledTripletLoss: margin must be > 0, got {margin}")
        self.margin = margin
        self.gather_across_ranks = gather_across_ranks
        self.per_triplet = nn.TripletMarginLoss(margin=margin, p=2.0, swap=swap, reduction="none")
        self.last_active_fraction = torch.tensor(0.0)
        self.last_anchor_fraction = torch.tensor(0.0)
        self._eval_seed = 0

    def stats(self) -> dict[str, torch.Tensor]:
        return {
            "active_triplets": self.last_active_fraction,
            "triplet_anchors": self.last_anchor_fraction,
        }

    def eval_batch(self, batch_idx: int) -> None:
        self._eval_seed = batch_idx

    @float32_loss
    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        if generator is None and not self.training:
            # The same triplets for the same evaluation batch every epoch.
            generator = torch.Generator(device=labels.device).manual_seed(self._eval_seed)
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
