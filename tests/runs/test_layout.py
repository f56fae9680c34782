"""``weights: last:<experiment>``: the newest run's last.ckpt, as ``--ckpt_path last`` finds it;
run folders claimed atomically, and named after a SLURM job."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lab.cli import resolve_normalization
from lab.cli.lightning_cli import resolve_latest_weights
from lab.errors import LabError
from lab.runs.layout import (
    claim_run_dir,
    is_run_name,
    latest_checkpoint,
    run_dir_of_checkpoint,
    slurm_run_name,
)


def checkpoint(root: Path, experiment: str, version: int) -> Path:
    path = root / experiment / f"version_{version}" / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    return path


def test_last_names_the_newest_run_with_a_last_checkpoint(tmp_path: Path):
    checkpoint(tmp_path, "fmnist-ce", 2)
    newest = checkpoint(tmp_path, "fmnist-ce", 10)  # 10 after 2: by number, not by name
    (tmp_path / "fmnist-ce" / "version_11").mkdir()  # no checkpoint: passed over
    assert latest_checkpoint("last:fmnist-ce", tmp_path) == newest


def test_last_without_a_run_is_one_error_naming_the_target(tmp_path: Path):
    with pytest.raises(LabError, match=r"last:contrastive.*make contrastive"):
        latest_checkpoint("last:contrastive", tmp_path)


def test_the_config_records_the_file_and_normalises_as_for_a_file(tmp_path: Path):
    newest = checkpoint(tmp_path, "fmnist-ce", 0)
    config = {
        "data": {"init_args": {"normalization": "auto"}},
        "model": {"init_args": {"backbone": {"init_args": {"weights": "last:fmnist-ce"}}}},
    }
    resolve_latest_weights(config, tmp_path)
    resolve_normalization(config)
    assert config["model"]["init_args"]["backbone"]["init_args"]["weights"] == str(newest)
    assert config["data"]["init_args"]["normalization"] == "dataset"  # a file, not ImageNet's


def test_launches_in_the_same_moment_each_claim_a_folder_of_their_own(tmp_path: Path):
    (tmp_path / "demo" / "version_3").mkdir(parents=True)
    start = threading.Barrier(8)

    def claim(_: int) -> Path:
        start.wait()  # all eight list the folder at once, as a SLURM array's tasks do
        return claim_run_dir(tmp_path / "demo")

    with ThreadPoolExecutor(8) as pool:
        claimed = list(pool.map(claim, range(8)))
    assert sorted(p.name for p in claimed) == sorted(f"version_{n}" for n in range(4, 12))
    assert all(p.is_dir() for p in claimed)


def test_the_slurm_run_name_is_the_array_job_and_task():
    env = {"SLURM_JOB_ID": "1005", "SLURM_ARRAY_JOB_ID": "1000", "SLURM_ARRAY_TASK_ID": "5"}
    assert slurm_run_name(env) == "slurm-1000_5"
    assert slurm_run_name({"SLURM_JOB_ID": "77"}) == "slurm-77"
    with pytest.raises(LabError, match=r"--run_name slurm: SLURM_JOB_ID is not set"):
        slurm_run_name({})
    run = Path("logs/demo/slurm-1000_5")
    assert run_dir_of_checkpoint(run / "checkpoints" / "last.ckpt") == run


def test_run_folder_names():
    assert is_run_name("version_12") and is_run_name("slurm-1000_5") and is_run_name("slurm-77")
    assert not is_run_name("version_x") and not is_run_name("slurm-") and not is_run_name("demo")
