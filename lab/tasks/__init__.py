"""LightningModules: the training systems that wrap a backbone."""

from lab.tasks.binary import BinaryClassifier
from lab.tasks.classifier import Classifier
from lab.tasks.contrastive import ContrastiveEmbedder
from lab.tasks.layerwise import LayerwisePretrainedClassifier
from lab.tasks.metric_learning import CenterLossClassifier, TripletClassifier, TripletEmbedder

__all__ = [
    "BinaryClassifier",
    "CenterLossClassifier",
    "Classifier",
    "ContrastiveEmbedder",
    "LayerwisePretrainedClassifier",
    "TripletClassifier",
    "TripletEmbedder",
]
