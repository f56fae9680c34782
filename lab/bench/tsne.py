"""t-SNE time: what the TSNEPlot callback costs at the end of a test run.

Times ``lab.callbacks.tsne.embed_2d`` (PCA to 50 dimensions, then scikit-learn's
Barnes-Hut t-SNE on all cores) on ``--points`` clustered random features of ``--dim``
dimensions (``--classes`` Gaussian clusters, like a trained embedding), and reports the
PCA and t-SNE parts apart and the 1-nearest-neighbour agreement of the 2-D map with the
cluster labels (a sanity check that the map is not noise).

Run: ``python -m lab.bench.tsne [--points 10000] [--dim 512] [--classes 10]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np

from lab.callbacks.tsne import embed_2d


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--pca-dim", type=int, default=50)
    args = parser.parse_args(argv)

    from sklearn.decomposition import PCA
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(0)
    labels = rng.integers(0, args.classes, args.points)
    centres = rng.normal(scale=1.5, size=(args.classes, args.dim))
    features = (centres[labels] + rng.normal(size=(args.points, args.dim))).astype(np.float32)

    start = time.perf_counter()
    PCA(n_components=args.pca_dim, random_state=0).fit_transform(features)
    pca_s = time.perf_counter() - start
    start = time.perf_counter()
    xy = embed_2d(features, pca_dim=args.pca_dim, seed=0)
    total_s = time.perf_counter() - start

    knn = KNeighborsClassifier(n_neighbors=1).fit(xy[::2], labels[::2])
    agreement = knn.score(xy[1::2], labels[1::2])
    print(f"t-SNE of {args.points} points x {args.dim} dims ({args.classes} clusters)")
    print(f"  PCA to {args.pca_dim}:        {pca_s:7.2f} s")
    print(f"  PCA + t-SNE (total):  {total_s:7.2f} s")
    print(f"  2-D 1-NN agreement with the clusters: {agreement:.3f}")


if __name__ == "__main__":
    main()
