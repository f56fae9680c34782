"""The Fashion-MNIST experiments wired together on the IDX fixture, as `make fmnist-ce`,
`make fmnist-svm` and `make fmnist-transfer` chain them: the CNN that fmnist-ce trains
is what the SVM table and the transfer runs start from."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from lab.cli import main
from lab.data.fakes.idx import write_idx
from lab.models.weights import load_torch_file
from tests.conftest import REPO

EXPERIMENTS = REPO / "experiments"
FIXTURE = ["--data.init_args.verify=false", "--trainer.max_epochs=1"]
SHORT = ["--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1"]


def _backbone(checkpoint: Path) -> dict[str, torch.Tensor]:
    state = load_torch_file(checkpoint)["state_dict"]
    return {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}


def test_fmnist_ce_backbone_feeds_the_svm_table_and_the_transfer_runs(lab, workdir, capsys):
    root = workdir / "data"
    write_idx(root, per_class_train=12, per_class_test=3)
    data = [f"--data.init_args.root={root}"]
    lab("fit", "--config", EXPERIMENTS / "fmnist-ce.yaml", *data, *FIXTURE, *SHORT)
    checkpoint = (
        workdir / "lightning_logs" / "fmnist-ce" / "version_0" / "checkpoints" / "last.ckpt"
    )
    trained = _backbone(checkpoint)

    # fmnist-svm: raw pixels and the CNN's features in one table.
    capsys.readouterr()
    main(
        ["svm", "--config", str(EXPERIMENTS / "fmnist-svm.yaml"), *data, FIXTURE[0],
         f"--backbone.init_args.weights={checkpoint}", "--max_train=60"]
    )  # fmt: skip
    table = pd.read_csv(workdir / "lightning_logs" / "fmnist-svm" / "version_0" / "svm.csv")
    assert table["layer"].tolist() == ["pixels", "penultimate"]
    assert (table["n_train"] == 60).all() and table["test_acc"].between(0, 1).all()
    assert "best (val)" in capsys.readouterr().out

    # fmnist-transfer, trainable head: the digits on the frozen fmnist-ce trunk.
    weights = f"--model.init_args.backbone.init_args.weights={checkpoint}"
    lab("fit", "--config", EXPERIMENTS / "fmnist-transfer.yaml", weights, *SHORT)
    tuned = _backbone(
        workdir / "lightning_logs" / "fmnist-transfer" / "version_0" / "checkpoints" / "last.ckpt"
    )
    trunk = [k for k in trained if k.startswith("body.")]
    assert trunk and all(torch.equal(tuned[k], trained[k]) for k in trunk)  # frozen, BN too
    assert not torch.equal(tuned["fc.weight"], trained["fc.weight"])  # a new head trained

    # ... and with every layer trained, the trunk moves away from where it started.
    lab(
        "fit", "--config", EXPERIMENTS / "fmnist-transfer.yaml", weights,
        "--model.init_args.trainable=all", "--experiment=fmnist-transfer-all", *SHORT,
    )  # fmt: skip
    all_layers = _backbone(
        workdir
        / "lightning_logs"
        / "fmnist-transfer-all"
        / "version_0"
        / "checkpoints"
        / "last.ckpt"
    )
    assert not torch.equal(all_layers["body.0.weight"], trained["body.0.weight"])
