"""t-SNE of the learned features: ``tsne.csv`` and ``tsne.png`` in the run folder, the
figure in TensorBoard and the features in TensorBoard's embedding projector.

The task's test (and validation) steps return ``{"features", "targets"}``
(``lab.tasks.Classifier``); this callback keeps them, takes a seeded, class-stratified
subsample of at most ``max_points``, reduces it to ``pca_dim`` dimensions with PCA (the
usual t-SNE preprocessing: it removes noise and makes the neighbour search cheap) and
embeds it in 2-D with openTSNE's FFT-accelerated t-SNE (Linderman et al. 2019; several
times faster than scikit-learn's Barnes-Hut ``TSNE`` at 10,000 points, with maps of the
same quality: ``make bench-tsne``). ``embed_2d(..., method="sklearn")`` keeps the
scikit-learn path, for that comparison.
"""

from __future__ import annotations

import io
from typing import Any, Literal

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from lab.callbacks.batches import BatchEnd, BatchEndCallback
from lab.callbacks.figures import figure_writer, task_class_names
from lab.callbacks.figures import run_dir as run_folder
from lab.distributed import gather_split
from lab.errors import LabError
from lab.io import atomic_write_text
from lab.plots import closing_figure, publish_figure, pyplot


def subsample(targets: np.ndarray, max_points: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``max_points`` samples, every class in proportion (at
    least one each while there is room), chosen with a seeded generator."""
    n = len(targets)
    if n <= max_points:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(targets, return_counts=True)
    quota = np.floor(counts * max_points / n).astype(int)
    quota = np.maximum(quota, np.minimum(1, counts))
    # Trim or top up to exactly max_points, largest classes first.
    order = np.argsort(-counts, kind="stable")
    i = 0
    while quota.sum() > max_points:
        c = order[i % len(order)]
        if quota[c] > 1:
            quota[c] -= 1
        i += 1
    i = 0
    while quota.sum() < max_points:
        c = order[i % len(order)]
        if quota[c] < counts[c]:
            quota[c] += 1
        i += 1
    chosen = [
        rng.choice(np.flatnonzero(targets == c), size=q, replace=False)
        for c, q in zip(classes, quota, strict=True)
    ]
    return np.sort(np.concatenate(chosen))


def embed_2d(
    features: np.ndarray,
    pca_dim: int = 50,
    perplexity: float = 30.0,
    seed: int = 0,
    n_jobs: int | None = None,
    method: Literal["opentsne", "sklearn"] = "opentsne",
) -> np.ndarray:
    """2-D t-SNE coordinates ``(N, 2)`` of ``features (N, D)``, after PCA to ``pca_dim``.

    Both methods use the same choices: perplexity (lowered to ``(N - 1) / 3`` for small N,
    so a handful of points still embeds), PCA initialisation, the "auto" learning rate
    (N / 12, at least 50) and the seed. ``opentsne`` uses FFT-interpolated gradients
    (Barnes-Hut below 1,000 points, where it is faster); ``sklearn`` is scikit-learn's
    Barnes-Hut ``TSNE``. ``n_jobs``: threads (None: all cores; for openTSNE one thread
    below 2,000 points, where a thread pool costs more than it saves on a busy machine).
    """
    from sklearn.decomposition import PCA

    if method not in ("opentsne", "sklearn"):
        raise LabError(f"t-SNE method must be 'opentsne' or 'sklearn', got {method!r}")
    features = np.asarray(features, dtype=np.float32)
    n, dim = features.shape
    if n < 3:
        raise LabError(f"t-SNE needs at least 3 points, got {n}")
    if dim > pca_dim and n > pca_dim:
        features = PCA(n_components=pca_dim, random_state=seed).fit_transform(features)
    perplexity = min(perplexity, (n - 1) / 3)
    learning_rate = max(n / 12.0, 50.0)  # scikit-learn's "auto" (early exaggeration 12)
    if method == "sklearn":
        from sklearn.manifold import TSNE

        tsne = TSNE(
            n_components=2,
            perplexity=perplexity,
            init="pca",
            learning_rate=learning_rate,
            random_state=seed,
            n_jobs=n_jobs,
        )
        return tsne.fit_transform(features).astype(np.float32)
    from openTSNE import TSNE as OpenTSNE

    tsne = OpenTSNE(
        n_components=2,
        perplexity=perplexity,
        initialization="pca",
        learning_rate=learning_rate,
        negative_gradient_method="fft" if n >= 1000 else "bh",
        neighbors="auto",
        random_state=seed,
        n_jobs=n_jobs if n_jobs is not None else (-1 if n >= 2000 else 1),
        verbose=False,
    )
    return np.asarray(tsne.fit(features.astype(np.float64)), dtype=np.float32)


def plot_embedding(
    coordinates: np.ndarray,
    labels: np.ndarray,
    class_names: list[str] | None = None,
    title: str = "t-SNE",
):
    """A matplotlib figure of 2-D points coloured by class, with a legend of class names
    (beside the plot; for more than 20 classes the legend is left out)."""
    plt = pyplot()
    classes = np.unique(labels)
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    many = len(classes) > 20
    figure, axes = plt.subplots(figsize=(7.5 if many else 9, 7), dpi=120)
    for i, c in enumerate(classes):
        mask = labels == c
        name = class_names[c] if class_names is not None and c < len(class_names) else str(c)
        color = cmap(i % cmap.N) if not many else plt.get_cmap("hsv")(i / len(classes))
        axes.scatter(
            coordinates[mask, 0], coordinates[mask, 1], s=8, color=color, label=name, alpha=0.8
        )
    axes.set_title(f"{title} ({len(labels)} points, {len(classes)} classes)")
    axes.set_xticks([])
    axes.set_yticks([])
    if not many:
        axes.legend(
            loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=2, fontsize=8, frameon=False
        )
    figure.tight_layout()
    return figure


class TSNEPlot(BatchEndCallback):
    """Embeds up to ``max_points`` test features in 2-D at the end of testing (and, with
    ``every_n_val_epochs`` > 0, the validation features every that many epochs).

    Writes ``tsne.csv`` (columns ``x, y, label, class_name``, one row per embedded point)
    and ``tsne.png`` in the run folder (``tsne_val_epoch007.*`` for validation), adds the
    figure to TensorBoard and, with ``projector``, the subsampled features (with their
    class names) to TensorBoard's embedding projector.

    Args:
        max_points: at most this many points (a class-stratified, seeded subsample).
        every_n_val_epochs: also after every this many validation epochs (0: never).
        pca_dim: PCA to this many dimensions before t-SNE.
        perplexity: t-SNE perplexity (lowered for very few points).
        seed: seed of the subsample, PCA and t-SNE.
        projector: write the features to TensorBoard's embedding projector.
    """

    def __init__(
        self,
        max_points: int = 2000,
        every_n_val_epochs: int = 0,
        pca_dim: int = 50,
        perplexity: float = 30.0,
        seed: int = 0,
        projector: bool = True,
    ) -> None:
        if max_points < 3:
            raise LabError(f"TSNEPlot.max_points must be at least 3, got {max_points}")
        if every_n_val_epochs < 0:
            raise LabError(f"TSNEPlot.every_n_val_epochs must be >= 0, got {every_n_val_epochs}")
        if pca_dim < 2:
            raise LabError(f"TSNEPlot.pca_dim must be at least 2, got {pca_dim}")
        if perplexity <= 0:
            raise LabError(f"TSNEPlot.perplexity must be > 0, got {perplexity}")
        self.max_points = max_points
        self.every_n_val_epochs = every_n_val_epochs
        self.pca_dim = pca_dim
        self.perplexity = perplexity
        self.seed = seed
        self.projector = projector
        self._features: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []
        self._collecting = False

    # -- collecting ----------------------------------------------------------------------

    def _start(self) -> None:
        self._features, self._targets = [], []
        self._collecting = True

    def _keep(self, outputs: Any) -> None:
        if not self._collecting or not isinstance(outputs, dict) or "features" not in outputs:
            return
        self._features.append(outputs["features"].detach().float())
        self._targets.append(outputs["targets"].detach())

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start()

    def on_batch(self, trainer: L.Trainer, end: BatchEnd) -> None:
        if end.stage != "train":  # test, and validation epochs that are due
            self._keep(end.outputs)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._finish(trainer, pl_module, "tsne", "test")

    def _val_due(self, trainer: L.Trainer) -> bool:
        return (
            self.every_n_val_epochs > 0
            and not trainer.sanity_checking
            and (trainer.current_epoch + 1) % self.every_n_val_epochs == 0
        )

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._collecting = False
        if self._val_due(trainer):
            self._start()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._collecting:
            name = f"tsne_val_epoch{trainer.current_epoch:03d}"
            self._finish(trainer, pl_module, name, "val")

    # -- writing -------------------------------------------------------------------------

    def _finish(
        self, trainer: L.Trainer, pl_module: L.LightningModule, name: str, stage: str
    ) -> None:
        self._collecting = False
        features, targets = self._features, self._targets
        self._features, self._targets = [], []
        if not features:
            return
        x = torch.cat(features)
        y = torch.cat(targets)
        # Under DDP: the whole split, in order and without DistributedSampler's padding.
        x, y = gather_split(trainer, x, stage), gather_split(trainer, y, stage)
        if not trainer.is_global_zero or len(y) < 3:
            return
        x_np, y_np = x.cpu().numpy(), y.cpu().numpy().astype(np.int64)
        keep = subsample(y_np, self.max_points, self.seed)
        x_np, y_np = x_np[keep], y_np[keep]
        finite = np.isfinite(x_np).all(axis=1)
        if not finite.all():  # a diverged model: t-SNE (and its neighbour search) would fail
            rank_zero_warn(
                f"t-SNE of the {stage} features skipped: {int((~finite).sum())} of "
                f"{len(finite)} are not finite (NaN or inf: has the model diverged?)"
            )
            return
        coordinates = embed_2d(x_np, self.pca_dim, self.perplexity, self.seed)
        class_names = task_class_names(pl_module, int(y_np.max()) + 1)
        table = pd.DataFrame(
            {
                "x": coordinates[:, 0],
                "y": coordinates[:, 1],
                "label": y_np,
                "class_name": [class_names[i] for i in y_np],
            }
        )
        figure = plot_embedding(coordinates, y_np, class_names, title=f"t-SNE of {stage} features")
        step = trainer.global_step
        with closing_figure(figure):
            run_dir = run_folder(trainer)
            if run_dir is not None:
                run_dir.mkdir(parents=True, exist_ok=True)
                buffer = io.StringIO()
                table.to_csv(buffer, index=False, float_format="%.5f")
                atomic_write_text(run_dir / f"{name}.csv", buffer.getvalue())
            experiment = figure_writer(trainer)
            png = run_dir / f"{name}.png" if run_dir is not None else None
            publish_figure(figure, png, experiment, f"{stage}/tsne", step)
            if png is not None:
                rank_zero_info(f"t-SNE of {len(y_np)} {stage} features: {png}")
            if experiment is not None and self.projector and hasattr(experiment, "add_embedding"):
                experiment.add_embedding(
                    torch.from_numpy(x_np),
                    metadata=table["class_name"].tolist(),
                    global_step=step,
                    tag=f"{stage}_features",
                )
