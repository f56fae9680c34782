"""Lightning callbacks that record runs and make the figures of a report."""

from lab.callbacks.checkpoint import LastAndBestCheckpoint
from lab.callbacks.run_record import RunRecord
from lab.callbacks.tsne import TSNEPlot

__all__ = ["LastAndBestCheckpoint", "RunRecord", "TSNEPlot"]
