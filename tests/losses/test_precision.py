"""Every loss computes in float32 inside a bf16 autocast region (CPU autocast here): its
value and gradient stay within 0.1% of float32's, and without ``float32_loss`` the
batch-hard loss on 512-d ReLU features does not."""

from __future__ import annotations

import pytest
import torch

from lab.losses import (
    BatchHardTripletLoss,
    CenterLoss,
    CrossEntropy,
    PairwiseContrastiveLoss,
    SampledTripletLoss,
)


def relu_features(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.relu(torch.randn(64, 512, generator=g)) * 3
    return x, torch.arange(8).repeat_interleave(8)


def value_and_grad(loss, x, y, autocast: bool, forward=None):
    x = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        value = (forward or loss)(x, y) if forward is None else forward(loss, x, y)
    (grad,) = torch.autograd.grad(value, x)
    return value.detach().float(), grad.float()


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def losses() -> list:
    torch.manual_seed(0)
    return [
        BatchHardTripletLoss(margin=0.2),
        BatchHardTripletLoss(soft_margin=True),
        CenterLoss(num_classes=8, dim=512),
        SampledTripletLoss().eval(),  # seeded draws: the same triplets in both runs
        PairwiseContrastiveLoss(neg_margin=40.0),
    ]


@pytest.mark.parametrize("loss", losses(), ids=lambda m: type(m).__name__)
def test_under_bf16_autocast_value_and_gradient_are_float32s(loss):
    x, y = relu_features()
    value, grad = value_and_grad(loss, x, y, autocast=False)
    value_bf16, grad_bf16 = value_and_grad(loss, x, y, autocast=True)
    assert value.dtype == value_bf16.dtype == torch.float32
    assert relative(value_bf16, value) < 1e-3
    assert relative(grad_bf16, grad) < 1e-3


def test_cross_entropy_on_bf16_logits_is_computed_in_float32():
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(32, 10, generator=g).bfloat16(), torch.arange(32) % 10
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = CrossEntropy()(logits, y)
    assert value.dtype == torch.float32
    expected = torch.nn.functional.cross_entropy(logits.float(), y)
    torch.testing.assert_close(value, expected)


def test_without_the_decorator_the_batch_hard_loss_drifts_under_bf16():
    # The undecorated forward (functools.wraps keeps it as __wrapped__) is what the loss
    # was before the fix: the Gram matrix in bf16 moves the loss by far more than 0.1%.
    loss = BatchHardTripletLoss(margin=0.2)
    undecorated = BatchHardTripletLoss.forward.__wrapped__
    x, y = relu_features()
    value, grad = value_and_grad(loss, x, y, autocast=False)
    value_bf16, grad_bf16 = value_and_grad(loss, x, y, autocast=True, forward=undecorated)
    assert relative(value_bf16, value) > 1e-3 or relative(grad_bf16, grad) > 1e-3
