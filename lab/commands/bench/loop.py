"""The first hour's loop: wall time of ``make demo`` and ``make test``, after ``make install``.

Each target runs once, in the project folder, as a user would (its output goes to
``<log>/make-<target>.log``, not the console); the figure is its wall time in seconds.
The targets are 3 and 6 minutes on a 2-core machine (README). Nothing else should run
meanwhile: on shared cores the figures are upper bounds.

Run: ``lab bench loop [--targets demo test] [--record]``; ``--record`` appends the figures
to ``results/benchmarks.csv`` (``lab.commands.record.record_benchmark``).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from lab.commands.record import record_benchmark
from lab.errors import LabError

TARGETS = ("demo", "test")


def time_target(target: str, log: Path, make: str = "make") -> float:
    """Seconds of ``make <target>`` (its output in ``log``); a failure is a LabError."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w") as handle:
        done = subprocess.run([make, target], stdout=handle, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise LabError(
            f"make {target} failed (exit {done.returncode}) after {seconds:.0f} s: see {log}"
        )
    return seconds


def main(argv: Sequence[str] | None = None) -> None:
    """Run each target, print its wall time (``--record``: and append it to results/)."""
    parser = argparse.ArgumentParser(prog="lab bench loop", description=__doc__.split("\n")[0])
    parser.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    parser.add_argument("--log", default="lightning_logs/bench-loop", help="folder of the logs")
    parser.add_argument("--make", default="make", help="the make program")
    parser.add_argument("--record", action="store_true", help="add the figures to results/")
    args = parser.parse_args(argv)
    figures = {}
    for target in args.targets:
        figures[target] = time_target(target, Path(args.log) / f"make-{target}.log", args.make)
        print(f"make {target}: {figures[target]:.0f} s", flush=True)
    if args.record:
        given = sys.argv[1:] if argv is None else list(argv)
        command = shlex.join(["lab", "bench", "loop", *given])
        for target, value in figures.items():
            record_benchmark(f"make-{target}", round(value, 1), "s", command)


if __name__ == "__main__":
    main()
