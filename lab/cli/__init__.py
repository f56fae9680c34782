"""The ``lab`` command: LightningCLI's fit / validate / test / predict, plus project commands.

- ``lab.cli.lightning_cli``: :class:`LabCLI`, the run layout, checkpoint defaults and
  resume rules of ``lab fit`` / ``validate`` / ``test`` / ``predict``;
- ``lab.cli.configs``: experiments as deltas (``base:`` files);
- ``lab.cli.loggers``: the CSV logger that lets a resumed run append.

The project's own commands (``lab summary``, ``report``, ...; ``lab.commands``) are
dispatched by :func:`main` before LightningCLI sees the arguments, and before
``lightning`` is even imported: a command that only reads run folders starts in a second.
"""

from __future__ import annotations

import importlib
import signal
import sys
from collections.abc import Sequence
from typing import Any

from lab.errors import LabError, WriteError, write_error

# The project's own commands, dispatched before LightningCLI sees the arguments.
PROJECT_COMMANDS = {
    "summary": "lab.commands.summary:main",
    "sweep": "lab.commands.sweep:main",
    "study": "lab.commands.study:main",
    "report": "lab.commands.report:main",
    "compare": "lab.commands.compare:main",
    "svm": "lab.commands.svm:main",
    "bench": "lab.commands.bench:main",
    "record": "lab.commands.record:main",
}
# `lab --help`: every command in a line, written here so that the listing imports nothing.
COMMAND_HELP = {
    "fit": "train an experiment: lab fit --config experiments/<id>.yaml [--then_test last]",
    "validate": "evaluate a checkpoint on the val split (--ckpt_path last|best|PATH)",
    "test": "evaluate a checkpoint on the test split, with every figure (--ckpt_path ...)",
    "predict": "predict with a checkpoint (--ckpt_path ...)",
    "summary": "one table of the headline metrics of runs (lab summary demo demo-center)",
    "compare": "two runs side by side: paired differences with intervals and p-values",
    "report": "one Markdown / HTML report of runs: tables, curves, every figure",
    "sweep": "a grid of settings, each run once (or over seeds), one table and plot",
    "study": "the runs of a study file, then its summary, report, compares (make <study>)",
    "svm": "SVMs on a backbone's features: kernels x scalings, one table",
    "record": "append runs' rows to results/*.csv (machine, commit, command)",
    "bench": "benchmarks that print figures (lab bench --help lists them)",
}


def usage() -> str:
    """``lab --help``: the commands, each with what it is for."""
    lines = ["usage: lab <command> [options]   (lab <command> --help for its options)", ""]
    lines += [f"  {name:<10}{what}" for name, what in COMMAND_HELP.items()]
    return "\n".join(lines)


# Names of lab.cli.lightning_cli offered here too; imported on first use (PEP 562) so that
# `import lab.cli` does not import Lightning (about 7 s on 2 cores).
_LIGHTNING_CLI_NAMES = (
    "LabArgumentParser",
    "LabCLI",
    "StageConfigCallback",
    "condense_error",
    "resolve_normalization",
)


def __getattr__(name: str) -> Any:
    if name in _LIGHTNING_CLI_NAMES:
        return getattr(importlib.import_module("lab.cli.lightning_cli"), name)
    raise AttributeError(f"module 'lab.cli' has no attribute {name!r}")


def main(args: Sequence[str] | None = None) -> None:
    """Entry point of the ``lab`` console script."""
    argv = list(sys.argv[1:] if args is None else args)
    if argv in ([], ["-h"], ["--help"]):
        print(usage())
        return
    try:
        if argv and argv[0] in PROJECT_COMMANDS:
            module_name, function = PROJECT_COMMANDS[argv[0]].split(":")
            module = importlib.import_module(module_name)
            getattr(module, function)(argv[1:])
            return
        from lab.cli.lightning_cli import LabCLI  # Lightning: only for the Trainer's commands

        LabCLI(args=None if args is None else argv)
    except SystemExit as stop:
        if not _is_sigterm(stop):
            raise
        # Interruption saved last.ckpt and said how to continue
        print("lab: stopped by SIGTERM", file=sys.stderr)
        raise SystemExit(128 + signal.SIGTERM) from None
    except Exception as error:
        user_error = _find_lab_error(error) or write_error(error)
        if user_error is None:
            raise
        if isinstance(user_error, WriteError):  # a full disk, a read-only folder: one line
            last = getattr(error, "lab_last_checkpoint", None)
            user_error.last_checkpoint = user_error.last_checkpoint or last
            print(f"lab: {user_error}", file=sys.stderr)
        else:
            print(f"lab: error: {user_error}", file=sys.stderr)
        raise SystemExit(2) from None


def _is_sigterm(stop: SystemExit) -> bool:
    """Lightning's SIGTERMException, looked up only where Lightning is already imported."""
    exceptions = sys.modules.get("lightning.pytorch.utilities.exceptions")
    return exceptions is not None and isinstance(stop, exceptions.SIGTERMException)


def _find_lab_error(error: BaseException | None) -> LabError | None:
    """The LabError behind an exception (jsonargparse wraps errors raised by constructors)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, LabError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
