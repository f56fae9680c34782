"""Shared fixtures: run the ``lab`` command in-process inside a temporary folder."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from filelock import FileLock

from lab.cli import main

REPO = Path(__file__).resolve().parents[1]
ALL_EXPERIMENTS = sorted(p for p in (REPO / "experiments").glob("*.yaml"))
# LightningCLI experiments (`lab fit`); the others are run by a project command (`lab svm`).
EXPERIMENTS = [p for p in ALL_EXPERIMENTS if "model" in yaml.safe_load(p.read_text())]
# Under pytest-xdist (`make test` runs a worker per core), share the usable cores between
# the workers rather than let each one start a thread per core.
if workers := int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0")):
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(max(1, (cores or 1) // workers))
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long tests (``slow``) first: under pytest-xdist the short ones then fill the other
    workers' time, instead of one long test ending the run alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # a stable sort


@pytest.fixture(scope="session", autouse=True)
def cache_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tests' cache root (``$XDG_CACHE_HOME``): never the user's ``~/.cache/lab``."""
    home = tmp_path_factory.mktemp("xdg-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(home))
        yield home


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working folder; runs land in its ``lightning_logs/``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LAB_LOGS", raising=False)
    monkeypatch.setenv("LAB_DATA", str(tmp_path / "data"))
    return tmp_path


@pytest.fixture
def lab(workdir: Path) -> Callable[..., None]:
    """Call ``lab`` with arguments, as the console script would (quietly)."""

    def run(*args: str) -> None:
        extra = QUIET if args and args[0] in ("fit", "validate", "test", "predict") else []
        main([*map(os.fspath, args), *extra])

    return run


DEMOS = ("demo", "demo-triplet", "demo-center")


@pytest.fixture(scope="session")
def demo_runs(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """A log root with one run of each shipped demo config (fit, then test of last.ckpt: what
    `make demo` trains), made once per session: under pytest-xdist by the first worker that
    asks, while the others wait on the lock and then read the same folders."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if worker_id != "master" else base  # one folder for all workers
    root = shared / "demo-runs"
    with FileLock(str(shared / "demo-runs.lock")):
        if not (root / "done").is_file():
            for name in DEMOS:
                config = REPO / "experiments" / f"{name}.yaml"
                main(
                    [
                        "fit",
                        "--config",
                        str(config),
                        "--log_root",
                        str(root),
                        "--then_test",
                        "last",
                        *QUIET,
                    ]
                )
            (root / "done").touch()
    return root
