"""Experiments as deltas: a config file may name the files it builds on under ``base:``.

An experiment states only what it changes; what it shares (the data set, the network,
the optimizer, the schedule) lives in a recipe under ``experiments/_base/``::

    # experiments/q1-center.yaml
    base: _base/tiny-imagenet-resnet18.yaml   # relative to this file; a list for several
    model:
      class_path: lab.tasks.Classifier
      init_args:
        losses:
          - class_path: lab.losses.CrossEntropy
          - class_path: lab.losses.CenterLoss
            init_args: {weight: 0.1}

``lab fit --config experiments/q1-center.yaml`` is then exactly ``lab fit --config
experiments/_base/tiny-imagenet-resnet18.yaml --config experiments/q1-center.yaml``:
:func:`expand_bases` inserts every base as a ``--config`` of its own just before the
file that names it (bases of bases first), and LightningCLI merges the files left to
right as it always does (a changed ``class_path`` keeps the ``init_args`` the new class
accepts; a list, e.g. ``trainer.callbacks``, is replaced whole). The ``base:`` entry
itself is removed from the file's text before jsonargparse reads it
(:func:`strip_base`), so ``--print_config`` and the saved ``config.yaml`` show the whole
resolved config and no ``base`` key.

Why not jsonargparse's own nested ``config:`` key: it replaces whole sections of the
base (``model:`` in the delta drops the base's backbone) instead of merging them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import yaml

from lab.errors import LabError

BASE_KEY = "base"
_CONFIG_FLAGS = ("--config", "-c")
_BASE_LINE = re.compile(rf"^{BASE_KEY}\s*:")


def _load(path: Path) -> dict:
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise LabError(f"cannot read config {path}: {error}") from None
    return loaded if isinstance(loaded, dict) else {}


def bases_of(path: str | Path, _seen: tuple[Path, ...] = ()) -> list[Path]:
    """The files ``path`` builds on, in the order they are applied (bases of bases first).

    ``base:`` is a path or a list of paths, relative to the file that names them.
    """
    path = Path(path)
    key = path.resolve()
    if key in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, key))
        raise LabError(f"config bases form a cycle: {chain}")
    value = _load(path).get(BASE_KEY)
    if value is None:
        return []
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise LabError(
            f"{path}: '{BASE_KEY}:' must be a config file or a list of them "
            f"(paths relative to {path.parent}), got {value!r}"
        )
    found: list[Path] = []
    for name in names:
        base = path.parent / name
        if not base.is_file():
            raise LabError(
                f"{path}: base {name} does not exist (looked for {base}; "
                "paths are relative to the file that names them)"
            )
        found += [*bases_of(base, (*_seen, key)), base]
    return found


def _is_file(value: str) -> bool:
    try:
        return Path(value).is_file()
    except (OSError, ValueError):
        return False


def experiment_name(configs: Sequence[str | Path], default: str) -> str:
    """The experiment a run is filed under when ``--experiment`` is not given: the first
    config file the user named, i.e. the first that is neither a preset (``_*.yaml``, a file
    in ``_base/``) nor a base that a later config builds on (``expand_bases`` put those
    first: ``fmnist-contrastive-nn.yaml``, whose base is ``contrastive-nn.yaml``, names
    ``fmnist-contrastive-nn``)."""
    paths = [Path(str(config)) for config in configs]
    bases = {base.resolve() for path in paths if path.is_file() for base in bases_of(path)}
    for path in paths:
        preset = path.stem.startswith("_") or path.parent.name.startswith("_")
        if not preset and path.resolve() not in bases:
            return path.stem
    return default


def expand_bases(args: Sequence[str]) -> list[str]:
    """``args`` with ``--config B`` inserted before every ``--config X`` (or ``-c X``,
    ``--config=X``) for each base ``B`` of ``X``; other arguments are left as they are."""
    expanded: list[str] = []
    i = 0
    while i < len(args):
        arg = str(args[i])
        value = None
        if arg in _CONFIG_FLAGS and i + 1 < len(args):
            value, taken = str(args[i + 1]), [arg, str(args[i + 1])]
        elif arg.startswith("--config="):
            value, taken = arg.split("=", 1)[1], [arg]
        if value is not None and _is_file(value):
            for base in bases_of(value):
                expanded += ["--config", str(base)]
            expanded += taken
            i += len(taken)
            continue
        expanded.append(arg)
        i += 1
    return expanded


def strip_base(text: str) -> str:
    """The YAML text without its top-level ``base:`` entry (the rest byte for byte).

    The entry is the ``base:`` line and the lines under it that are indented, list items
    or comments. Text that is not a mapping with ``base`` comes back unchanged.
    """
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if _BASE_LINE.match(line)), None)
    if start is None:
        return text
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end][0] in " \t#-"):
        end += 1
    stripped = "".join(lines[:start] + lines[end:])
    try:
        before = yaml.safe_load(text)
    except yaml.YAMLError:
        return text  # not YAML that safe_load reads: leave the error to jsonargparse
    if not isinstance(before, dict) or BASE_KEY not in before:
        return text
    before.pop(BASE_KEY)
    # The text cut must be exactly the base entry: the rest must read as before.
    try:
        after = yaml.safe_load(stripped) or {}
    except yaml.YAMLError:
        after = None
    if after != before:
        raise LabError(
            f"could not remove '{BASE_KEY}:' from a config: write it as one top-level "
            f"entry, e.g. '{BASE_KEY}: _base/recipe.yaml' or a list of such paths"
        )
    return stripped
