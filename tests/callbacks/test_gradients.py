"""``GradientNorms``: per-group and total gradient norms, against brute force."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from lab.callbacks.gradients import GradientNorms, gradient_norms, group_of
from lab.errors import LabError
from tests.callbacks import quiet_trainer

# -- gradient norms ------------------------------------------------------------------------


class Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8))
        self.head = nn.Linear(8, 3)
        self.frozen = nn.Linear(3, 3)  # never used: no gradient
        self.frozen.requires_grad_(False)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.head(self.encoder(x)), y)

    def configure_optimizers(self):
        return torch.optim.SGD([p for p in self.parameters() if p.requires_grad], lr=0.1)


def tiny_loader(n: int = 32) -> DataLoader:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 4, generator=g)
    return DataLoader(TensorDataset(x, torch.arange(n) % 3), batch_size=8)


class GradRecorder(L.Callback):
    def __init__(self) -> None:
        self.grads: list[dict[str, torch.Tensor]] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.grads.append(
            {n: p.grad.clone() for n, p in pl_module.named_parameters() if p.grad is not None}
        )


def brute_force(grads: dict[str, torch.Tensor], prefix: str, p: float) -> float:
    parts = [g.flatten() for n, g in grads.items() if n == prefix or n.startswith(prefix + ".")]
    return float(torch.linalg.vector_norm(torch.cat(parts), ord=p))


def test_group_of_takes_the_first_parts_of_the_name():
    assert group_of("backbone.layer1.0.conv1.weight", 2) == "backbone.layer1"
    assert group_of("backbone.layer1.0.conv1.weight", None) == "backbone.layer1.0.conv1.weight"
    assert group_of("head.bias", 5) == "head.bias"


@pytest.mark.parametrize("p", [2.0, 1.0, float("inf")])
@pytest.mark.parametrize("depth", [None, 1, 2])
def test_gradient_norms_equal_brute_force(p: float, depth: int | None):
    model = Tiny()
    x, y = next(iter(tiny_loader()))
    model.training_step((x, y), 0).backward()
    grads = {n: t.grad for n, t in model.named_parameters() if t.grad is not None}
    norms = gradient_norms(model.named_parameters(), norm_type=p, depth=depth)
    groups = {group_of(n, depth) for n in grads}
    assert set(norms) == groups | {"total"}
    for group in groups:
        assert float(norms[group]) == pytest.approx(brute_force(grads, group, p), rel=1e-5)
    everything = torch.cat([g.flatten() for g in grads.values()])
    assert float(norms["total"]) == pytest.approx(
        float(torch.linalg.vector_norm(everything, ord=p)), rel=1e-5
    )
    only_total = gradient_norms(model.named_parameters(), norm_type=p, per_layer=False)
    assert set(only_total) == {"total"}
    assert float(only_total["total"]) == pytest.approx(float(norms["total"]), rel=1e-6)


def logged_grad_norms(tmp_path: Path, callback: GradientNorms, steps: int):
    """Fit ``Tiny`` for ``steps`` steps with ``callback``; the rows of ``metrics.csv`` that
    hold gradient norms and each step's gradients, as the optimizer saw them."""
    logger = CSVLogger(tmp_path, name="csv")
    recorder = GradRecorder()
    trainer = quiet_trainer(tmp_path, [callback, recorder], logger=logger, max_steps=steps)
    trainer.fit(Tiny(), train_dataloaders=tiny_loader())
    table = pd.read_csv(Path(logger.log_dir) / "metrics.csv")
    rows = table.dropna(subset=["grad_norm/total"]).dropna(axis=1, how="all")
    return rows.reset_index(drop=True), recorder.grads


def test_callback_logs_group_and_total_norms_of_the_step_gradients(tmp_path: Path):
    rows, grads = logged_grad_norms(tmp_path, GradientNorms(depth=1), steps=1)
    (grads,) = grads
    assert len(rows) == 1 and rows["step"].iloc[0] == 0
    norms = [c for c in rows.columns if c.startswith("grad_norm/")]
    assert sorted(norms) == ["grad_norm/encoder", "grad_norm/head", "grad_norm/total"]
    for group in ("encoder", "head"):
        assert rows[f"grad_norm/{group}"].iloc[0] == pytest.approx(brute_force(grads, group, 2))
    group_norms = [rows["grad_norm/encoder"].iloc[0], rows["grad_norm/head"].iloc[0]]
    assert rows["grad_norm/total"].iloc[0] == pytest.approx(float(np.linalg.norm(group_norms)))


def test_callback_logs_only_every_n_steps_one_norm_per_parameter_by_default(tmp_path: Path):
    # log_every_n_steps stays at 50: the callback writes to the loggers itself.
    rows, grads = logged_grad_norms(tmp_path, GradientNorms(every_n_steps=2), steps=5)
    assert rows["step"].tolist() == [0, 2, 4]  # and no stale repeats at 1 and 3
    trainable = [n for n, p in Tiny().named_parameters() if p.requires_grad]
    assert sorted(c for c in rows.columns if c.startswith("grad_norm/")) == sorted(
        [f"grad_norm/{n}" for n in trainable] + ["grad_norm/total"]
    )
    for (_, row), step_grads in zip(rows.iterrows(), grads[::2], strict=True):
        for name in trainable:
            expected = float(torch.linalg.vector_norm(step_grads[name]))
            assert row[f"grad_norm/{name}"] == pytest.approx(expected, rel=1e-5)


def test_callback_without_per_layer_logs_the_total_only(tmp_path: Path):
    rows, grads = logged_grad_norms(
        tmp_path, GradientNorms(per_layer=False, norm_type=float("inf")), steps=1
    )
    assert [c for c in rows.columns if c.startswith("grad_norm/")] == ["grad_norm/total"]
    largest = max(float(g.abs().max()) for g in grads[0].values())
    assert rows["grad_norm/total"].iloc[0] == pytest.approx(largest)


@pytest.mark.parametrize(
    "kwargs", [{"every_n_steps": 0}, {"norm_type": 0}, {"norm_type": float("nan")}, {"depth": 0}]
)
def test_bad_gradient_settings_are_refused(kwargs):
    with pytest.raises(LabError, match="GradientNorms"):
        GradientNorms(**kwargs)
