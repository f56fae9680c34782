"""Loss terms: plain ``nn.Module``s called as ``loss(inputs, targets) -> scalar`` that
``lab.tasks.Classifier`` combines (``model.losses``), each checked on its own tensors."""

from lab.losses.center import CenterLoss
from lab.losses.cross_entropy import CrossEntropy
from lab.losses.pairwise import PairwiseContrastiveLoss
from lab.losses.precision import float32_loss
from lab.losses.term import LossTerm
from lab.losses.triplet import BatchHardTripletLoss, SampledTripletLoss, sample_triplets

__all__ = [
    "BatchHardTripletLoss",
    "CenterLoss",
    "CrossEntropy",
    "LossTerm",
    "PairwiseContrastiveLoss",
    "SampledTripletLoss",
    "float32_loss",
    "sample_triplets",
]
