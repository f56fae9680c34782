"""LightningModules: the training systems that wrap a backbone."""

from lab.tasks.classifier import Classifier

__all__ = ["Classifier"]
