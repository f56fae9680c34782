"""Start-up time: each ``lab`` command beside ``python -c "import torch"``, in one run.

Every figure is the median wall time of ``--repeats`` fresh processes (after one warm-up
of each, so every one reads the same cached files), of: ``import torch``, ``import
lightning.pytorch``, ``lab --help``, ``lab <command> --help`` for the commands that read
run folders (summary, compare, report, record, sweep, bench) and for ``lab fit``, which
builds LightningCLI's whole parser. A command is measured through ``python -m lab.cli``
with this interpreter, so the figures are of the code, not of a console script's own
start. The ratio to ``import torch`` is the target (at most 0.5 for the commands that
need no model).

Run: ``lab bench startup [--repeats 5] [--record]``; ``--record`` appends the figures to
``results/benchmarks.csv`` (``lab.commands.record.record_benchmark``).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

from lab.commands.record import record_benchmark

# The commands that read run folders and need no model: their target is half of torch's.
READERS = ("summary", "compare", "report", "record", "sweep", "bench")


def probes() -> dict[str, list[str]]:
    """What is timed, by name: each a command line of this interpreter."""
    python = [sys.executable]
    found = {
        "import torch": [*python, "-c", "import torch"],
        "import lightning": [*python, "-c", "import lightning.pytorch"],
        "lab --help": [*python, "-m", "lab.cli", "--help"],
    }
    for command in (*READERS, "fit"):
        found[f"lab {command} --help"] = [*python, "-m", "lab.cli", command, "--help"]
    return found


def seconds(command: list[str], repeats: int) -> float:
    """The median wall time of ``repeats`` runs of ``command`` (after one warm-up)."""
    times = []
    for attempt in range(repeats + 1):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if attempt:  # the first run warms the file cache
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def table(figures: dict[str, float]) -> str:
    """Seconds of each probe and its ratio to ``import torch``."""
    torch_seconds = figures["import torch"]
    lines = [f"{'what':<24}{'seconds':>9}{'/ torch':>9}"]
    lines += [
        f"{name:<24}{value:>9.2f}{value / torch_seconds:>9.2f}" for name, value in figures.items()
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Time every probe and print the table (``--record``: and append it to results/)."""
    parser = argparse.ArgumentParser(prog="lab bench startup", description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per probe")
    parser.add_argument("--record", action="store_true", help="add the figures to results/")
    args = parser.parse_args(argv)
    figures = {name: seconds(command, max(1, args.repeats)) for name, command in probes().items()}
    print(f"start-up, median of {args.repeats} fresh processes each ({sys.executable})")
    print(table(figures))
    if args.record:
        given = sys.argv[1:] if argv is None else list(argv)
        command = shlex.join(["lab", "bench", "startup", *given])
        for name, value in figures.items():
            key = "startup-" + name.replace(" --help", "").replace(" ", "-")
            record_benchmark(key, round(value, 2), "s", command)


if __name__ == "__main__":
    main()
