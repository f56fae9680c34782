"""The Fashion-MNIST experiments wired together on the IDX fixture, as `make fmnist-ce`,
`make fmnist-svm` and `make fmnist-transfer` chain them: the CNN that fmnist-ce trains
is what the SVM table and the transfer runs start from."""

from __future__ import annotations

import pandas as pd
import torch

from lab.cli import main
from lab.data.fakes.idx import write_idx
from lab.models.weights import backbone_state_dict
from tests.conftest import REPO
from tests.helpers import short_fit

EXPERIMENTS = REPO / "experiments"
FIXTURE = ["--data.init_args.verify=false", "--trainer.max_epochs=1"]
SHORT = short_fit(None)


def test_fmnist_ce_backbone_feeds_the_svm_table_and_the_transfer_runs(lab, workdir, capsys):
    root = workdir / "data"
    write_idx(root, per_class_train=12, per_class_test=3)
    data = [f"--data.init_args.root={root}"]
    lab("fit", "--config", EXPERIMENTS / "fmnist-ce.yaml", *data, *FIXTURE, *SHORT)
    checkpoint = (
        workdir / "lightning_logs" / "fmnist-ce" / "version_0" / "checkpoints" / "last.ckpt"
    )
    trained = backbone_state_dict(checkpoint)

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
    tuned = backbone_state_dict(
        workdir / "lightning_logs" / "fmnist-transfer" / "version_0" / "checkpoints" / "last.ckpt"
    )
    trunk = [k for k in trained if k.startswith("body.")]
    assert trunk and all(torch.equal(tuned[k], trained[k]) for k in trunk)  # frozen, BN too
    # Only the new 10-way head trains: 192 x 10 weights + 10 biases.
    metrics = pd.read_csv(
        workdir / "lightning_logs" / "fmnist-transfer" / "version_0" / "metrics.csv"
    )
    assert metrics["params/trainable"].dropna().tolist() == [192 * 10 + 10]

    # ... and with every layer trained, the trunk moves away from where it started.
    lab(
        "fit", "--config", EXPERIMENTS / "fmnist-transfer.yaml", weights,
        "--model.init_args.trainable=all", "--experiment=fmnist-transfer-all", *SHORT,
    )  # fmt: skip
    all_layers = backbone_state_dict(
        workdir
        / "lightning_logs"
        / "fmnist-transfer-all"
        / "version_0"
        / "checkpoints"
        / "last.ckpt"
    )
    assert not torch.equal(all_layers["body.0.weight"], trained["body.0.weight"])
