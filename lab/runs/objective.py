"""What a run trains, in words: its objective as the README's tables write it, e.g.
``cross-entropy + 0.1 x center loss, label smoothing 0.1, centers' rate 0.5``.

The words are derived once, here, from a config's task and loss list (``model.class_path``
and ``model.init_args.losses``: class paths and init args, read as data), and used by
``lab summary``, ``lab report`` and ``lab record``'s tables. No loss class is imported: the
commands that only read files stay free of torch. The defaults below are those of
``lab.losses`` (``tests/runs/test_objective.py`` checks that they agree).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from lab.cli.configs import bases_of

Args = Mapping[str, Any]


def _cross_entropy(args: Args, smoothing: float) -> list[str]:
    own = args.get("label_smoothing")
    smoothing = own if own is not None else smoothing
    return [f"label smoothing {_number(smoothing)}"] if smoothing else []


def _center(args: Args, smoothing: float) -> list[str]:
    return [f"centers' rate {_number(args['lr'])}"]


def _batch_hard(args: Args, smoothing: float) -> list[str]:
    words = ["soft margin" if args["soft_margin"] else f"margin {_number(args['margin'])}"]
    if args["group_samples"] is not None:
        words.append(f"mined in groups of {args['group_samples']} images a class")
    return words


def _sampled(args: Args, smoothing: float) -> list[str]:
    return [f"margin {_number(args['margin'])}"] + (["distance swap"] if args["swap"] else [])


def _pairwise(args: Args, smoothing: float) -> list[str]:
    return [f"margins {_number(args['pos_margin'])} / {_number(args['neg_margin'])}"]


# Each loss term of lab.losses by class name: its words, its init args' defaults, and the
# details it adds after the sum (given its init args and the task's label smoothing).
TERMS: dict[str, tuple[str, dict[str, Any], Callable[[Args, float], list[str]]]] = {
    "CrossEntropy": ("cross-entropy", {"weight": 1.0, "label_smoothing": None}, _cross_entropy),
    "CenterLoss": ("center loss", {"weight": 0.1, "lr": 0.5}, _center),
    "BatchHardTripletLoss": (
        "batch-hard triplet",
        {"weight": 1.0, "margin": 0.2, "soft_margin": False, "group_samples": None},
        _batch_hard,
    ),
    "SampledTripletLoss": (
        "in-batch random triplets",
        {"weight": 1.0, "margin": 1.0, "swap": False},
        _sampled,
    ),
    "PairwiseContrastiveLoss": (
        "pairwise contrastive",
        {"weight": 1.0, "pos_margin": 0.0, "neg_margin": 1.0},
        _pairwise,
    ),
}
# What lab.tasks' classifiers default to (their init args).
DEFAULT_LOSSES = ({"class_path": "lab.losses.CrossEntropy"},)
DEFAULT_LABEL_SMOOTHING = 0.0


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _class_name(spec: Any) -> str:
    path = spec.get("class_path", "") if isinstance(spec, Mapping) else spec
    return str(path).rsplit(".", 1)[-1]


def _term_words(spec: Any, smoothing: float) -> tuple[str, list[str]]:
    """(the term with its weight, e.g. ``0.1 x center loss``; the details it adds)."""
    name = _class_name(spec)
    given = (spec.get("init_args") or {}) if isinstance(spec, Mapping) else {}
    path = str(spec.get("class_path", "")) if isinstance(spec, Mapping) else str(spec)
    if path.startswith("lab.losses.") and name in TERMS:
        words, defaults, details = TERMS[name]
        args = {**defaults, **given}
        found = details(args, smoothing)
    else:  # a loss of the user's own: its class name and the arguments given
        words, args = name, {"weight": 1.0, **given}
        found = [f"{k} {_number(v)}" for k, v in given.items() if k not in ("weight", "name")]
    weight = args["weight"]
    return (words if weight == 1 else f"{_number(weight)} x {words}"), found


def loss_words(losses: Sequence[Any] | None, label_smoothing: float | None = None) -> str:
    """The words of a loss list (``model.init_args.losses``; None: the default
    cross-entropy): the weighted terms joined by ``+``, then what each term sets."""
    smoothing = label_smoothing if label_smoothing is not None else DEFAULT_LABEL_SMOOTHING
    terms = [_term_words(spec, smoothing) for spec in (losses or DEFAULT_LOSSES)]
    return ", ".join([" + ".join(words for words, _ in terms), *(d for _, ds in terms for d in ds)])


def objective_words(model: Mapping[str, Any] | None) -> str | None:
    """The words of a config's ``model`` section (``class_path`` and ``init_args``), or None
    when it has no task."""
    if not isinstance(model, Mapping) or not model.get("class_path"):
        return None
    task = _class_name(model)
    args = model.get("init_args") or {}
    smoothing = args.get("label_smoothing")
    if task == "BinaryClassifier":  # the task's own loss, not model.losses
        smoothing = smoothing or DEFAULT_LABEL_SMOOTHING
        words = "binary cross-entropy"
        return f"{words}, label smoothing {_number(smoothing)}" if smoothing else words
    words = loss_words(args.get("losses"), smoothing)
    if task == "LayerwisePretrainedClassifier" and args.get("pretrain", True):
        denoising = "denoising " if args.get("noise") else ""
        words += f", after greedy layer-wise {denoising}autoencoder pretraining"
    return words


def config_objective(config: Mapping[str, Any] | None) -> str | None:
    """The words of a whole config (a run's ``config.yaml``), or None without a task."""
    return objective_words(config.get("model")) if isinstance(config, Mapping) else None


def _merged(base: Any, delta: Any) -> Any:
    """``delta`` over ``base``, maps merged key by key, anything else replaced (a list
    too), as the files of an experiment merge (``lab.cli.configs``)."""
    if isinstance(base, Mapping) and isinstance(delta, Mapping):
        return {**base, **{k: _merged(base.get(k), v) for k, v in delta.items()}}
    return delta


def experiment_objective(path: Path) -> str | None:
    """The words of an experiment file (``experiments/<id>.yaml``), its ``base:`` files
    merged under it; None when it does not exist or has no task."""
    path = Path(path)
    if not path.is_file():
        return None
    model: Any = {}
    for file in [*bases_of(path), path]:
        loaded = yaml.safe_load(file.read_text()) or {}
        if isinstance(loaded, Mapping):
            model = _merged(model, loaded.get("model", {}))
    return objective_words(model)


def run_objective(run_dir: Path) -> str | None:
    """The words of a run folder's ``config.yaml``; None without a readable one."""
    path = Path(run_dir) / "config.yaml"
    try:
        return config_objective(yaml.safe_load(path.read_text()))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
