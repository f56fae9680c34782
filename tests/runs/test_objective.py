"""lab.runs.objective: a run's objective in words, from its config's task and loss list,
against the shipped experiment files and the defaults of lab.losses."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest
import yaml

import lab.losses
from lab.runs.objective import (
    TERMS,
    config_objective,
    experiment_objective,
    loss_words,
    objective_words,
    run_objective,
)
from tests.conftest import REPO

EXPERIMENTS = REPO / "experiments"


@pytest.mark.parametrize(
    ("experiment", "words"),
    [
        ("demo", "cross-entropy, label smoothing 0.1"),
        ("demo-triplet", "batch-hard triplet, margin 0.3"),
        (
            "demo-center",
            "cross-entropy + 0.1 x center loss, label smoothing 0.1, centers' rate 0.5",
        ),  # noqa: E501
        ("fmnist-triplet", "batch-hard triplet, margin 0.2, mined in groups of 2 images a class"),
        ("contrastive", "in-batch random triplets, margin 1"),
        ("q1-layerwise", "cross-entropy, after greedy layer-wise autoencoder pretraining"),
        ("q1-layerwise-scratch", "cross-entropy"),
        ("softmax-logistic", "binary cross-entropy"),
    ],
)
def test_the_words_of_the_shipped_experiments(experiment, words):
    assert experiment_objective(EXPERIMENTS / f"{experiment}.yaml") == words


def test_the_defaults_are_those_of_the_loss_classes():
    for name, (_, defaults, _) in TERMS.items():
        parameters = inspect.signature(getattr(lab.losses, name)).parameters
        assert {k: parameters[k].default for k in defaults} == defaults, name


def test_a_saved_config_reads_like_its_experiment(tmp_path):
    # A run's config.yaml spells every init arg out (LightningCLI's dump).
    center = {"weight": 0.1, "lr": 0.5, "num_classes": None, "dim": None, "name": None}
    config = {
        "model": {
            "class_path": "lab.tasks.Classifier",
            "init_args": {
                "losses": [
                    {"class_path": "lab.losses.CrossEntropy",
                     "init_args": {"weight": 1.0, "label_smoothing": None, "name": None}},
                    {"class_path": "lab.losses.CenterLoss", "init_args": center},
                ],
                "label_smoothing": 0.1,
            },
        }
    }  # fmt: skip
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    expected = experiment_objective(EXPERIMENTS / "demo-center.yaml")
    assert run_objective(tmp_path) == config_objective(config) == expected
    assert run_objective(tmp_path / "nothing") is None
    (tmp_path / "config.yaml").write_text("model: [\n")
    assert run_objective(tmp_path) is None


def test_weights_own_smoothing_and_losses_of_ones_own():
    assert loss_words(None) == "cross-entropy"
    terms = [
        {"class_path": "lab.losses.CrossEntropy", "init_args": {"label_smoothing": 0.05}},
        {"class_path": "lab.losses.BatchHardTripletLoss",
         "init_args": {"weight": 0.5, "soft_margin": True}},
        {"class_path": "mine.FocalLoss", "init_args": {"gamma": 2.0, "weight": 2.0}},
    ]  # fmt: skip
    assert loss_words(terms, 0.1) == (
        "cross-entropy + 0.5 x batch-hard triplet + 2 x FocalLoss, label smoothing 0.05, "
        "soft margin, gamma 2"
    )
    assert objective_words({"class_path": "lab.tasks.BinaryClassifier",
                            "init_args": {"label_smoothing": 0.2}}) == (
        "binary cross-entropy, label smoothing 0.2"
    )  # fmt: skip
    assert objective_words({}) is None and config_objective({"data": {}}) is None


def test_the_words_need_neither_torch_nor_lightning():
    code = (
        "import sys, lab.runs.objective, lab.runs.metrics; "
        "print(sorted(m for m in ('torch', 'lightning', 'scipy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
