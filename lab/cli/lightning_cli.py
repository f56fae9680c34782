"""``LabCLI``: LightningCLI's fit / validate / test / predict with the project's run layout.

Every run logs to ``<log root>/<experiment>/version_N/`` (TensorBoard events and
``metrics.csv`` side by side, the resolved config, ``run.json`` and checkpoints). The
experiment is named by ``--experiment`` or else by the first config file's name, so
``lab fit --config experiments/demo.yaml`` logs under ``lightning_logs/demo/``.

``--ckpt_path last`` (or ``best``) is resolved here to the newest run of the same
experiment that has a checkpoint, and that run's folder is reused: Lightning alone would
look in a fresh ``version_N`` folder and silently start from scratch. ``--ckpt_path
auto`` is ``last`` when there is such a run and a fresh start otherwise (for jobs that
may be requeued, e.g. on SLURM). A new run claims its ``version_N`` folder with an atomic
``mkdir`` (launches in the same second get folders of their own); ``--run_name slurm``
names it ``slurm-<job>_<task>`` instead, and ``--ckpt_path auto`` / ``last`` then look in
that folder only, so a requeued array task resumes its own run.

Every fit also gets ``lab.callbacks.reliability``'s ``Interruption`` (SIGTERM, Ctrl+C or
a crash saves ``last.ckpt``) and ``DivergenceGuard`` (``--divergence.*``).
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lab.callbacks import RunRecord, TestEvaluation
from lab.callbacks.checkpoint import AtomicCheckpointIO, LastAndBestCheckpoint
from lab.callbacks.reliability import DivergenceGuard, Interruption
from lab.cli.configs import expand_bases, experiment_name, strip_base
from lab.cli.loggers import AppendingCSVLogger, CurvesTensorBoardLogger
from lab.errors import LabError
from lab.io import atomic_write_text, remove_temporaries
from lab.models.weights import is_weights_path, normalize_weights
from lab.runs.checkpoints import check_checkpoint, resolve_checkpoint
from lab.runs.layout import (
    LATEST_PREFIX,
    RUN_NAMES,
    latest_checkpoint,
    latest_run,
    log_root,
    make_run_dir,
    run_dir_of_checkpoint,
    slurm_run_name,
)


class StageConfigCallback(SaveConfigCallback):
    """Saves ``config.yaml`` for fit and ``config_<stage>.yaml`` for the other stages.

    A resumed fit rewrites the same config; a later ``lab test`` in the same run folder
    does not overwrite the config that trained the model.
    """

    def setup(self, trainer, pl_module, stage: str) -> None:
        stage = str(getattr(stage, "value", stage))
        if stage != "fit":
            self.config_filename = f"config_{stage}.yaml"
        super().setup(trainer, pl_module, stage)


# Lines of jsonargparse's nested error reports that say nothing about the mistake.
_NOISE = re.compile(
    r"^(Does not validate against any of the Union subtypes|Subtypes: .*|Errors:"
    r"|Expected a <class 'NoneType'>|Given value type: .*|Given value: (NestedArg|Namespace)\(.*"
    r"|Expected a path but .* either not accessible or invalid"
    r"|Problem with given class_path '.*':)$"
)
_NESTED = re.compile(r"^((?:[\w.]+: )+)(.*)$")
_KEY = re.compile(r'^Parser key "([^"]+)":\s*(.*)$')


def condense_error(message: str) -> str:
    """One line from jsonargparse's nested report: the full key, then what was wrong.

    ``Parser key "model": ... Parser key "backbone": ... Parser key "depth": Expected a
    Literal[18, 34, 50]. Got value: 19`` becomes ``model.backbone.depth: Expected ...``.
    """
    keys, reasons = [], []
    for raw in message.splitlines():
        line = raw.strip().removeprefix("- ").strip()
        if not line or _NOISE.match(line):
            continue
        key = _KEY.match(line)
        if key:
            keys.append(key.group(1))
            line = key.group(2)
            if not line:
                continue
        reasons.append(line)
    text = " ".join(message.split()) if not reasons else "; ".join(reasons)
    if keys:
        text = f"{'.'.join(keys)}: {text}"
    # Nested parsers report first and each parent prefixes its key: "model: backbone: x".
    nested = _NESTED.match(text)
    if nested:
        text = nested.group(1).rstrip(": ").replace(": ", ".") + ": " + nested.group(2)
    return text


class LabArgumentParser(LightningArgumentParser):
    """Reports a bad argument or config in one line (plus a --help tip), not a full usage.

    The Trainer alone has a hundred options: a usage dump would bury the error.
    """

    def error(self, message: str, ex: Exception | None = None):
        return super().error(condense_error(message), ex)

    def print_usage(self, file: Any = None) -> None:
        if file is not sys.stderr:
            super().print_usage(file)

    # Experiments as deltas (lab/configs.py): a config's ``base:`` files become --config
    # files of their own just before it, and the ``base:`` entry is not read as an option.
    def parse_args(self, args: Sequence[str] | None = None, *rest: Any, **kwargs: Any):
        args = expand_bases(sys.argv[1:] if args is None else args)
        return super().parse_args(args, *rest, **kwargs)

    def parse_string(self, content: str, *rest: Any, **kwargs: Any):
        return super().parse_string(strip_base(content), *rest, **kwargs)

    def save(self, cfg: Any, path: Any, *rest: Any, multifile: bool = True, **kwargs: Any) -> None:
        """The run's ``config.yaml`` written through a temporary file (``lab.io``), not in
        place as jsonargparse does (a full disk would leave half a config)."""
        if multifile:
            return super().save(cfg, path, *rest, multifile=multifile, **kwargs)
        if not kwargs.pop("overwrite", False) and Path(path).is_file():
            raise ValueError(f"Refusing to overwrite existing file: {path}")
        kwargs.pop("branch", None)
        atomic_write_text(path, self.dump(cfg, *rest, **kwargs))


class LabCLI(LightningCLI):
    """LightningCLI with the project's run layout, checkpoint defaults and resume rules."""

    def __init__(self, args: Sequence[str] | None = None, **kwargs: Any) -> None:
        self._command = "lab " + shlex.join(sys.argv[1:] if args is None else list(args))
        self._run_dir: Path | None = None
        self._resolved_ckpt: str | None = None
        kwargs.setdefault("save_config_callback", StageConfigCallback)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("seed_everything_default", 0)
        kwargs.setdefault("parser_class", LabArgumentParser)
        kwargs.setdefault("auto_configure_optimizers", False)  # tasks take optimizer args
        super().__init__(args=args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--experiment",
            type=str | None,
            default=None,
            help="Name of the run folder under the log root (default: the config file's name).",
        )
        parser.add_argument(
            "--log_root",
            type=str | None,
            default=None,
            help="Where runs are written (default: $LAB_LOGS or lightning_logs).",
        )
        parser.add_argument(
            "--run_name",
            type=Literal[RUN_NAMES],
            default="version",
            help="The run folder: version (the next free version_N) or slurm "
            "(slurm-<job>_<task>, the same after a requeue: with --ckpt_path auto the job "
            "resumes its own run).",
        )
        parser.add_lightning_class_args(LastAndBestCheckpoint, "checkpoint")
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        # Confusion matrix, per-class accuracy, ROC/AUC files and figures after every test
        # (--evaluation.roc=false etc. to leave one out).
        parser.add_lightning_class_args(TestEvaluation, "evaluation")
        # A NaN or infinite loss stops the run with the step and the last finite values
        # (--divergence.action=skip drops such steps instead).
        parser.add_lightning_class_args(DivergenceGuard, "divergence")
        parser.add_argument(
            "--then_test",
            type=Literal["last", "best"] | None,
            default=None,
            help="After `lab fit`, test this checkpoint of the run in the same process: what "
            "`lab test --ckpt_path last` (or best) does next, without a second start-up.",
        )
        parser.add_argument(
            "--seed",
            type=int | None,
            default=None,
            help="Seed of the run (the same as --seed_everything); with "
            "--trainer.deterministic=true two runs with the same seed give the same numbers.",
        )
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/acc",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                "checkpoint.filename": "best-epoch{epoch:03d}",
                "checkpoint.auto_insert_metric_name": False,
                # On in every experiment; the patience is long enough not to cut a cosine
                # schedule's slow middle (override: --early_stopping.patience=N).
                "early_stopping.monitor": "val/acc",
                "early_stopping.mode": "max",
                "early_stopping.patience": 10,
                "early_stopping.min_delta": 0.0,
            }
        )
        parser.link_arguments(
            "data.num_classes", "model.init_args.num_classes", apply_on="instantiate"
        )

    # -- naming and resuming -------------------------------------------------------------

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")  # self.subcommand is set after this
        config = self.config[subcommand] if subcommand else self.config
        if config.get("seed") is not None:  # --seed N is --seed_everything N
            config["seed_everything"] = config["seed"]
        ckpt_path = config.get("ckpt_path")
        if ckpt_path and Path(str(ckpt_path)).is_file():
            # LightningCLI reads a checkpoint file's hyperparameters right after this
            # (weights_only, but a refusal would be a traceback): check it first.
            check_checkpoint(Path(str(ckpt_path)))

    def _experiment_name(self, config: Any) -> str:
        if config.get("experiment"):
            return str(config["experiment"])
        return experiment_name(config.get("config") or [], "default")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        config["experiment"] = self._experiment_name(config)
        root = log_root(config.get("log_root"))
        resolve_latest_weights(config, root)
        resolve_normalization(config)
        experiment_dir = root / config["experiment"]
        named = None  # a run folder named in advance: --run_name slurm
        if config.get("run_name") == "slurm":
            named = self._run_dir = make_run_dir(experiment_dir / slurm_run_name())
        ckpt_path = config.get("ckpt_path")
        if ckpt_path == "auto":  # resume if there is something to resume, else start
            if named is not None:
                found = named if (named / "checkpoints" / "last.ckpt").is_file() else None
            else:
                found = latest_run(experiment_dir, with_checkpoint=True)
            ckpt_path = "last" if found is not None else None
            config["ckpt_path"] = ckpt_path
        if ckpt_path:
            ckpt = resolve_checkpoint(str(ckpt_path), experiment_dir, named)
            check_checkpoint(ckpt)
            self._resolved_ckpt = str(ckpt)
            self._run_dir = named or run_dir_of_checkpoint(ckpt)
            # The saved config.yaml of a fit must repeat the run, not resume it again;
            # a later stage's config records the checkpoint it used.
            config["ckpt_path"] = None if self.subcommand == "fit" else self._resolved_ckpt
        if self.subcommand == "fit" and self._run_dir is not None:  # this fit owns the folder
            for folder in (self._run_dir, self._run_dir / "checkpoints"):
                remove_temporaries(folder)  # of a write killed mid-way (SIGKILL)

    def after_fit(self) -> None:
        """``--then_test last|best``: the test of that checkpoint of this run, in this
        process, into the same run folder (metrics, figures, ``config_test.yaml``)."""
        which = self.config["fit"].get("then_test")
        trainer = self.trainer
        if not which or trainer.interrupted:  # Ctrl+C ends fit normally: no test then
            return
        if trainer.fast_dev_run:  # it writes no checkpoint: test the weights in memory
            trainer.test(self.model, datamodule=self.datamodule)
            return
        saver = trainer.checkpoint_callback
        found = getattr(saver, "last_model_path" if which == "last" else "best_model_path", "")
        if not found:
            raise LabError(
                f"--then_test {which}: this fit saved no {which} checkpoint (checkpoint."
                f"save_last / checkpoint.monitor); run `lab test --ckpt_path PATH` instead"
            )
        self.config["fit"]["ckpt_path"] = found  # config_test.yaml records what was tested
        for callback in trainer.callbacks:
            if isinstance(callback, SaveConfigCallback):
                callback.already_saved = False  # write config_test.yaml as `lab test` does
        trainer.test(self.model, datamodule=self.datamodule, ckpt_path=found)

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        if self._resolved_ckpt is not None:
            self.config_init[self.subcommand]["ckpt_path"] = self._resolved_ckpt

    def _loggers(self, config: Any) -> list:
        if self._run_dir is not None:  # continue the run the checkpoint came from
            save_dir = self._run_dir.parent.parent
            name = self._run_dir.parent.name
            folder = self._run_dir.name
            version: int | str | None = (
                int(folder.removeprefix("version_")) if folder.startswith("version_") else folder
            )
        else:
            save_dir, name, version = log_root(config.get("log_root")), config["experiment"], None
        tensorboard = CurvesTensorBoardLogger(
            save_dir, name=name, version=version, default_hp_metric=False
        )
        # The version is claimed (a folder made) when a logger first needs it, not here.
        csv = AppendingCSVLogger(save_dir, name=name, version=version, same_folder_as=tensorboard)
        return [tensorboard, csv]

    def instantiate_trainer(self, **kwargs: Any):
        config = self.config[self.subcommand]
        if config["trainer"].get("logger") in (None, True):
            kwargs["logger"] = self._loggers(config)
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # not a user's own
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        trainer.callbacks.append(RunRecord(command=self._command))
        trainer.callbacks.append(Interruption())
        return trainer


def _backbone_init(config: Any) -> Any:
    """``model.init_args.backbone.init_args`` of a config, or None."""
    model_init = (config.get("model") or {}).get("init_args") or {}
    backbone = model_init.get("backbone") if hasattr(model_init, "get") else None
    backbone_init = backbone.get("init_args") if hasattr(backbone, "get") else None
    return backbone_init if hasattr(backbone_init, "get") else None


def resolve_latest_weights(config: Any, root: Path) -> None:
    """Backbone ``weights: last:<experiment>`` becomes the ``last.ckpt`` of that
    experiment's newest run under ``root`` (the rule of ``--ckpt_path last``); the saved
    config records the file."""
    backbone_init = _backbone_init(config)
    weights = backbone_init.get("weights") if backbone_init is not None else None
    if isinstance(weights, str) and weights.startswith(LATEST_PREFIX):
        backbone_init["weights"] = str(latest_checkpoint(weights, root))


def resolve_normalization(config: Any) -> None:
    """``data.normalization: auto`` becomes ``imagenet`` when the model's backbone starts
    from torchvision's (ImageNet) weights, else ``dataset``; the saved config records it."""
    data = config.get("data")
    init = data.get("init_args") if data is not None and hasattr(data, "get") else None
    if init is None or init.get("normalization") != "auto":
        return
    backbone_init = _backbone_init(config)
    weights = backbone_init.get("weights") if backbone_init is not None else None
    weights = normalize_weights(weights) if isinstance(weights, str) else None
    pretrained = weights is not None and not is_weights_path(weights)
    init["normalization"] = "imagenet" if pretrained else "dataset"
