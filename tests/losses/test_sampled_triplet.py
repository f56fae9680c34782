"""In-batch random triplets (``sample_triplets``) and the sampled triplet margin loss
(seed 004's contrastive encoder) against brute force and torch's TripletMarginLoss."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch import nn

from lab.errors import LabError
from lab.losses import SampledTripletLoss, sample_triplets

# -- sampling ---------------------------------------------------------------------------

# Singletons (no positive), a one-class batch (no negative), an empty batch, sizes up to
# the source's 2048.
LABELS = [
    torch.tensor([3, 3, 1, 7, 7, 7, 0, 3]),
    torch.tensor([5, 5, 5, 5]),
    torch.tensor([0, 1, 2]),
    torch.tensor([], dtype=torch.long),
    torch.randint(0, 10, (2048,), generator=torch.Generator().manual_seed(1)),
    torch.randint(0, 40, (97,), generator=torch.Generator().manual_seed(2)),
]


@pytest.mark.parametrize("labels", LABELS, ids=lambda t: f"B{len(t)}")
def test_triplets_are_valid_and_cover_exactly_the_anchors_that_have_both(labels):
    anchors, positives, negatives = sample_triplets(labels, torch.Generator().manual_seed(0))
    assert len(anchors) == len(positives) == len(negatives)
    assert torch.equal(labels[positives], labels[anchors])  # same class
    assert not (positives == anchors).any()  # never the anchor itself
    assert (labels[negatives] != labels[anchors]).all()  # another class
    counts = Counter(labels.tolist())
    expected = [
        i for i, c in enumerate(labels.tolist()) if counts[c] > 1 and len(counts) > 1
    ]  # brute force: another of its class, and another class in the batch
    assert anchors.tolist() == expected


def test_sampling_is_reproducible_with_a_seed_and_varies_without():
    labels = LABELS[-1]
    first = sample_triplets(labels, torch.Generator().manual_seed(7))
    again = sample_triplets(labels, torch.Generator().manual_seed(7))
    other = sample_triplets(labels, torch.Generator().manual_seed(8))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[1], other[1]) and not torch.equal(first[2], other[2])
    torch.manual_seed(3)  # no generator: torch's global one, as seed_everything sets it
    from_global = sample_triplets(labels)
    torch.manual_seed(3)
    assert torch.equal(sample_triplets(labels)[1], from_global[1])


def test_every_valid_positive_and_negative_is_drawn_about_equally_often():
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2, 3])
    draws = 3000
    generator = torch.Generator().manual_seed(0)
    picked_positive, picked_negative = Counter(), Counter()
    for _ in range(draws):
        anchors, positives, negatives = sample_triplets(labels, generator)
        picked_positive.update(zip(anchors.tolist(), positives.tolist(), strict=True))
        picked_negative.update(zip(anchors.tolist(), negatives.tolist(), strict=True))
    for anchor in range(len(labels)):
        if anchor == 9:  # class 3 has one image: never an anchor
            assert not any(a == 9 for a, _ in picked_positive)
            continue
        same = [j for j in range(len(labels)) if labels[j] == labels[anchor] and j != anchor]
        other = [j for j in range(len(labels)) if labels[j] != labels[anchor]]
        for candidates, picked in ((same, picked_positive), (other, picked_negative)):
            counts = [picked[(anchor, j)] for j in candidates]
            assert sum(counts) == draws
            expected = draws / len(candidates)
            # Binomial counts: 5 standard deviations either side of the uniform share.
            sd = (draws * (1 / len(candidates)) * (1 - 1 / len(candidates))) ** 0.5
            assert all(abs(c - expected) < 5 * sd + 1 for c in counts), (anchor, counts)


# -- the loss ---------------------------------------------------------------------------


def test_loss_is_torch_triplet_margin_loss_on_the_sampled_triplets():
    torch.manual_seed(0)
    embeddings = torch.randn(32, 5, requires_grad=True)
    labels = torch.arange(32) % 4
    loss_fn = SampledTripletLoss(margin=1.0)
    loss = loss_fn(embeddings, labels, torch.Generator().manual_seed(4))
    anchors, positives, negatives = sample_triplets(labels, torch.Generator().manual_seed(4))
    # Brute force, one triplet at a time, with plain Euclidean norms.
    terms = []
    for a, p, n in zip(anchors.tolist(), positives.tolist(), negatives.tolist(), strict=True):
        d_ap = (embeddings[a] - embeddings[p]).norm()
        d_an = (embeddings[a] - embeddings[n]).norm()
        terms.append(torch.clamp(d_ap - d_an + 1.0, min=0.0))
    brute = torch.stack(terms)
    torch.testing.assert_close(loss, brute.mean(), atol=1e-4, rtol=1e-4)
    library = nn.TripletMarginLoss(margin=1.0)(
        embeddings[anchors], embeddings[positives], embeddings[negatives]
    )
    torch.testing.assert_close(loss, library)
    assert float(loss_fn.last_active_fraction) == pytest.approx(float((brute > 0).float().mean()))
    assert float(loss_fn.last_anchor_fraction) == 1.0
    loss.backward()
    assert embeddings.grad is not None and embeddings.grad.abs().sum() > 0


def test_a_batch_without_any_triplet_gives_zero_and_zero_gradients():
    embeddings = torch.randn(3, 4, requires_grad=True)
    loss_fn = SampledTripletLoss()
    loss = loss_fn(embeddings, torch.tensor([0, 1, 2]))
    loss.backward()
    assert float(loss.detach()) == 0.0 and float(loss_fn.last_anchor_fraction) == 0.0
    assert torch.equal(embeddings.grad, torch.zeros_like(embeddings))
    with pytest.raises(LabError, match="margin must be > 0"):
        SampledTripletLoss(margin=0.0)


def test_draws_are_float32_on_the_device(monkeypatch):
    # float64 random numbers fail on Apple GPUs: the sampler must draw float32.
    seen = []
    rand = torch.rand

    def spy(*args, **kwargs):
        seen.append(kwargs.get("dtype"))
        return rand(*args, **kwargs)

    monkeypatch.setattr(torch, "rand", spy)
    sample_triplets(torch.arange(8) % 3, torch.Generator().manual_seed(0))
    assert seen == [torch.float32]


def test_evaluation_draws_are_seeded_by_the_batch_index():
    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.arange(64) % 5
    loss = SampledTripletLoss().eval()
    loss.eval_batch(3)
    first = loss(x, y)
    torch.manual_seed(123)  # the global random state does not matter in evaluation
    loss.eval_batch(3)
    assert torch.equal(loss(x, y), first)
    loss.eval_batch(4)
    assert not torch.equal(loss(x, y), first)
    assert set(loss.stats()) == {"active_triplets", "triplet_anchors"}
    assert not loss.needs_pk_batches
