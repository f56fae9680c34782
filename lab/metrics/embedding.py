"""How good an embedding is: class-centre and kNN classification, and retrieval metrics.

Used for every model, not only metric-learning ones, so cross-entropy, triplet and center
loss features are compared on the same footing. The protocol: the *reference* set is the
training split (embedded without augmentation), the *queries* are the evaluated split.

- class-centre classification: each class is the mean of its reference embeddings; a query
  takes the class of the nearest centre (top-1 and top-5 from the distance ranking);
- kNN classification: majority vote of the ``k`` nearest reference embeddings (ties go to
  the smaller class index, as in scikit-learn);
- retrieval (pytorch-metric-learning's ``AccuracyCalculator`` with its torch kNN):
  precision@1 and MAP@R (Musgrave et al. 2020, "A Metric Learning Reality Check").

All distances are Euclidean on the embeddings as given: an L2-normalised embedding is
normalised by the model, never silently here (pytorch-metric-learning's ``LpDistance``
normalises by default; it is switched off).
"""

from __future__ import annotations

import torch

_QUERY_CHUNK = 2048  # queries per distance block: bounds memory at chunk x len(reference)


def class_centres(
    embeddings: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class mean embeddings ``(num_classes, D)`` and which classes had any, ``(C,)``."""
    embeddings = embeddings.float()
    sums = embeddings.new_zeros(num_classes, embeddings.shape[1])
    sums.index_add_(0, labels, embeddings)
    counts = torch.bincount(labels, minlength=num_classes).to(embeddings.dtype)
    present = counts > 0
    return sums / counts.clamp(min=1).unsqueeze(1), present


def centroid_logits(
    query: torch.Tensor, centres: torch.Tensor, present: torch.Tensor | None = None
) -> torch.Tensor:
    """Scores ``(Q, C)`` = minus the Euclidean distance to each class centre.

    Usable as logits: argmax is the nearest centre, top-k the k nearest. Classes without a
    centre (``present`` False) score ``-inf``.
    """
    scores = -torch.cdist(query.float(), centres.float())
    if present is not None:
        scores = scores.masked_fill(~present.to(scores.device), float("-inf"))
    return scores


def nearest_neighbours(query: torch.Tensor, reference: torch.Tensor, k: int) -> torch.Tensor:
    """Indices ``(Q, k)`` of each query's ``k`` nearest reference rows, nearest first."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    k = min(k, len(reference))
    reference = reference.float()
    found = []
    for start in range(0, len(query), _QUERY_CHUNK):
        block = torch.cdist(query[start : start + _QUERY_CHUNK].float(), reference)
        found.append(block.topk(k, dim=1, largest=False).indices)
    return torch.cat(found) if found else query.new_zeros(0, k, dtype=torch.long)


def knn_predict(
    query: torch.Tensor,
    reference: torch.Tensor,
    reference_labels: torch.Tensor,
    k: int,
    num_classes: int,
) -> torch.Tensor:
    """Majority vote of the ``k`` nearest reference labels, ``(Q,)``; ties: smaller class."""
    neighbours = nearest_neighbours(query, reference, k)
    votes = reference_labels[neighbours]
    counts = torch.zeros(len(query), num_classes, device=votes.device)
    counts.scatter_add_(1, votes, torch.ones_like(votes, dtype=counts.dtype))
    return counts.argmax(dim=1)  # argmax returns the first maximum: the smaller class


def retrieval_metrics(
    query: torch.Tensor,
    query_labels: torch.Tensor,
    reference: torch.Tensor | None = None,
    reference_labels: torch.Tensor | None = None,
) -> dict[str, float]:
    """precision@1, MAP@R and R-precision of retrieving same-class references.

    Without a reference set, each query retrieves from the other queries (leave-one-out).
    Non-finite embeddings (a diverged model) give NaN metrics, not an error: the
    divergence guard, not a metric, says why a run failed.
    """
    embeddings = [query] if reference is None else [query, reference]
    if not all(bool(torch.isfinite(e).all()) for e in embeddings):
        nan = float("nan")
        return {"precision_at_1": nan, "map_at_r": nan, "r_precision": nan}
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    calculator = AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r", "r_precision"),
        k="max_bin_count",
        device=query.device,
        knn_func=CustomKNN(LpDistance(normalize_embeddings=False), batch_size=_QUERY_CHUNK),
    )
    if reference is None:
        result = calculator.get_accuracy(query.float(), query_labels)
    else:
        result = calculator.get_accuracy(
            query.float(), query_labels, reference.float(), reference_labels, False
        )
    return {
        "precision_at_1": float(result["precision_at_1"]),
        "map_at_r": float(result["mean_average_precision_at_r"]),
        "r_precision": float(result["r_precision"]),
    }


def embedding_metrics(
    query: torch.Tensor,
    query_labels: torch.Tensor,
    reference: torch.Tensor,
    reference_labels: torch.Tensor,
    num_classes: int,
    knn_k: int = 10,
) -> dict[str, float]:
    """All of the above for queries against a labelled reference set (e.g. test vs train)."""
    centres, present = class_centres(reference, reference_labels, num_classes)
    scores = centroid_logits(query, centres, present)
    ranked = scores.topk(min(5, num_classes), dim=1).indices
    hits = ranked == query_labels.unsqueeze(1)
    knn = knn_predict(query, reference, reference_labels, knn_k, num_classes)
    metrics = {
        "centroid_acc": hits[:, 0].float().mean().item(),
        "knn_acc": (knn == query_labels).float().mean().item(),
    }
    if num_classes > 5:
        metrics["centroid_acc_top5"] = hits.any(dim=1).float().mean().item()
    metrics.update(retrieval_metrics(query, query_labels, reference, reference_labels))
    return metrics
