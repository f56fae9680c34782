"""Losses compute in float32 whatever autocast region they are called from.

Inside a mixed-precision training step (``bf16-mixed``, ``16-mixed``) autocast runs
matrix products in half precision even when their inputs are float32: a batch-hard
triplet loss on 512-d ReLU features then moves by about 2% and single distances by more
than the margin (tests/losses/test_precision.py). :func:`float32_loss` wraps a loss's
``forward``: autocast is switched off for its device and every half-precision tensor
argument is cast to float32 (float64 stays), so the value and the gradient are float32's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import torch

F = TypeVar("F", bound=Callable[..., Any])


def _to_float32(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.is_floating_point() and value.element_size() < 4:
        return value.float()  # half precision up; float32 and float64 stay as they are
    return value


def _device_type(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            return value.device.type
    return "cpu"


def float32_loss(forward: F) -> F:
    """Decorate a loss's ``forward(self, *tensors, ...)``: run it without autocast on
    float32 copies of its half-precision tensor arguments."""

    @functools.wraps(forward)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        device_type = _device_type(args, kwargs)
        with torch.autocast(device_type, enabled=False):
            args = tuple(_to_float32(a) for a in args)
            kwargs = {k: _to_float32(v) for k, v in kwargs.items()}
            return forward(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
