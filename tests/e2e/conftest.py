"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from tests.e2e.ddp import WORLD, free_port, worker


@pytest.fixture(scope="session")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """The run folder and what each of the two processes saved (started once for all
    of tests/e2e/test_ddp_*.py)."""
    out = tmp_path_factory.mktemp("ddp")
    # Forked, the processes start with torch, Lightning and lab already imported (spawned,
    # each would spend many seconds importing them again).
    mp.start_processes(
        worker, args=(free_port(), str(out)), nprocs=WORLD, join=True, start_method="fork"
    )
    return out, [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
