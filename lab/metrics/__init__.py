"""Evaluation measures that no library computes in the form the tasks need."""

from lab.metrics.embedding import (
    centroid_logits,
    class_centres,
    embedding_metrics,
    knn_predict,
    nearest_neighbours,
    retrieval_metrics,
)

__all__ = [
    "centroid_logits",
    "class_centres",
    "embedding_metrics",
    "knn_predict",
    "nearest_neighbours",
    "retrieval_metrics",
]
