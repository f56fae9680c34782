"""`lab --help` and the commands that read run folders start without torch or Lightning
(their start-up time is a benchmark, `lab bench startup`; this guards the imports)."""

from __future__ import annotations

import subprocess
import sys

from lab.cli import COMMAND_HELP, PROJECT_COMMANDS, main

# The commands that need no model: their help and argument parsing import no torch.
READERS = ("summary", "compare", "report", "record", "sweep", "study", "bench")

CHECK = """
import sys
from lab.cli import main
for argv in ([], ["--help"], *[[name, "--help"] for name in {readers}]):
    try:
        main(argv)
    except SystemExit as stop:
        assert stop.code in (0, None), (argv, stop.code)
heavy = ("torch", "lightning", "scipy.stats", "matplotlib.pyplot")
heavy = sorted(name for name in heavy if name in sys.modules)
print("heavy:", heavy)
"""


def test_help_and_the_reading_commands_import_neither_torch_nor_lightning():
    done = subprocess.run(
        [sys.executable, "-c", CHECK.format(readers=READERS)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip().splitlines()[-1] == "heavy: []"


def test_the_listing_names_every_command(capsys):
    main(["--help"])
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()[2:]]
    assert listed == list(COMMAND_HELP)
    assert set(PROJECT_COMMANDS) | {"fit", "validate", "test", "predict"} == set(COMMAND_HELP)
