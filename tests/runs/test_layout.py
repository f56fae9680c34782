"""``weights: last:<experiment>``: the newest run's last.ckpt, as ``--ckpt_path last`` finds it."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.cli import resolve_normalization
from lab.cli.lightning_cli import resolve_latest_weights
from lab.errors import LabError
from lab.runs.layout import latest_checkpoint


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
