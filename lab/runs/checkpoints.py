"""Checkpoints of run folders: ``--ckpt_path last`` / ``best`` resolved to a file, and a
file checked (readable, a Lightning checkpoint, nothing but tensors and plain data)
before Lightning builds everything and fails with a traceback."""

from __future__ import annotations

from pathlib import Path

from lab.errors import LabError
from lab.runs.layout import latest_run

# How to make a refused checkpoint usable: its weights, not its training state, can be kept.
CKPT_CONVERT = (
    'if you trust it, keep its weights on a trusted machine: python -c "import torch; '
    "c = torch.load('{name}', weights_only=False); torch.save(c['state_dict'], 'weights.pt')\" "
    "and start from them with --model.init_args.backbone.init_args.weights weights.pt"
)


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


def resolve_checkpoint(ckpt_path: str, experiment_dir: Path, run: Path | None = None) -> Path:
    """Turn ``last`` / ``best`` into the file of the newest run of an experiment (or of
    ``run``, a run folder named in advance: ``--run_name slurm``)."""
    if ckpt_path not in ("last", "best"):
        path = Path(ckpt_path)
        if not path.is_file():
            raise LabError(f"checkpoint {path} does not exist; give a .ckpt file, 'last' or 'best'")
        return path
    if run is None:
        run = latest_run(experiment_dir, with_checkpoint=True)
    elif not (run / "checkpoints" / "last.ckpt").is_file():
        run = None
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
    from lab.models.weights import UnsafeFileError, load_torch_file, one_line  # as above

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
