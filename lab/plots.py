"""The one place that sets matplotlib up and writes figures: every figure of ``lab`` (the
callbacks', ``lab report``'s, ``lab sweep``'s, ``lab svm``'s, the layer-wise
pretraining's) is drawn with :func:`pyplot`, saved with :func:`save_figure_atomically`
or :func:`publish_figure` and closed by :func:`closing_figure`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from lab.io import atomic_path


def pyplot() -> ModuleType:
    """``matplotlib.pyplot``, with the non-interactive Agg backend chosen unless a backend
    was chosen already (``force=False``: a notebook keeps its own)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt

    return plt


def save_figure_atomically(figure: Any, path: Path) -> None:
    """Save a matplotlib figure as PNG via a temporary file and a rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        figure.savefig(handle, format="png")


def publish_figure(
    figure: Any,
    path: Path | None,
    writer: Any | None,
    tag: str,
    step: int,
) -> None:
    """Save ``figure`` as the PNG ``path`` (its folder made if missing) and add it to the
    TensorBoard ``writer`` as ``tag`` at ``step``; either is skipped when None. The figure
    stays open (see :func:`closing_figure`)."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_figure_atomically(figure, path)
    if writer is not None:
        writer.add_figure(tag, figure, global_step=step, close=False)


@contextmanager
def closing_figure(figure: Any) -> Iterator[Any]:
    """``with closing_figure(figure):`` closes ``figure`` however the block ends, so that
    pyplot does not keep every figure of a long run alive."""
    try:
        yield figure
    finally:
        pyplot().close(figure)
