"""The batch-hard triplet loss against a brute-force loop and pytorch-metric-learning."""

from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning import losses, miners
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.reducers import MeanReducer

from lab.errors import LabError
from lab.losses import BatchHardTripletLoss


def brute_force_triplet(x: torch.Tensor, y: torch.Tensor, margin: float, soft: bool):
    per_anchor = []
    for a in range(len(y)):
        positives = [torch.dist(x[a], x[p]) for p in range(len(y)) if p != a and y[p] == y[a]]
        negatives = [torch.dist(x[a], x[n]) for n in range(len(y)) if y[n] != y[a]]
        if not positives or not negatives:
            continue
        gap = max(positives) - min(negatives)
        per_anchor.append(torch.nn.functional.softplus(gap) if soft else torch.relu(gap + margin))
    return torch.stack(per_anchor).mean() if per_anchor else x.sum() * 0


CASES = {
    "pk": torch.arange(6).repeat_interleave(4),
    "singletons": torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 4]),  # classes 2 and 4: no positive
    "two-classes": torch.tensor([0, 1] * 5),
}


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("soft", [False, True], ids=["hinge", "soft"])
def test_triplet_matches_brute_force_in_value_and_gradient(case, soft):
    labels = CASES[case]
    torch.manual_seed(0)
    x = torch.randn(len(labels), 5, dtype=torch.float64, requires_grad=True)
    ours = BatchHardTripletLoss(margin=0.7, soft_margin=soft)(x, labels)
    reference = brute_force_triplet(x, labels, 0.7, soft)
    torch.testing.assert_close(ours, reference)
    (grad_ours,) = torch.autograd.grad(ours, x)
    (grad_reference,) = torch.autograd.grad(reference, x)
    torch.testing.assert_close(grad_ours, grad_reference)


@pytest.mark.parametrize("soft", [False, True], ids=["hinge", "soft"])
def test_grouped_mining_is_the_loss_of_the_sub_batches_it_names(soft):
    # 3 classes x 6 images, shuffled; groups of 2 per class: the g-th pair of each class
    # (in batch order) is sub-batch g, mined on its own by the brute-force loop.
    torch.manual_seed(1)
    labels = torch.arange(3).repeat_interleave(6)[torch.randperm(18)]
    x = torch.randn(18, 5, dtype=torch.float64, requires_grad=True)
    place = torch.tensor([int((labels[:i] == labels[i]).sum()) for i in range(18)])
    sub_batches = [torch.nonzero(place // 2 == g).flatten() for g in range(3)]
    reference = torch.stack(
        [brute_force_triplet(x[i], labels[i], 0.3, soft) for i in sub_batches]
    ).mean()
    ours = BatchHardTripletLoss(margin=0.3, soft_margin=soft, group_samples=2)(x, labels)
    torch.testing.assert_close(ours, reference)
    (grad_ours,) = torch.autograd.grad(ours, x)
    (grad_reference,) = torch.autograd.grad(reference, x)
    torch.testing.assert_close(grad_ours, grad_reference)
    whole = BatchHardTripletLoss(margin=0.3, soft_margin=soft)(x, labels)
    assert not torch.isclose(ours, whole)  # the groups changed which pairs are hardest


@pytest.mark.parametrize("labels", [torch.zeros(6, dtype=torch.long), torch.arange(6)])
def test_a_batch_without_valid_anchors_gives_a_zero_that_backpropagates(labels):
    x = torch.randn(6, 4, requires_grad=True)
    loss = BatchHardTripletLoss()(x, labels)
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(x.grad, torch.zeros_like(x))


def test_duplicate_embeddings_give_finite_gradients():
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0], [3.0, 1.0]], requires_grad=True)
    BatchHardTripletLoss(margin=0.5)(x, torch.tensor([0, 0, 1, 1])).backward()
    assert torch.isfinite(x.grad).all()


def test_triplet_agrees_with_pytorch_metric_learning():
    # pml's defaults differ on two points: LpDistance normalises the embeddings, and
    # AvgNonZeroReducer averages over violating triplets only. Switched to ours here.
    torch.manual_seed(1)
    labels = torch.arange(8).repeat_interleave(4)
    x = torch.randn(32, 16)
    distance = LpDistance(normalize_embeddings=False)
    miner = miners.BatchHardMiner(distance=distance)
    pml = losses.TripletMarginLoss(margin=0.3, distance=distance, reducer=MeanReducer())
    expected = pml(x, labels, miner(x, labels))
    torch.testing.assert_close(BatchHardTripletLoss(margin=0.3)(x, labels), expected)


def test_active_fraction_counts_violating_anchors():
    x = torch.tensor([[0.0], [0.1], [5.0], [5.1]])
    loss = BatchHardTripletLoss(margin=0.2)
    loss(x, torch.tensor([0, 0, 1, 1]))  # well separated: nothing violates
    assert loss.last_active_fraction.item() == 0.0
    loss(x, torch.tensor([0, 1, 0, 1]))  # every anchor's negative is nearer than its positive
    assert loss.last_active_fraction.item() == 1.0


def test_a_non_positive_margin_or_a_negative_weight_is_refused():
    with pytest.raises(LabError, match="group_samples must be at least 2"):
        BatchHardTripletLoss(group_samples=1)
    with pytest.raises(LabError, match="margin must be > 0"):
        BatchHardTripletLoss(margin=0.0)
    BatchHardTripletLoss(margin=0.0, soft_margin=True)  # the soft margin has no margin
    with pytest.raises(LabError, match="weight must be >= 0"):
        BatchHardTripletLoss(weight=-1.0)


def test_it_declares_what_the_task_must_give_it():
    loss = BatchHardTripletLoss(weight=2.0)
    assert loss.needs_pk_batches and not loss.uses_logits
    assert loss.name == "triplet" and loss.weight == 2.0
    loss(torch.randn(8, 3), torch.arange(4).repeat(2))
    assert set(loss.stats()) == {"active_triplets"}
    assert loss.stats()["active_triplets"].requires_grad is False
