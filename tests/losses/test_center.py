"""Center loss against a brute-force loop, and its own optimizer step (lambda does not
change how fast the centres move; no host sync; a non-finite step is skipped)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from lab.errors import LabError
from lab.losses import CenterLoss


def brute_force_center(x: torch.Tensor, y: torch.Tensor, centers: torch.Tensor):
    total = sum(0.5 * ((x[i] - centers[y[i]]) ** 2).sum() for i in range(len(y)))
    return total / len(y)


def test_center_loss_matches_brute_force_in_value_and_gradients():
    torch.manual_seed(0)
    loss = CenterLoss(num_classes=5, dim=3).double()
    x = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 0, 1, 3, 3, 3, 4])
    ours = loss(x, y)
    reference = brute_force_center(x, y, loss.centers)
    torch.testing.assert_close(ours, reference)
    grads = torch.autograd.grad(ours, (x, loss.centers))
    reference_grads = torch.autograd.grad(reference, (x, loss.centers))
    for got, want in zip(grads, reference_grads, strict=True):
        torch.testing.assert_close(got, want)
    # The closed forms: dL/dx_i = (x_i - c_yi) / B; dL/dc_j = sum_{y_i = j} (c_j - x_i) / B.
    torch.testing.assert_close(grads[0], (x - loss.centers[y]).detach() / 7)
    assert torch.equal(grads[1][2], torch.zeros(3, dtype=torch.float64))  # class 2 absent


def test_the_loss_weight_does_not_change_how_fast_centers_move():
    torch.manual_seed(0)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    moved = []
    for weight in (0.1, 1.0, 7.0):
        torch.manual_seed(1)
        loss = CenterLoss(weight=weight, lr=0.5, num_classes=3, dim=4)
        before = loss.centers.detach().clone()
        loss.configure_optimizer()
        (weight * loss(x, y)).backward()
        loss.before_optimizer_step(SimpleNamespace(trainer=None))
        moved.append(loss.centers.detach() - before)
        # One SGD step at rate alpha: c_j -= alpha * sum_{y_i = j} (c_j - x_i) / B.
        for j in range(3):
            members = x[y == j]
            expected = -0.5 * (before[j] - members).sum(0) / 16
            torch.testing.assert_close(moved[-1][j], expected)
    torch.testing.assert_close(moved[0], moved[1])
    torch.testing.assert_close(moved[0], moved[2])


def test_center_loss_bad_input():
    with pytest.raises(LabError):
        CenterLoss(num_classes=1, dim=4)
    with pytest.raises(LabError):
        CenterLoss(num_classes=3, dim=0)
    with pytest.raises(LabError, match="both"):
        CenterLoss(num_classes=3)
    with pytest.raises(LabError, match="alpha"):
        CenterLoss(lr=0.0)
    with pytest.raises(LabError, match="weight must be >= 0"):
        CenterLoss(weight=-0.1)
    with pytest.raises(LabError, match="build"):
        CenterLoss()(torch.randn(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"features \(B, 4\)"):
        CenterLoss(num_classes=3, dim=4)(torch.randn(2, 5), torch.tensor([0, 1]))


def test_build_makes_the_centres_the_task_asks_for():
    loss = CenterLoss(weight=0.3, lr=0.2)
    assert loss.centers is None and loss.own_parameters() == []
    loss.build(6, 5)
    assert loss.centers.shape == (6, 5) and loss.own_parameters() == [loss.centers]
    assert loss(torch.randn(4, 5), torch.tensor([0, 1, 2, 5])).ndim == 0


class FakeScaler:
    """An AMP scaler whose scale is a tensor; ``get_scale()`` (a sync) must not be used."""

    def __init__(self, scale: float) -> None:
        self.scale = torch.tensor(scale)

    def _get_scale_async(self) -> torch.Tensor:
        return self.scale

    def get_scale(self) -> float:
        raise AssertionError("get_scale() synchronises with the device")


def task_with_scaler(scale: float) -> SimpleNamespace:
    return SimpleNamespace(
        trainer=SimpleNamespace(precision_plugin=SimpleNamespace(scaler=FakeScaler(scale)))
    )


def test_the_step_unscales_the_centres_gradient_by_the_scalers_tensor():
    torch.manual_seed(0)
    x, y = torch.randn(8, 3), torch.arange(8) % 2
    moved = []
    for scale in (1.0, 1024.0):
        torch.manual_seed(1)
        loss = CenterLoss(weight=0.5, lr=0.5, num_classes=2, dim=3)
        before = loss.centers.detach().clone()
        loss.configure_optimizer()
        (scale * 0.5 * loss(x, y)).backward()
        loss.before_optimizer_step(task_with_scaler(scale))
        moved.append(loss.centers.detach() - before)
        assert loss.centers.grad is None  # zeroed for the next step
    torch.testing.assert_close(moved[0], moved[1])
    assert moved[0].abs().sum() > 0


def test_a_non_finite_gradient_leaves_the_centres_where_they_are():
    loss = CenterLoss(weight=1.0, lr=0.5, num_classes=2, dim=3)
    before = loss.centers.detach().clone()
    loss.configure_optimizer()
    loss.centers.grad = torch.tensor([[float("inf"), 0.0, 1.0], [0.0, 1.0, 2.0]])
    loss.before_optimizer_step(task_with_scaler(2.0))
    assert torch.equal(loss.centers.detach(), before)
