"""Gathering a split on two DDP processes, a Lightning test on two processes and a NaN
on one: the same numbers and files as one process (the processes: tests/e2e/ddp.py)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from lab.distributed import gather_rows, gather_with_grad, world_size
from tests.e2e.ddp import digits_test

# The two DDP processes start once (the `ranks` fixture), on one worker under loadgroup.
pytestmark = pytest.mark.xdist_group("ddp_ranks")


def test_gather_split_puts_the_split_back_in_order_without_padding(ranks):
    _, saved = ranks
    for rank, result in enumerate(saved):
        gathered = result["gathering"]
        assert gathered["sharded"].tolist() == list(range(7))  # not 8: the padding is gone
        # Unsharded, every process evaluated the whole split: nothing is gathered.
        assert gathered["unsharded"].tolist() == ([0, 2, 4, 6], [1, 3, 5, 0])[rank]
        assert gathered["rows"].tolist() == [[0, 0]] * 3 + [[1, 1]]


def test_gathering_is_a_no_op_in_one_process():
    assert world_size() == 1
    x = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(x) is x and gather_rows(x) is x


def test_test_metrics_and_files_on_two_ranks_equal_one_process(ranks, tmp_path):
    out, saved = ranks
    expected = digits_test(1, tmp_path)
    names = ["test/acc", "test/macro_f1", "test/loss", "test/knn_acc", "test/centroid_acc"]
    names += ["test/precision_at_1", "test/map_at_r", "test/r_precision", "test/auc_macro"]
    names += [f"test/class_acc/{d}" for d in range(10)]
    assert set(names) <= set(expected)
    for result in saved:
        for name in names:
            assert result["metrics"][name] == pytest.approx(expected[name], abs=1e-6), name
    # Written once, by rank 0; and the same files as one process writes.
    files = ["confusion_matrix.csv", "per_class_accuracy.csv", "auc.csv", "tsne.csv"]
    assert saved[1]["written"] == []
    for file in [*files, "tsne.png", "roc.png", "confusion_matrix.png"]:
        assert saved[0]["written"].count(file) == 1, file
    for file in files:
        got = pd.read_csv(out / "ddp" / "run" / "version_0" / file)
        want = pd.read_csv(tmp_path / "run" / "version_0" / file)
        pd.testing.assert_frame_equal(got, want, check_exact=False, atol=1e-4)
    confusion = pd.read_csv(out / "ddp" / "run" / "version_0" / "confusion_matrix.csv")
    assert confusion.iloc[:, 1:].to_numpy().sum() == 360  # each test image once


def test_a_nan_loss_on_one_rank_stops_every_rank_at_the_same_step(ranks):
    _, results = ranks
    outcomes = [r["divergence"] for r in results]
    assert all(o["raised"] for o in outcomes), outcomes
    # Poisoned at step 2; the guard looks every 50 steps and at the epoch's end (step 4
    # here: 64 images, batches of 8, 2 ranks), and every rank stops there together.
    assert [o["step"] for o in outcomes] == [4, 4]
    assert (
        "non-finite loss" in outcomes[0]["message"] or "non-finite loss" in outcomes[1]["message"]
    )
