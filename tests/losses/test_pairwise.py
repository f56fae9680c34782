"""The worked example of docs/contributing.md: pytorch-metric-learning's ContrastiveLoss
as a loss term, against a brute-force loop over the pairs, and inside the task."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset

from lab.cli import main
from lab.errors import LabError
from lab.losses import PairwiseContrastiveLoss
from lab.models import MLP
from lab.tasks import Classifier
from tests.conftest import REPO


def brute_force(x: torch.Tensor, y: torch.Tensor, pos_margin: float, neg_margin: float):
    """Mean of the non-zero pair losses (pml's AvgNonZeroReducer), positives and negatives
    averaged separately and summed, as pml does for its two pair kinds."""
    positives, negatives = [], []
    for i in range(len(y)):
        for j in range(len(y)):
            if i == j:
                continue
            d = torch.dist(x[i], x[j])
            if y[i] == y[j]:
                positives.append(torch.relu(d - pos_margin))
            else:
                negatives.append(torch.relu(neg_margin - d))

    def nonzero_mean(values):
        values = torch.stack(values)
        kept = values[values > 0]
        return kept.mean() if len(kept) else values.sum() * 0

    return nonzero_mean(positives) + nonzero_mean(negatives)


def test_matches_brute_force_in_value_and_gradient():
    torch.manual_seed(0)
    x = torch.randn(12, 3, dtype=torch.float64, requires_grad=True)
    y = torch.arange(12) % 3
    ours = PairwiseContrastiveLoss(pos_margin=0.5, neg_margin=2.5)(x, y)
    reference = brute_force(x, y, 0.5, 2.5)
    torch.testing.assert_close(ours, reference)
    torch.testing.assert_close(torch.autograd.grad(ours, x), torch.autograd.grad(reference, x))


def test_bad_margins_are_refused():
    with pytest.raises(LabError, match="pos_margin < neg_margin"):
        PairwiseContrastiveLoss(pos_margin=1.0, neg_margin=1.0)


def test_the_task_trains_with_it_alone_and_classifies_by_the_nearest_centre():
    torch.manual_seed(0)
    model = Classifier(
        MLP(hidden=[16], in_channels=1, image_size=8),
        num_classes=4,
        losses=[PairwiseContrastiveLoss()],
        embedding_metrics=False,
    )
    assert model.predict == "nearest_centre" and not model.losses.needs_pk_batches
    x, y = torch.randn(32, 1, 8, 8), torch.arange(32) % 4
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    trainer = L.Trainer(
        max_epochs=1, logger=False, enable_progress_bar=False, enable_checkpointing=False
    )
    trainer.fit(model, loader, loader)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert model.means.ready and "val/acc" in trainer.callback_metrics


def test_its_example_yaml_builds_the_task_with_the_term(capsys, workdir):
    config = REPO / "experiments" / "_examples" / "pairwise-contrastive.yaml"
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    model = yaml.safe_load(capsys.readouterr().out)["model"]
    (term,) = model["init_args"]["losses"]
    assert term["class_path"] == "lab.losses.PairwiseContrastiveLoss"
    assert term["init_args"]["neg_margin"] == 1.0
