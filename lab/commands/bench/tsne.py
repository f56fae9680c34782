"""t-SNE time: openTSNE (FFT) vs scikit-learn (Barnes-Hut) on the same points, in one run.

What the TSNEPlot callback costs at the end of a test run: ``lab.callbacks.tsne.embed_2d``
(PCA to 50 dimensions, then t-SNE on all cores, perplexity 30, PCA initialisation, seed 0)
on ``--points`` clustered random features of ``--dim`` dimensions (``--classes`` Gaussian
clusters, like a trained embedding), once with each method. For each it reports the
seconds and the quality of the map: the 1-nearest-neighbour agreement of the 2-D points
with the cluster labels (half the points classify the other half); then the time ratio
openTSNE / scikit-learn (the target is at most 0.4 with equal quality).

Run: ``python -m lab.commands.bench.tsne [--points 10000] [--dim 512] [--classes 10] [--record]``;
``--record`` appends the figures to ``results/benchmarks.csv``
(``lab.commands.record.record_benchmark``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import numpy as np

from lab.callbacks.tsne import embed_2d

METHODS = ("sklearn", "opentsne")


def clustered(points: int, dim: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(features, labels)``: ``classes`` Gaussian clusters of ``points`` points in ``dim``-D."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, points)
    centres = rng.normal(scale=1.5, size=(classes, dim))
    features = (centres[labels] + rng.normal(size=(points, dim))).astype(np.float32)
    return features, labels


def agreement(xy: np.ndarray, labels: np.ndarray) -> float:
    """1-NN accuracy of the 2-D map: fit on the even points, score on the odd ones."""
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(n_neighbors=1).fit(xy[::2], labels[::2])
    return float(knn.score(xy[1::2], labels[1::2]))


def run(points: int, dim: int, classes: int, pca_dim: int = 50) -> dict[str, dict[str, float]]:
    """Seconds and 1-NN agreement of each method on the same points."""
    features, labels = clustered(points, dim, classes)
    figures = {}
    for method in METHODS:
        start = time.perf_counter()
        xy = embed_2d(features, pca_dim=pca_dim, seed=0, method=method)
        seconds = time.perf_counter() - start
        figures[method] = {"seconds": seconds, "agreement": agreement(xy, labels)}
    return figures


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the options, embed with both methods and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--pca-dim", type=int, default=50)
    parser.add_argument(
        "--record", action="store_true", help="append the figures to results/benchmarks.csv"
    )
    args = parser.parse_args(argv)

    figures = run(args.points, args.dim, args.classes, args.pca_dim)
    ratio = figures["opentsne"]["seconds"] / figures["sklearn"]["seconds"]
    print(
        f"t-SNE of {args.points} points x {args.dim} dims ({args.classes} clusters), PCA to "
        f"{args.pca_dim}"
    )
    print(f"  {'method':<24}{'seconds':>9}{'1-NN agreement':>16}")
    for method, label in (("sklearn", "scikit-learn (BH)"), ("opentsne", "openTSNE (FFT)")):
        print(
            f"  {label:<24}{figures[method]['seconds']:>9.2f}{figures[method]['agreement']:>16.3f}"
        )
    print(f"  time ratio openTSNE / scikit-learn: {ratio:.2f} ({1 / ratio:.1f}x faster)")
    if args.record:
        from lab.commands.record import record_benchmark

        given = sys.argv[1:] if argv is None else list(argv)
        command = " ".join(["python -m lab.commands.bench.tsne", *given])
        for method in METHODS:
            record_benchmark(f"tsne-{method}", round(figures[method]["seconds"], 2), "s", command)
            record_benchmark(
                f"tsne-{method}-1nn", round(figures[method]["agreement"], 3), "agreement", command
            )
        record_benchmark("tsne-ratio", round(ratio, 3), "opentsne/sklearn", command)


if __name__ == "__main__":
    main()
