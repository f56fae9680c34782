"""Lightning callbacks that record runs and make the figures of a report."""

from lab.callbacks.activations import ActivationMaps
from lab.callbacks.before_fit import BeforeFitEvaluation
from lab.callbacks.checkpoint import LastAndBestCheckpoint
from lab.callbacks.evaluation import TestEvaluation
from lab.callbacks.gradients import GradientNorms
from lab.callbacks.run_record import RunRecord
from lab.callbacks.tsne import TSNEPlot

__all__ = [
    "ActivationMaps",
    "BeforeFitEvaluation",
    "GradientNorms",
    "LastAndBestCheckpoint",
    "RunRecord",
    "TSNEPlot",
    "TestEvaluation",
]
