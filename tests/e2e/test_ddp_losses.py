"""Training on several processes (DDP) gives what one process gives on the global batch.

Two CPU processes (gloo) are started once (the ``ranks`` fixture, tests/e2e/conftest.py);
each runs every scenario of tests/e2e/ddp.py and saves what it saw, and the tests here
and in test_ddp_runs.py compare that with one process:

- the batch-hard and the sampled triplet loss, computed on every process's embeddings
  (``lab.distributed.gather_with_grad``): the loss, and the parameter gradient of a
  DDP-wrapped layer, equal those of one process on the global batch, also when the
  processes hold unequal batches (a last batch);
- the nearest-centre task's class centres: the mean of every process's training
  embeddings, also with two validations in one epoch;
- the center loss: after a few steps of a Lightning ``Trainer(strategy="ddp", devices=2)``
  the centers are bit-identical on both processes and equal the one-process run's;
- a Lightning test of a seeded Classifier on digits: the same test/acc, test/macro_f1 and
  embedding metrics as one process, and the evaluation files written once, by rank 0,
  equal to one process's. The 360 test digits split evenly (180 per process): on an
  odd-sized split Lightning's DistributedSampler repeats a sample, which torchmetrics'
  test/acc and test/macro_f1 then count twice (the embedding metrics, the confusion
  matrix and the t-SNE drop it: ``lab.distributed.gather_split``).

The backbones have no BatchNorm: each process would normalise its own half-batch, which
is DDP's documented behaviour (SyncBatchNorm runs only on GPUs), not a bug of ours.
"""

from __future__ import annotations

import lightning as L
import pytest
import torch

from lab.losses import BatchHardTripletLoss, CenterLoss, CrossEntropy
from lab.models import MLP
from lab.tasks import Classifier
from tests.e2e.ddp import (
    LOSSES,
    SPLITS,
    WORLD,
    center_run,
    centres_data,
    centres_model,
    embedder,
    one_process_triplet,
    triplet_batch,
)

# The two DDP processes start once (the `ranks` fixture), on one worker under loadgroup.
pytestmark = pytest.mark.xdist_group("ddp_ranks")


@pytest.mark.parametrize("split", list(SPLITS))
@pytest.mark.parametrize("name", list(LOSSES))
def test_triplet_loss_and_gradients_on_two_ranks_equal_one_process(ranks, name, split):
    _, saved = ranks
    expected = one_process_triplet(name)
    bounds = SPLITS[split]
    for rank, result in enumerate(saved):
        got = result["triplet"][name, split]
        torch.testing.assert_close(got["loss"], expected["loss"])  # the global batch's loss
        # After DDP's averaging, each process's parameter gradient is the global one...
        torch.testing.assert_close(got["weight_grad"], expected["weight_grad"])
        torch.testing.assert_close(got["bias_grad"], expected["bias_grad"])
        # ...because each process's own rows got WORLD times their global-batch gradient.
        rows = slice(bounds[rank], bounds[rank + 1])
        torch.testing.assert_close(got["embedding_grad"] / WORLD, expected["embedding_grad"][rows])
    assert expected["weight_grad"].abs().sum() > 0  # the comparison is not of zeros


def test_without_gathering_each_rank_mines_its_own_batch(ranks):
    _, saved = ranks
    x, y = triplet_batch()
    for rank, result in enumerate(saved):
        rows = slice(rank * 8, rank * 8 + 8)
        expected = BatchHardTripletLoss()(embedder()(x[rows]), y[rows])
        torch.testing.assert_close(result["triplet"]["local"], expected)
    assert not torch.allclose(saved[0]["triplet"]["local"], saved[1]["triplet"]["local"])


def test_sampled_triplets_drawn_without_a_generator_are_the_same_on_every_rank(ranks):
    _, saved = ranks
    # Different global random states per process, yet the same triplets and loss.
    assert torch.equal(saved[0]["triplet"]["shared_draw"], saved[1]["triplet"]["shared_draw"])


def test_center_loss_centers_identical_on_ranks_and_equal_to_one_process(ranks):
    _, saved = ranks
    first, second = (result["center"] for result in saved)
    assert torch.equal(first["centers"], second["centers"])  # bit for bit
    assert torch.equal(first["weight"], second["weight"])
    expected = center_run(1)
    torch.testing.assert_close(first["centers"], expected["centers"])
    torch.testing.assert_close(first["weight"], expected["weight"])
    L.seed_everything(0, verbose=False)  # the centers did move, from their seeded start
    start = (
        Classifier(
            MLP(hidden=[16], in_channels=1, image_size=8),
            num_classes=4,
            losses=[CrossEntropy(), CenterLoss()],
        )
        .losses[1]
        .centers
    )
    assert not torch.allclose(first["centers"], start)


def test_class_centres_are_the_mean_of_every_ranks_training_embeddings(ranks):
    # DDP broadcasts buffers from rank 0 at every forward, and an in-place all-reduce
    # would count the first half of the epoch twice at the second validation: neither
    # may change the centres, the class means of all 64 training images' embeddings.
    _, saved = ranks
    model = centres_model().eval()
    x, y = centres_data().tensors
    with torch.no_grad():
        features = model.features(x)
    expected = torch.stack([features[y == c].mean(0) for c in range(4)])
    for result in saved:
        assert bool(result["centres"]["present"].all())
        torch.testing.assert_close(result["centres"]["centres"], expected)
