"""Losses as plain ``nn.Module``s, each checked on its own tensors."""

from lab.losses.center import CenterLoss
from lab.losses.triplet import BatchHardTripletLoss

__all__ = ["BatchHardTripletLoss", "CenterLoss"]
