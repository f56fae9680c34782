"""Trainer presets (experiments/_base/{cpu,gpu,ddp}.yaml) and the speed options they set:
every preset parses with every experiment, and the options do what they say on the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from lab.cli import main
from lab.cli.configs import bases_of
from lab.models import ResNet
from lab.tasks import Classifier
from tests.conftest import EXPERIMENTS, REPO

PRESETS = ["cpu", "gpu", "ddp"]


def class_paths(config: Path) -> tuple[str, str]:
    """The model and data class an experiment ends up with, through its ``base:`` files."""
    model = data = ""
    for path in [*bases_of(config), config]:
        text = yaml.safe_load(path.read_text()) or {}
        model = (text.get("model") or {}).get("class_path", model)
        data = (text.get("data") or {}).get("class_path", data)
    return model, data


# A preset sets trainer keys and init arguments of the model and data classes, so it meets
# each (model class, data class) pair once, in the first experiment that has it; that
# every experiment parses and runs is test_fast_dev_run_of_every_experiment's check.
PAIRS = {}
for _config in EXPERIMENTS:
    PAIRS.setdefault(class_paths(_config), _config)


@pytest.mark.parametrize("config", PAIRS.values(), ids=lambda path: path.stem)
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_parses_with_every_model_and_data_class(preset, config, capsys, workdir):
    overlay = REPO / "experiments" / "_base" / f"{preset}.yaml"
    with pytest.raises(SystemExit) as done:
        main(["fit", "--config", str(config), "--config", str(overlay), "--print_config"])
    assert done.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    wanted = yaml.safe_load(overlay.read_text())
    for key, value in wanted["trainer"].items():
        assert printed["trainer"][key] == value, key  # the preset wins over the experiment
    for part in ("model", "data"):
        for key, value in wanted.get(part, {}).get("init_args", {}).items():
            assert printed[part]["init_args"][key] == value, (part, key)


def test_the_cpu_preset_runs_an_experiment(lab, workdir, capsys):
    preset = REPO / "experiments" / "_base" / "cpu.yaml"
    lab(
        "fit",
        "--config",
        REPO / "experiments" / "demo.yaml",
        "--config",
        preset,
        "--trainer.fast_dev_run=true",
        "--then_test=last",
    )
    assert "test/acc" in capsys.readouterr().out  # it trained, then tested


def test_channels_last_converts_the_weights_and_the_batches():
    task = Classifier(ResNet(depth=18, small_input=True), num_classes=10, channels_last=True)
    task.configure_model()
    assert task.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    x = task.prepare(torch.randn(4, 3, 16, 16))
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert torch.isfinite(task(x)).all()  # the channels-last model takes it
    plain = Classifier(ResNet(depth=18, small_input=True), num_classes=10)
    plain.configure_model()
    assert not plain.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)


def test_compile_compiles_the_features_once_and_keeps_the_keys(monkeypatch):
    calls = []

    def fake_compile(function, *args, **kwargs):
        calls.append(function)
        return function

    monkeypatch.setattr(torch, "compile", fake_compile)
    task = Classifier(ResNet(depth=18, small_input=True), num_classes=10, compile=True)
    keys = set(task.state_dict())
    task.configure_model()
    task.configure_model()
    # Compiled once: a wrapper module whose forward is the backbone's forward_features
    # (lab.tasks.compiled), kept out of the state dict.
    assert len(calls) == 1 and calls[0].__self__.backbone is task.backbone
    assert calls[0].__self__.forward(torch.zeros(2, 3, 8, 8)).shape == (2, 512)
    assert set(task.state_dict()) == keys


def test_one_cycle_without_a_length_gets_the_runs_number_of_steps(lab, workdir):
    scheduler = {"class_path": "torch.optim.lr_scheduler.OneCycleLR", "init_args": {"max_lr": 0.1}}
    lab(
        "fit",
        "--config",
        REPO / "experiments" / "demo.yaml",
        "--model.init_args.scheduler=" + json.dumps(scheduler),
        "--model.init_args.scheduler_interval=step",
        "--trainer.max_epochs=2",
        "--trainer.limit_train_batches=3",
        "--trainer.limit_val_batches=1",
    )
    last = workdir / "lightning_logs" / "demo" / "version_0" / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=False)["lr_schedulers"][0]
    assert state["total_steps"] == 6 and state["last_epoch"] == 6  # 2 epochs x 3 steps
