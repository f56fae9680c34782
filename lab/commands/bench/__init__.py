"""Benchmarks that back the project's speed claims: ``lab bench <name> [options]``, or
``python -m lab.commands.bench.<name>``; each prints its figures."""

from __future__ import annotations

import ast
import importlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path

from lab.errors import LabError

BENCHMARKS = ("overhead", "throughput", "dataloader", "losses", "tsne", "gpu", "startup", "loop")


def describe(name: str) -> str:
    """The first line of a benchmark module's docstring: what it measures (read from the
    source, not imported: most benchmarks import torch, and `lab bench --help` need not)."""
    spec = importlib.util.find_spec(f"lab.commands.bench.{name}")
    source = Path(spec.origin).read_text() if spec and spec.origin else ""
    return (ast.get_docstring(ast.parse(source)) or "").strip().splitlines()[0]


def usage() -> str:
    """``lab bench --help``: the benchmarks and what each measures."""
    lines = ["usage: lab bench <name> [options]   (lab bench <name> --help for its options)", ""]
    lines += [f"  {name:<12}{describe(name)}" for name in BENCHMARKS]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Run benchmark ``argv[0]`` with the rest of the arguments."""
    argv = list(argv or [])
    if not argv or argv[0] in ("-h", "--help"):
        if not argv:
            raise LabError(f"lab bench needs a benchmark name: one of {', '.join(BENCHMARKS)}")
        print(usage())
        return
    name, rest = argv[0], argv[1:]
    if name not in BENCHMARKS:
        raise LabError(
            f"unknown benchmark {name!r}: expected one of {', '.join(BENCHMARKS)} "
            "(lab bench --help says what each measures)"
        )
    importlib.import_module(f"lab.commands.bench.{name}").main(rest)
