"""The layout of run folders: ``<log root>/<experiment>/version_N/``, and what is in them.

Each run folder holds TensorBoard events, ``metrics.csv``, the resolved ``config.yaml``,
``run.json`` (versions, seed, wall times) and ``checkpoints/`` (``last.ckpt`` and the
best one). Knowing this layout in one place lets the CLI resume the right run and the
summary read the right files.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd

from lab.errors import LabError

# How to make a refused checkpoint usable: its weights, not its training state, can be kept.
CKPT_CONVERT = (
    'if you trust it, keep its weights on a trusted machine: python -c "import torch; '
    "c = torch.load('{name}', weights_only=False); torch.save(c['state_dict'], 'weights.pt')\" "
    "and start from them with --model.init_args.backbone.init_args.weights weights.pt"
)

_VERSION = re.compile(r"^version_(\d+)$")


def log_root(root: str | os.PathLike | None = None) -> Path:
    """Where runs go: ``root`` if given, else ``$LAB_LOGS``, else ``lightning_logs/``."""
    return Path(root if root is not None else os.environ.get("LAB_LOGS", "lightning_logs"))


def versions(experiment_dir: Path) -> list[tuple[int, Path]]:
    """``(N, folder)`` for every ``version_N`` folder of an experiment, oldest first."""
    if not experiment_dir.is_dir():
        return []
    found = []
    for child in experiment_dir.iterdir():
        match = _VERSION.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_run(experiment_dir: Path, with_checkpoint: bool = False) -> Path | None:
    """The newest ``version_N`` folder (that has ``checkpoints/last.ckpt``, if asked)."""
    for _, folder in reversed(versions(experiment_dir)):
        if not with_checkpoint or (folder / "checkpoints" / "last.ckpt").is_file():
            return folder
    return None


# A backbone's ``weights: last:<experiment>``: that experiment's newest last.ckpt.
LATEST_PREFIX = "last:"


def latest_checkpoint(reference: str, root: Path) -> Path:
    """``last:<experiment>``: ``checkpoints/last.ckpt`` of the newest run of that experiment
    under ``root`` that has one."""
    experiment = reference.removeprefix(LATEST_PREFIX)
    run = latest_run(Path(root) / experiment, with_checkpoint=True)
    if run is None:
        raise LabError(
            f"weights {reference}: no run of {experiment} with checkpoints/last.ckpt under "
            f"{root}; train it first (make {experiment})"
        )
    return run / "checkpoints" / "last.ckpt"


def run_dir_of_checkpoint(ckpt: Path) -> Path | None:
    """The run folder a checkpoint belongs to (``.../version_N/checkpoints/x.ckpt``), if any."""
    ckpt = Path(ckpt)
    if ckpt.parent.name == "checkpoints" and _VERSION.match(ckpt.parent.parent.name):
        return ckpt.parent.parent
    return None


def best_checkpoint(last_ckpt: Path) -> Path:
    """The best checkpoint of a run, as its ModelCheckpoint recorded it inside ``last.ckpt``."""
    from lab.models.weights import load_torch_file  # lab.models imports torchvision: lazily

    state = load_torch_file(last_ckpt, mmap=True, convert=CKPT_CONVERT, what="a checkpoint")
    callbacks = state.get("callbacks", {}) if isinstance(state, dict) else {}
    for value in callbacks.values():
        if isinstance(value, dict) and value.get("best_model_path"):
            best = Path(value["best_model_path"])
            if not best.is_file():  # the run folder may have moved since
                best = last_ckpt.parent / best.name
            if best.is_file():
                return best
    raise LabError(f"{last_ckpt} records no best checkpoint (was a metric monitored?)")


def resolve_checkpoint(ckpt_path: str, experiment_dir: Path) -> Path:
    """Turn ``last`` / ``best`` into the file of the newest run of an experiment."""
    if ckpt_path not in ("last", "best"):
        path = Path(ckpt_path)
        if not path.is_file():
            raise LabError(f"checkpoint {path} does not exist; give a .ckpt file, 'last' or 'best'")
        return path
    run = latest_run(experiment_dir, with_checkpoint=True)
    if run is None:
        raise LabError(
            f"--ckpt_path {ckpt_path}: no earlier run with checkpoints/last.ckpt under "
            f"{experiment_dir}; run `lab fit` with this config first"
        )
    last = run / "checkpoints" / "last.ckpt"
    return last if ckpt_path == "last" else best_checkpoint(last)


def check_checkpoint(path: Path) -> None:
    """Raise a LabError if ``path`` is not a readable checkpoint (a truncated copy, a file
    of another kind), before Lightning builds everything and fails with a traceback. The
    file is memory-mapped, not read whole, and read with ``weights_only=True``: a file that
    holds more than tensors and plain data is refused (``UnsafeFileError``) before Lightning
    loads it."""
    from lab.models.weights import UnsafeFileError, load_torch_file, one_line

    try:
        # Only what Lightning's own loading (weights_only) accepts, so that the file this
        # check passes is one Lightning will load.
        state = load_torch_file(path, True, CKPT_CONVERT, "a checkpoint", allowed=())
    except UnsafeFileError:
        raise
    except LabError as error:
        raise LabError(
            f"checkpoint {path} cannot be read ({one_line(error.__cause__ or error)}); it is "
            "damaged or incomplete: resume from another checkpoint of the run (--ckpt_path "
            "best or a path) or start again without --ckpt_path"
        ) from error
    if not isinstance(state, dict) or "state_dict" not in state:
        raise LabError(
            f"checkpoint {path} is not a Lightning checkpoint (no state_dict entry); to start "
            "from the weights of a saved model, give it as the backbone's weights "
            "(--model.init_args.backbone.init_args.weights PATH) instead of --ckpt_path"
        )


def read_run_info(run_dir: Path) -> dict[str, Any]:
    """``run.json`` of a run folder ({} if it has none)."""
    path = Path(run_dir) / "run.json"
    return json.loads(path.read_text()) if path.is_file() else {}


# The test metrics a summary shows, when a run has them.
HEADLINE_METRICS = (
    "before/acc",  # the test split before fine-tuning (lab.callbacks.BeforeFitEvaluation)
    "test/acc",
    "test/acc_top5",
    "test/knn_acc",
    "test/precision_at_1",
    "test/map_at_r",
    "test/loss",
)


def summarize(run_dir: Path) -> dict[str, Any]:
    """Headline numbers of one run: test metrics, best val accuracy, epochs, wall time."""
    run_dir = Path(run_dir)
    metrics_file = run_dir / "metrics.csv"
    if not metrics_file.is_file():
        raise LabError(f"{run_dir} has no metrics.csv; is it a run folder of `lab fit`?")
    metrics = pd.read_csv(metrics_file)
    row: dict[str, Any] = {"run": str(run_dir)}
    if "epoch" in metrics and metrics["epoch"].notna().any():
        row["epochs"] = int(metrics["epoch"].max()) + 1
    if "val/acc" in metrics and metrics["val/acc"].notna().any():
        row["best val/acc"] = float(metrics["val/acc"].max())
    for column in HEADLINE_METRICS:
        if column in metrics and metrics[column].notna().any():
            row[column] = float(metrics[column].dropna().iloc[-1])
    info = read_run_info(run_dir)
    trainable = info.get("parameters", {}).get("trainable")
    if trainable is not None:
        row["trainable params"] = int(trainable)
    seconds = info.get("seconds", {})
    for stage in ("fit", "test"):
        if stage in seconds:
            row[f"{stage} seconds"] = round(float(seconds[stage]), 1)
    return row
