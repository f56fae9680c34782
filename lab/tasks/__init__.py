"""LightningModules: the training systems that wrap a backbone."""

from lab.tasks.binary import BinaryClassifier
from lab.tasks.classifier import Classifier
from lab.tasks.layerwise import LayerwisePretrainedClassifier

__all__ = ["BinaryClassifier", "Classifier", "LayerwisePretrainedClassifier"]
