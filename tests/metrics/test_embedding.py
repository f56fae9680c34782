"""Class-centre, kNN and retrieval metrics against hand-worked answers and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier, NearestCentroid

from lab.metrics import (
    centroid_logits,
    class_centres,
    embedding_metrics,
    knn_predict,
    retrieval_metrics,
)

# A 1-D example worked by hand. References: class 0 at 0 and 1, class 1 at 10 and 11.
REFERENCE = torch.tensor([[0.0], [1.0], [10.0], [11.0]])
REFERENCE_LABELS = torch.tensor([0, 0, 1, 1])
# Queries and their ranked references (R = 2 for every query):
#   2.0 (class 0): 1, 0      -> both relevant: AP@R 1,   P@1 1
#   4.0 (class 1): 1, 0      -> none relevant: AP@R 0,   P@1 0
#   5.4 (class 0): 1, 10     -> rel, not:      AP@R 0.5, P@1 1
#   6.2 (class 1): 10, 11    -> both relevant: AP@R 1,   P@1 1
QUERY = torch.tensor([[2.0], [4.0], [5.4], [6.2]])
QUERY_LABELS = torch.tensor([0, 1, 0, 1])


def test_retrieval_metrics_match_the_hand_worked_example():
    metrics = retrieval_metrics(QUERY, QUERY_LABELS, REFERENCE, REFERENCE_LABELS)
    assert metrics["precision_at_1"] == pytest.approx(0.75)
    assert metrics["map_at_r"] == pytest.approx((1 + 0 + 0.5 + 1) / 4)


def test_leave_one_out_retrieval_skips_the_query_itself():
    # Each reference point's nearest *other* point is its classmate: perfect retrieval.
    metrics = retrieval_metrics(REFERENCE, REFERENCE_LABELS)
    assert metrics["precision_at_1"] == pytest.approx(1.0)
    assert metrics["map_at_r"] == pytest.approx(1.0)


def test_distances_are_not_normalised():
    # Normalising 1-D embeddings would map every positive value to 1 and make all equal.
    scaled = retrieval_metrics(QUERY * 3, QUERY_LABELS, REFERENCE * 3, REFERENCE_LABELS)
    assert scaled["map_at_r"] == pytest.approx(0.625)


def test_centroid_and_knn_classification_of_the_hand_worked_example():
    centres, present = class_centres(REFERENCE, REFERENCE_LABELS, num_classes=3)
    torch.testing.assert_close(centres, torch.tensor([[0.5], [10.5], [0.0]]))
    assert present.tolist() == [True, True, False]
    scores = centroid_logits(QUERY, centres, present)
    assert torch.isinf(scores[:, 2]).all()  # an absent class can never win
    assert scores.argmax(1).tolist() == [0, 0, 0, 1]
    assert knn_predict(QUERY, REFERENCE, REFERENCE_LABELS, k=3, num_classes=3).tolist() == [
        0,
        0,
        0,
        1,
    ]
    metrics = embedding_metrics(QUERY, QUERY_LABELS, REFERENCE, REFERENCE_LABELS, 2, knn_k=3)
    assert metrics["centroid_acc"] == pytest.approx(0.75)
    assert metrics["knn_acc"] == pytest.approx(0.75)
    assert metrics["precision_at_1"] == pytest.approx(0.75)
    assert metrics["map_at_r"] == pytest.approx(0.625)
    assert "centroid_acc_top5" not in metrics  # 2 classes: top-5 would be trivially 100%


def _random_problem(seed: int, classes: int = 8, dim: int = 6):
    generator = torch.Generator().manual_seed(seed)
    means = torch.randn(classes, dim, generator=generator) * 2
    reference_labels = torch.randint(0, classes, (300,), generator=generator)
    query_labels = torch.randint(0, classes, (120,), generator=generator)
    reference = means[reference_labels] + torch.randn(300, dim, generator=generator)
    query = means[query_labels] + torch.randn(120, dim, generator=generator)
    return query, query_labels, reference, reference_labels


@pytest.mark.parametrize("k", [1, 4, 7])
def test_knn_agrees_with_scikit_learn(k):
    query, _, reference, reference_labels = _random_problem(seed=k)
    ours = knn_predict(query, reference, reference_labels, k=k, num_classes=8)
    sklearn = KNeighborsClassifier(n_neighbors=k, algorithm="brute").fit(
        reference.numpy(), reference_labels.numpy()
    )
    np.testing.assert_array_equal(ours.numpy(), sklearn.predict(query.numpy()))


def test_centroids_agree_with_scikit_learn_and_top5_with_brute_force():
    query, query_labels, reference, reference_labels = _random_problem(seed=0)
    centres, present = class_centres(reference, reference_labels, 8)
    scores = centroid_logits(query, centres, present)
    sklearn = NearestCentroid().fit(reference.numpy(), reference_labels.numpy())
    np.testing.assert_array_equal(scores.argmax(1).numpy(), sklearn.predict(query.numpy()))

    metrics = embedding_metrics(query, query_labels, reference, reference_labels, 8)
    in_top5 = []
    for q, label in zip(query, query_labels, strict=True):
        distances = [(float(torch.dist(q, c)), j) for j, c in enumerate(centres)]
        in_top5.append(int(label) in [j for _, j in sorted(distances)[:5]])
    assert metrics["centroid_acc_top5"] == pytest.approx(np.mean(in_top5))
    assert metrics["centroid_acc"] <= metrics["centroid_acc_top5"]


@pytest.mark.parametrize("where", ["query", "reference"])
def test_non_finite_embeddings_give_nan_retrieval_metrics_not_an_error(where):
    # A diverged model's NaN embeddings: pytorch-metric-learning would raise on them.
    query, labels = torch.randn(6, 3), torch.tensor([0, 0, 1, 1, 2, 2])
    reference = torch.randn(6, 3)
    (query if where == "query" else reference)[2, 1] = float("nan")
    metrics = retrieval_metrics(query, labels, reference, labels)
    assert set(metrics) == {"precision_at_1", "map_at_r", "r_precision"}
    assert all(np.isnan(v) for v in metrics.values())
    finite = retrieval_metrics(torch.randn(6, 3), labels)
    assert all(np.isfinite(v) for v in finite.values())
