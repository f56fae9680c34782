"""AtomicCheckpointIO: a checkpoint is renamed into place whole, or not at all."""

from __future__ import annotations

import hashlib

import pytest
import torch

from lab.callbacks.checkpoint import AtomicCheckpointIO
from lab.errors import WriteError
from tests.faults import _FullDisk


def test_a_checkpoint_round_trips_and_keeps_no_temporary_file(tmp_path):
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.arange(5.0)}}, tmp_path / "ckpt" / "last.ckpt")
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["last.ckpt"]
    loaded = io.load_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert torch.equal(loaded["state_dict"]["w"], torch.arange(5.0))


def test_a_write_that_fails_part_way_leaves_the_previous_checkpoint(tmp_path):
    io = AtomicCheckpointIO()
    last = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, last)
    before = hashlib.sha256(last.read_bytes()).hexdigest()
    big = {"state_dict": {"w": torch.zeros(1 << 16)}, "zz": _FullDisk()}  # fails after w
    with pytest.raises(WriteError, match=r"^no space left on device while writing .*last.ckpt"):
        io.save_checkpoint(big, last)
    assert hashlib.sha256(last.read_bytes()).hexdigest() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left
