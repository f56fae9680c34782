"""Losses as plain ``nn.Module``s, each checked on its own tensors."""

from lab.losses.center import CenterLoss
from lab.losses.triplet import BatchHardTripletLoss, SampledTripletLoss, sample_triplets

__all__ = ["BatchHardTripletLoss", "CenterLoss", "SampledTripletLoss", "sample_triplets"]
