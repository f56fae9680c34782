"""Loading weights files and checkpoints without ever running code from them.

A ``.pt`` / ``.pth`` / ``.ckpt`` file is a pickle, and a pickle can name any function to
call while it is read: a downloaded checkpoint could run anything. Every file ``lab``
reads with ``torch.load`` therefore goes through :func:`load_torch_file`, which uses
``weights_only=True`` (PyTorch's restricted unpickler: tensors, containers, numbers,
strings). A ``lab`` / Lightning checkpoint loads that way as it is. A few plain-data
types that other trainers' checkpoints carry beside their tensors (timm and torchvision's
reference scripts save their ``argparse.Namespace`` and a numpy metric) are allowed too,
exactly those in :data:`EXTRA_SAFE_GLOBALS`. Anything else is refused with one line
saying what the file asked for and how to convert it on a machine where it is trusted.

Also here: what ``backbone.weights`` means (:func:`normalize_weights`,
:func:`is_weights_path`), loading a file into a backbone (:func:`load_weights_file`) and
torchvision's named weights from the hub cache (:func:`torchvision_state_dict`), shared
by ``lab.models.ResNet`` and ``lab.models.VGG``.
"""

from __future__ import annotations

import argparse
import pickle
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lab.errors import LabError

# Plain-data types found in genuine checkpoints of other trainers (timm's and torchvision's
# reference scripts: ``args`` as a Namespace, a metric as a numpy scalar). None of them runs
# code when rebuilt; numpy <2 files name the scalar ``numpy.core.multiarray.scalar``.
_SCALAR = np.float64(0).__reduce__()[0]  # numpy's scalar rebuilder, in any numpy version
EXTRA_SAFE_GLOBALS: list[Any] = [
    argparse.Namespace,
    np.dtype,
    np.dtypes.Float64DType,
    np.dtypes.Float32DType,
    np.dtypes.Int64DType,
    _SCALAR,
    (_SCALAR, "numpy.core.multiarray.scalar"),
]

CONVERT = (
    "if you trust it, convert it on a trusted machine: "
    "python -c \"import torch; c = torch.load('{name}', weights_only=False); "
    "torch.save(c.get('state_dict', c), 'weights.pt')\" and use weights.pt"
)


class UnsafeFileError(LabError):
    """A file that ``weights_only`` loading refused: reading it could run code."""


# What torch's restricted unpickler says when a file names a function or type it does not
# allow (as opposed to bytes that are no pickle at all: "Unsupported operand").
_NAMES_SOMETHING = re.compile(r"GLOBAL [\w.]+|allowlisted|unrecognized function")


def is_refusal(error: BaseException) -> bool:
    """Whether ``error`` is ``torch.load(weights_only=True)`` refusing what a file names
    (a function, a class), rather than a truncated or foreign file."""
    text = str(error)
    return (
        isinstance(error, pickle.UnpicklingError)
        and "weights only load failed" in text.lower()
        and _NAMES_SOMETHING.search(text) is not None
    )


def refusal_reason(error: BaseException) -> str:
    """What the refused file asked for, in a few words, from torch's long message."""
    text = str(error)
    for pattern, reason in (
        (r"GLOBAL ([\w.]+)", "it calls or builds {}"),
        (r"but got (<class '[\w.]+'>)", "it builds {}"),
        (r"unrecognized function (\S+)", "it calls {}"),
    ):
        found = re.search(pattern, text)
        if found:
            return reason.format(found.group(1))
    return "it holds objects other than tensors"


def refusal_message(path: Path, error: BaseException, convert: str = CONVERT) -> str:
    """The one-line error for a refused file: why, and how to convert it."""
    return (
        f"refused to load {path}: {refusal_reason(error)}, and loading objects other than "
        f"tensors and plain data could run code from the file; "
        f"{convert.format(name=Path(path).name)}"
    )


def load_torch_file(
    path: Path,
    mmap: bool = False,
    convert: str = CONVERT,
    what: str = "weights",
    allowed: Sequence[Any] = tuple(EXTRA_SAFE_GLOBALS),
) -> Any:
    """``torch.load`` of a weights file or checkpoint with ``weights_only=True`` (plus the
    types in ``allowed``), on the CPU; ``mmap`` maps the file instead of reading it.

    Raises :class:`UnsafeFileError` if the file holds anything else (``convert`` ends that
    message: how to make the file loadable) and a LabError naming ``what`` if it cannot
    be read at all (truncated, not a torch file).
    """
    try:
        with torch.serialization.safe_globals(list(allowed)):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as error:
        if is_refusal(error):
            raise UnsafeFileError(refusal_message(path, error, convert)) from None
        raise LabError(
            f"cannot read {what} from {path} ({one_line(error)}); is it complete?"
        ) from error


def one_line(error: BaseException) -> str:
    """``error`` as ``Type: first line`` (some errors carry pages of advice)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if lines and lines[0].startswith("Weights only load failed"):
        # torch's advice (including "re-run with weights_only=False") around the detail
        advice = ("(1)", "(2)", "Check the documentation", "Please file")
        details = [line for line in lines[1:] if not line.startswith(advice)]
        lines = [details[0].removeprefix("WeightsUnpickler error: ")] if details else []
    return f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def normalize_weights(weights: str | None) -> str | None:
    """``weights`` as given, or None for no weights.

    jsonargparse (4.53) turns a command-line "null" for an argument of a backbone nested
    in a model into the string "None"; no torchvision weight has that name.
    """
    if weights is None or weights.strip().lower() in ("none", "null", ""):
        return None
    return weights.strip()


def is_weights_path(weights: str) -> bool:
    """Whether ``weights`` names a file (a path) rather than torchvision weights."""
    return "/" in weights or "\\" in weights or weights.endswith((".pth", ".pt", ".ckpt"))


def backbone_state_dict(path: Path) -> dict[str, Any]:
    """The backbone weights in ``path``: a ``lab`` checkpoint's ``backbone.*`` entries
    (prefix removed) or a state dict saved with ``torch.save``, read with
    :func:`load_torch_file`; a LabError if the file is missing or holds no state dict."""
    if not path.is_file():
        raise LabError(
            f"backbone.weights={str(path)!r} not found: expected a lab checkpoint (.ckpt) or "
            "a state dict saved with torch.save, or a torchvision name such as IMAGENET1K_V1"
        )
    loaded = load_torch_file(path)
    state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict) or not state:
        raise LabError(f"{path} holds no state dict (expected tensors by parameter name)")
    if any(key.startswith("backbone.") for key in state):  # a lab task's checkpoint
        prefix = "backbone."
        state = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    return state


def load_weights_file(
    model: nn.Module,
    path: Path,
    optional: tuple[str, ...] = ("embedding", "fc"),
    hint: str = "the same depth, in_channels and small_input",
) -> None:
    """Load a ``lab`` checkpoint's backbone or a saved state dict into ``model`` in place.

    Every weight of the trunk (everything but the top-level modules named in
    ``optional``: by default the embedding layer and the classifier) must be in the file
    with the same shape; an optional module of another size is left as it is. ``hint``
    ends the error message: what the file must have been saved with. The file is read
    with :func:`load_torch_file`, so nothing in it can run.
    """
    state = backbone_state_dict(path)
    own = model.state_dict()
    fitting = {
        k: v
        for k, v in state.items()
        if k in own and isinstance(v, torch.Tensor) and own[k].shape == v.shape
    }
    trunk_keys = {k for k in own if k.split(".", 1)[0] not in optional}
    missing = sorted(trunk_keys - fitting.keys())
    if missing:
        raise LabError(
            f"{path} does not fit this backbone: {len(missing)} trunk weights missing or of "
            f"another shape (first: {missing[0]}); was it saved from {hint}?"
        )
    model.load_state_dict(fitting, strict=False)


def torchvision_state_dict(chosen: Any) -> dict[str, torch.Tensor]:
    """The state dict of torchvision weights ``chosen`` (a ``WeightsEnum`` member).

    Read from the torch hub cache if the file is there (a user may have put it there by
    hand, so it is loaded with ``weights_only=True`` too), else downloaded with its
    published hash checked.
    """
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(chosen.url).name
    try:
        return chosen.get_state_dict(progress=False, check_hash=True, weights_only=True)
    except Exception as error:  # no network, a corrupt cached file, a refused one
        if is_refusal(error):
            raise UnsafeFileError(
                refusal_message(cached, error, f"delete it and download {chosen.url} there again")
            ) from None
        raise LabError(
            f"could not load {chosen} ({one_line(error)}): download {chosen.url} to {cached} "
            f"(the cache of $TORCH_HOME), or set backbone.weights=null"
        ) from error
