"""Transfer learning: trainable-part policies, frozen BatchNorm, weights from files and
the torchvision cache, MLP heads, ``normalization: auto`` and the before-fit evaluation."""

import json
import re
import urllib.request

import lightning as L
import pandas as pd
import pytest
import torch
import torchvision
import yaml
from torch import nn

from lab.callbacks import BeforeFitEvaluation
from lab.cli import resolve_normalization
from lab.data import DigitsDataModule
from lab.errors import LabError
from lab.models import ResNet
from lab.models.freeze import POLICIES, apply_trainable_policy, count_parameters
from lab.tasks import Classifier

# Independent of lab.models.freeze: which parameter names each policy trains, by name
# alone (torchvision's naming: convN / downsample.0 are convolutions, bnN / downsample.1
# BatchNorms), the head (fc.*) always.
NAME_RULES = {
    "all": r".*",
    "head": r"$^",
    "layer1": r"layer1\..*",
    "layer2": r"layer2\..*",
    "layer3": r"layer3\..*",
    "layer4": r"layer4\..*",
    "conv": r"(.*\.)?(conv\d|downsample\.0)\.weight",
    "bn": r"(.*\.)?(bn\d|downsample\.1)\.(weight|bias)",
    "downsample": r".*\.downsample\..*",
    "classifier": r"$^",  # as head here: this ResNet has no embedding layer
}


def _expected(model: nn.Module, rule: str) -> set[str]:
    return {
        name
        for name, _ in model.named_parameters()
        if name.startswith("fc.") or re.fullmatch(rule, name)
    }


def _trainable(model: nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("depth", [18, 50])
@pytest.mark.parametrize("policy", POLICIES)
def test_each_policy_trains_exactly_its_parameters(depth, policy):
    model = ResNet(depth=depth, num_classes=10)
    apply_trainable_policy(model, policy)
    expected = _expected(model, NAME_RULES[policy])
    assert _trainable(model) == expected
    named = dict(model.named_parameters())
    counts = count_parameters(model)
    assert counts["trainable"] == sum(named[n].numel() for n in expected)
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    if policy == "head":  # a linear probe: the new classifier alone
        assert counts["trainable"] == model.num_features * 10 + 10
    if policy == "downsample":  # one projection shortcut per stage after the first
        stages = {name.split(".")[0] for name in expected if name != "fc.weight"} - {"fc"}
        assert stages == (
            {"layer2", "layer3", "layer4"} if depth == 18 else {f"layer{i}" for i in range(1, 5)}
        )


@pytest.mark.parametrize(
    ("k", "frozen"),
    [
        (5, {"conv1", "bn1", "layer1"}),  # the CIFAR study's `count < 6` loop
        (6, {"conv1", "bn1", "layer1", "layer2"}),
        (9, {"conv1", "bn1", "layer1", "layer2", "layer3", "layer4"}),  # `count < 10`
    ],
)
def test_first_k_children_frozen(k, frozen):
    model = ResNet(depth=18, num_classes=10)
    apply_trainable_policy(model, "all", frozen_children=k)
    expected = {n for n, _ in model.named_parameters() if n.split(".")[0] not in frozen}
    assert _trainable(model) == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"trainable": "layer5"}, "expected one of all, head, layer1"),
        ({"trainable": "all", "frozen_children": 10}, "expected 0 to 9"),
        ({"trainable": "head", "frozen_children": 3}, "goes with model.trainable=all"),
    ],
)
def test_bad_policies_are_clear_errors(kwargs, message):
    with pytest.raises(LabError, match=message):
        apply_trainable_policy(ResNet(depth=18, num_classes=3), **kwargs)


def _one_training_step(task: Classifier, seed: int = 0) -> None:
    torch.manual_seed(seed)
    task.train()
    optimizer = torch.optim.SGD([p for p in task.parameters() if p.requires_grad], lr=0.1)
    x, y = torch.randn(8, 3, 16, 16) * 3 + 1, torch.randint(0, 4, (8,))
    loss = nn.functional.cross_entropy(task(x), y)
    loss.backward()
    optimizer.step()


def test_frozen_batchnorm_keeps_its_statistics_and_weights():
    task = Classifier(ResNet(depth=18, small_input=True), num_classes=4, trainable="layer4")
    before = {k: v.clone() for k, v in task.backbone.state_dict().items()}
    _one_training_step(task)
    after = task.backbone.state_dict()
    assert not task.backbone.bn1.training and task.backbone.layer4[0].bn1.training
    for key, value in before.items():
        changed = not torch.equal(value, after[key])
        if key.startswith(("layer4.", "fc.")) and not key.endswith("num_batches_tracked"):
            assert changed or "running_var" in key, key  # trained or updated
        elif not key.startswith(("layer4.", "fc.")):
            assert not changed, f"{key} changed although frozen"


def test_bn_policy_updates_the_statistics_it_trains():
    task = Classifier(ResNet(depth=18, small_input=True), num_classes=4, trainable="bn")
    before = task.backbone.bn1.running_mean.clone()
    conv = task.backbone.conv1.weight.clone()
    _one_training_step(task)
    assert not torch.equal(before, task.backbone.bn1.running_mean)
    assert torch.equal(conv, task.backbone.conv1.weight)


def test_the_trainer_keeps_frozen_batchnorm_in_eval_mode_and_logs_the_counts(tmp_path):
    task = Classifier(
        ResNet(depth=18, small_input=True, in_channels=1), num_classes=10, trainable="head"
    )
    running = task.backbone.layer2[0].bn1.running_mean.clone()
    trainer = L.Trainer(  # validation after every step: the modes survive it
        max_steps=3,
        val_check_interval=1,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=L.pytorch.loggers.CSVLogger(tmp_path),
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(task, datamodule=DigitsDataModule(batch_size=16))
    torch.testing.assert_close(running, task.backbone.layer2[0].bn1.running_mean)
    metrics = pd.read_csv(next(tmp_path.rglob("metrics.csv")))
    assert metrics["params/trainable"].dropna().iloc[0] == 512 * 10 + 10
    assert metrics["params/total"].dropna().iloc[0] == count_parameters(task)["total"]


# -- weights -------------------------------------------------------------------------------


def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def test_weights_in_the_torchvision_cache_load_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    _no_network(monkeypatch)
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    cached = tmp_path / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    cached.parent.mkdir(parents=True)
    torch.manual_seed(7)
    state = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(state, cached)
    model = ResNet(depth=18, weights="IMAGENET1K_V1", num_classes=1000)
    torch.testing.assert_close(model.layer3[1].conv2.weight, state["layer3.1.conv2.weight"])
    # a 1000-way classifier keeps ImageNet's (the SVM study's 1000-d output)
    torch.testing.assert_close(model.fc.weight, state["fc.weight"])
    assert ResNet(depth=18, weights="IMAGENET1K_V1", num_classes=10).fc.out_features == 10


def test_missing_weights_without_network_name_the_file_and_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    _no_network(monkeypatch)
    expected = tmp_path / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth"
    with pytest.raises(LabError) as error:
        ResNet(depth=50, weights="IMAGENET1K_V2")
    message = str(error.value)
    assert "https://download.pytorch.org/models/resnet50-11ad3fa6.pth" in message
    assert f"to {expected}" in message and "\n" not in message


def test_weights_from_a_lab_checkpoint_and_a_state_dict(tmp_path):
    source = Classifier(ResNet(depth=18, small_input=True, in_channels=1), num_classes=5)
    ckpt = tmp_path / "run.ckpt"
    torch.save({"state_dict": source.state_dict(), "epoch": 3}, ckpt)
    loaded = ResNet(depth=18, small_input=True, in_channels=1, num_classes=5, weights=str(ckpt))
    for key, value in source.backbone.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    # another number of classes: the trunk loads, the classifier stays new
    other = ResNet(depth=18, small_input=True, in_channels=1, num_classes=3, weights=str(ckpt))
    torch.testing.assert_close(other.layer2[0].conv1.weight, source.backbone.layer2[0].conv1.weight)
    plain = tmp_path / "backbone.pth"
    torch.save(source.backbone.state_dict(), plain)
    again = ResNet(depth=18, small_input=True, in_channels=1, weights=str(plain))
    torch.testing.assert_close(again.conv1.weight, source.backbone.conv1.weight)


def test_weights_files_that_do_not_fit_are_clear_errors(tmp_path):
    with pytest.raises(LabError, match="not found: expected a lab checkpoint"):
        ResNet(depth=18, weights=str(tmp_path / "nope.ckpt"))
    torch.save(ResNet(depth=18).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(LabError, match="does not fit this backbone.*same depth"):
        ResNet(depth=50, weights=str(tmp_path / "r18.pth"))
    (tmp_path / "cut.pth").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(LabError, match="cannot read weights from"):
        ResNet(depth=18, weights=str(tmp_path / "cut.pth"))


def test_mlp_head_with_dropout():
    model = ResNet(depth=18, num_classes=7, head_hidden=[64, 32], dropout=0.3)
    layers = list(model.fc)
    linear = [m for m in layers if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(512, 64), (64, 32), (32, 7)]
    assert [m.p for m in layers if isinstance(m, nn.Dropout)] == [0.3, 0.3]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    apply_trainable_policy(model, "head")
    assert _trainable(model) == {n for n, _ in model.named_parameters() if n.startswith("fc.")}
    with pytest.raises(LabError, match="dropout must be in"):
        ResNet(depth=18, dropout=1.0)


@pytest.mark.parametrize(
    ("weights", "normalization", "resolved"),
    [
        ("IMAGENET1K_V1", "auto", "imagenet"),
        (None, "auto", "dataset"),
        ("None", "auto", "dataset"),
        ("runs/x/last.ckpt", "auto", "dataset"),
        ("IMAGENET1K_V1", "dataset", "dataset"),  # an explicit choice is kept
    ],
)
def test_auto_normalization_follows_the_weights(weights, normalization, resolved):
    config = {
        "model": {"init_args": {"backbone": {"init_args": {"weights": weights}}}},
        "data": {"init_args": {"normalization": normalization}},
    }
    resolve_normalization(config)
    assert config["data"]["init_args"]["normalization"] == resolved


# -- before and after ------------------------------------------------------------------------


@pytest.mark.parametrize("probe", ["linear", "as_is"])
def test_before_fit_evaluation_writes_the_test_files(tmp_path, probe):
    L.seed_everything(0)
    task = Classifier(ResNet(depth=18, small_input=True, in_channels=1), num_classes=10)
    trainer = L.Trainer(
        max_steps=1,
        limit_val_batches=0,
        default_root_dir=tmp_path,
        logger=L.pytorch.loggers.CSVLogger(tmp_path),
        callbacks=[BeforeFitEvaluation(probe=probe, max_train_samples=400)],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(task, datamodule=DigitsDataModule(batch_size=64))
    before = tmp_path / "lightning_logs" / "version_0" / "before"
    for name in ("confusion_matrix", "per_class_accuracy", "roc"):
        assert (before / f"{name}.png").stat().st_size > 0
    table = pd.read_csv(before / "per_class_accuracy.csv")
    metrics = pd.read_csv(tmp_path / "lightning_logs" / "version_0" / "metrics.csv")
    accuracy = metrics["before/acc"].dropna().iloc[0]
    support = table["support"].sum()
    assert accuracy == pytest.approx((table["accuracy"] * table["support"]).sum() / support)
    if probe == "linear":  # random conv features of digits still separate them well
        assert accuracy > 0.5


# -- cifar-activations: maps of chosen test images ----------------------------------------


def test_activation_maps_of_chosen_test_images(tmp_path, monkeypatch):
    from lab.callbacks import ActivationMaps

    callback = ActivationMaps(layers=["backbone.layer1"], image_indices=[3, 7])
    drawn = []
    draw = callback._draw
    monkeypatch.setattr(
        callback, "_draw", lambda t, m, images: drawn.append(images) or draw(t, m, images)
    )
    datamodule = DigitsDataModule(batch_size=64)
    trainer = L.Trainer(
        default_root_dir=tmp_path,
        logger=L.pytorch.loggers.CSVLogger(tmp_path),
        callbacks=[callback],
        limit_test_batches=1,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    task = Classifier(ResNet(depth=18, small_input=True, in_channels=1), num_classes=10)
    trainer.test(task, datamodule=datamodule)
    expected = torch.stack([datamodule.test_set[i][0] for i in (3, 7)])
    torch.testing.assert_close(drawn[0], expected)
    assert (tmp_path / "lightning_logs" / "version_0" / "activations_backbone.layer1.png").is_file()

    too_far = ActivationMaps(layers=["backbone.layer1"], image_indices=[10**6])
    trainer = L.Trainer(default_root_dir=tmp_path, callbacks=[too_far], logger=False)
    with pytest.raises(LabError, match="the test split has 360 images"):
        trainer.test(task, datamodule=DigitsDataModule())


# -- the experiments end to end ----------------------------------------------------------------


def test_cifar_frozen_end_to_end_before_after_and_counts(lab, workdir, monkeypatch, capsys):
    from torchvision.models import WeightsEnum

    from lab.cli import main
    from lab.data.fakes.cifar10 import write_cifar10
    from tests.conftest import REPO

    torch.manual_seed(0)
    state = torchvision.models.resnet18(weights=None).state_dict()
    monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda self, **kw: state)
    write_cifar10(workdir / "data", per_class_train=10)
    args = [
        "--config",
        REPO / "experiments" / "cifar-frozen.yaml",
        "--data.init_args.verify=false",
        "--data.init_args.num_workers=0",
        "--data.init_args.image_size=32",
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2",
        "--trainer.limit_val_batches=1",
    ]
    lab("fit", *args)
    lab("test", *args, "--ckpt_path", "last")
    run = workdir / "lightning_logs" / "cifar-frozen" / "version_0"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["init_args"]["normalization"] == "imagenet"  # auto, with weights
    for name in ("confusion_matrix.csv", "per_class_accuracy.csv", "auc.csv"):
        assert (run / "before" / name).is_file() and (run / name).is_file()
    info = json.loads((run / "run.json").read_text())
    model = ResNet(depth=18, num_classes=10)
    apply_trainable_policy(model, "all", frozen_children=5)
    assert info["parameters"] == count_parameters(model)
    capsys.readouterr()
    main(["summary", "cifar-frozen"])
    table = capsys.readouterr().out
    assert "before/acc" in table and "trainable params" in table
    assert f"{count_parameters(model)['trainable']:,}" in table  # the registry's format
    main(["report", "cifar-frozen", "--out", str(workdir / "report")])
    report = (workdir / "report" / "report.md").read_text()
    assert "### before/confusion_matrix.png" in report and "### confusion_matrix.png" in report
    assert list((workdir / "report" / "figures").rglob("before_confusion_matrix.png"))


def test_frozen_children_refuses_a_backbone_without_those_children():
    from lab.models import VGG

    with pytest.raises(LabError, match="frozen_children=5 names torchvision ResNet children"):
        apply_trainable_policy(VGG(depth=11, num_classes=3), "all", frozen_children=5)
