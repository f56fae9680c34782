"""Greedy layer-wise pretraining (``lab.tasks.LayerwisePretrainedClassifier`` on
``lab.models.MLP``): each stage lowers its own reconstruction loss, stage k trains on the
codes of layers 1..k-1 (not the images), the run writes its stage table and figure, and
neither ``pretrain: false`` nor a resumed fit pretrains."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sklearn.decomposition import PCA
from torch import nn

import lab.tasks.layerwise as layerwise
from lab.cli import main
from lab.data import DigitsDataModule
from lab.errors import LabError
from lab.models import MLP, LinearModel
from lab.tasks import LayerwisePretrainedClassifier
from tests.conftest import REPO

HIDDEN = [32, 16, 8]


def _task(**kwargs) -> LayerwisePretrainedClassifier:
    torch.manual_seed(0)
    return LayerwisePretrainedClassifier(MLP(HIDDEN, in_features=64), 10, **kwargs)


def test_a_linear_autoencoder_reaches_the_pca_reconstruction_error():
    # Rank-6 data in 12 dimensions through a 3-unit linear bottleneck: the best possible
    # MSE is that of PCA with 3 components (Baldi & Hornik 1989).
    rng = np.random.default_rng(0)
    data = rng.normal(size=(256, 6)) @ rng.normal(size=(6, 12)) + rng.normal(size=12)
    data = torch.tensor(data, dtype=torch.float32)
    pca = PCA(n_components=3).fit(data.numpy())
    best = float(((pca.inverse_transform(pca.transform(data.numpy())) - data.numpy()) ** 2).mean())
    torch.manual_seed(0)
    encoder, decoder = nn.Linear(12, 3), nn.Linear(3, 12)
    seen = []
    losses = layerwise.train_autoencoder(
        encoder,
        decoder,
        lambda: [data],  # full batch
        epochs=200,
        optimizer=lambda params: torch.optim.Adam(params, lr=0.05),
        on_epoch=lambda epoch, loss: seen.append(epoch),
    )
    assert seen == list(range(200)) and len(losses) == 200
    assert losses[0] > 3 * best
    assert losses[-1] == pytest.approx(best, rel=0.01)
    with torch.no_grad():
        final = float(((decoder(encoder(data)) - data) ** 2).mean())
    assert final == pytest.approx(losses[-1], rel=0.02)


def test_each_stage_lowers_its_loss_and_trains_on_the_previous_codes(monkeypatch):
    inputs: dict[int, list[torch.Tensor]] = {}
    original = layerwise.train_autoencoder

    def recording(encoder, decoder, batches, *args, **kwargs):
        stage = len(inputs) + 1
        inputs[stage] = []

        def recorded():
            for h in batches():
                if len(inputs[stage]) < n_batches:  # the first epoch's
                    inputs[stage].append(h.clone())
                yield h

        return original(encoder, decoder, recorded, *args, **kwargs)

    monkeypatch.setattr(layerwise, "train_autoencoder", recording)
    data = DigitsDataModule(shuffle=False, batch_size=256)
    data.setup("fit")
    loader = data.train_dataloader()
    n_batches = len(loader)
    images = data.train_set.tensors[0]
    task = _task(pretrain_optimizer=lambda p: torch.optim.Adam(p, lr=1e-2))
    before = copy.deepcopy(task.backbone.state_dict())
    history = task.pretrain_layers(loader, epochs=4)

    assert [r["stage"] for r in history] == [1, 2, 3]
    assert [(r["in"], r["out"]) for r in history] == [(64, 32), (32, 16), (16, 8)]
    for record in history:
        assert record["epochs"] == 4 and len(record["losses"]) == 4
        assert record["last_loss"] < 0.8 * record["first_loss"], record
    assert task.training  # its mode is given back
    # Stage k saw the code of layers 1..k-1, which did not change after their own stage.
    task.eval()
    with torch.no_grad():
        for stage, width in zip((1, 2, 3), (64, 32, 16), strict=True):
            seen = torch.cat(inputs[stage])
            assert seen.shape == (len(images), width)
            torch.testing.assert_close(seen, task.backbone.code(images, stage - 1))
    torch.testing.assert_close(inputs[1][0], images[:256].flatten(1))
    # Every hidden layer changed; the classifier did not take part.
    after = task.backbone.state_dict()
    for k in range(len(HIDDEN)):
        assert not torch.equal(
            before[f"encoder_layers.{k}.0.weight"], after[f"encoder_layers.{k}.0.weight"]
        )
    torch.testing.assert_close(before["fc.weight"], after["fc.weight"])


def test_feature_layer_picks_the_code_and_keeps_the_logits():
    last, third = _task(), _task(feature_layer=2)
    third.load_state_dict(last.state_dict())
    x = torch.randn(5, 1, 8, 8)
    assert last.features(x).shape == (5, 8) and third.features(x).shape == (5, 16)
    torch.testing.assert_close(third.features(x), last.backbone.code(x, 2))
    torch.testing.assert_close(third(x), last(x))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"feature_layer": 4}, "feature_layer must be 1..3"),
        ({"pretrain_epochs": 0}, "pretrain_epochs must be at least 1"),
        ({"pretrain_batches": 0}, "pretrain_batches must be at least 1"),
        ({"noise": -0.1}, "noise must be >= 0"),
    ],
)
def test_bad_settings_are_clear_errors(kwargs, message):
    with pytest.raises(LabError, match=message):
        _task(**kwargs)


def test_the_backbone_must_be_an_mlp():
    with pytest.raises(LabError, match="must be lab.models.MLP"):
        LayerwisePretrainedClassifier(LinearModel(64), 10)


CONFIG = {
    "seed_everything": 0,
    "trainer": {"max_epochs": 1, "accelerator": "cpu", "limit_train_batches": 2},
    "model": {
        "class_path": "lab.tasks.LayerwisePretrainedClassifier",
        "init_args": {
            "backbone": {
                "class_path": "lab.models.MLP",
                "init_args": {"in_channels": 1, "image_size": 8, "hidden": [16, 8]},
            },
            "pretrain_epochs": 2,
            "pretrain_batches": 3,
            "pretrain_optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.01}},
            "feature_layer": 1,
            "embedding_metrics": False,
        },
    },
    "data": {"class_path": "lab.data.DigitsDataModule", "init_args": {"batch_size": 64}},
}


def _forbid_pretraining(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("pretrained although it should not have")

    monkeypatch.setattr(layerwise, "train_autoencoder", fail)


def test_fit_pretrains_writes_its_files_and_a_resumed_fit_does_not(lab, workdir, monkeypatch):
    config = workdir / "layers.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    lab("fit", "--config", config)
    run = workdir / "lightning_logs" / "layers" / "version_0"
    stages = pd.read_csv(run / "pretrain_stages.csv")
    assert list(stages.columns) == [
        "stage", "in", "out", "first_loss", "last_loss", "epochs", "seconds"
    ]  # fmt: skip
    assert stages[["stage", "in", "out", "epochs"]].values.tolist() == [
        [1, 64, 16, 2],
        [2, 16, 8, 2],
    ]
    assert (stages["last_loss"] < stages["first_loss"]).all()
    assert (run / "pretrain_loss.png").stat().st_size > 1000
    metrics = pd.read_csv(run / "metrics.csv")
    for stage in (1, 2):
        logged = metrics[f"pretrain/stage{stage}/loss"].dropna().tolist()
        assert logged == pytest.approx(
            stages.loc[stage - 1, ["first_loss", "last_loss"]].tolist(), rel=1e-4
        )
    assert metrics["train/loss"].notna().sum() == 1  # then the supervised epoch

    _forbid_pretraining(monkeypatch)
    lab("fit", "--config", config, "--trainer.max_epochs=2", "--ckpt_path", "last")
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["train/loss"].notna().sum() == 2
    assert metrics["pretrain/stage1/loss"].notna().sum() == 2  # none added
    lab("test", "--config", config, "--ckpt_path", "last")  # t-SNE-ready features of layer 1


def test_pretrain_false_trains_the_same_mlp_without_pretraining(lab, workdir, monkeypatch):
    _forbid_pretraining(monkeypatch)
    config = workdir / "scratch.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    lab("fit", "--config", config, "--model.init_args.pretrain=false")
    run = workdir / "lightning_logs" / "scratch" / "version_0"
    assert not (run / "pretrain_stages.csv").exists()
    assert pd.read_csv(run / "metrics.csv")["train/loss"].notna().sum() == 1


def test_the_experiments_differ_only_in_pretraining(capsys, workdir):
    def printed(*configs: str) -> dict:
        args = [a for c in configs for a in ("--config", str(REPO / "experiments" / c))]
        with pytest.raises(SystemExit):
            main(["fit", *args, "--print_config"])
        return yaml.safe_load(capsys.readouterr().out)

    pretrained, scratch = printed("q1-layerwise.yaml"), printed("q1-layerwise-scratch.yaml")
    assert pretrained["model"]["init_args"]["pretrain"] is True
    assert scratch["model"]["init_args"]["pretrain"] is False
    for config in (pretrained, scratch):
        config["model"]["init_args"]["pretrain"] = None
        config.pop("experiment", None)
    assert pretrained["model"]["init_args"]["backbone"] == scratch["model"]["init_args"]["backbone"]
    assert pretrained["data"] == scratch["data"] and pretrained["trainer"] == scratch["trainer"]
    backbone = pretrained["model"]["init_args"]["backbone"]["init_args"]
    assert backbone["hidden"] == [1024, 1000, 500, 256, 128, 64]
    assert backbone["in_channels"] * backbone["image_size"] ** 2 == 27648
    grey = printed("q1-layerwise.yaml", "_base/grayscale.yaml")
    assert grey["model"]["init_args"]["backbone"]["init_args"]["in_channels"] == 1
    assert grey["data"]["init_args"]["channels"] == 1
