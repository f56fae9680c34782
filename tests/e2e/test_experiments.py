"""Experiments as deltas (``base:``, lab/configs.py): how a delta merges onto its bases,
the errors for bad bases, and the shipped experiments and recipes that use them."""

from pathlib import Path

import pytest
import yaml

from lab.cli import main
from lab.cli.configs import bases_of, expand_bases, experiment_name, strip_base
from lab.errors import LabError
from tests.conftest import ALL_EXPERIMENTS, REPO

BASES = REPO / "experiments" / "_base"
# Overlays given as an extra --config (README, Makefile), not recipes an experiment names.
PRESETS = {"cpu.yaml", "gpu.yaml", "ddp.yaml", "grayscale.yaml"}


def printed_config(capsys, *configs: Path, extra: tuple[str, ...] = ()) -> dict:
    """``lab fit --config ... --print_config``, parsed."""
    args = [a for config in configs for a in ("--config", str(config))]
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args, *extra, "--print_config"])
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


RECIPE = """\
trainer:
  max_epochs: 7
  callbacks:
    - class_path: lab.callbacks.TSNEPlot
      init_args: {max_points: 100}
model:
  class_path: lab.tasks.Classifier
  init_args:
    backbone:
      class_path: lab.models.ResNet
      init_args: {depth: 18, in_channels: 1, small_input: true}
    optimizer:
      class_path: torch.optim.SGD
      init_args: {lr: 0.05, momentum: 0.9}
    label_smoothing: 0.1
data:
  class_path: lab.data.DigitsDataModule
  init_args: {channels: 1, image_size: 8, batch_size: 32}
"""


def test_a_delta_changes_only_what_it_states(tmp_path, capsys, workdir):
    recipe = write(tmp_path / "_base" / "recipe.yaml", RECIPE)
    delta = write(
        tmp_path / "center.yaml",
        "# a comment first\nbase: _base/recipe.yaml\n"
        "model:\n  class_path: lab.tasks.Classifier\n"
        "  init_args:\n    losses:\n      - class_path: lab.losses.CrossEntropy\n"
        "      - class_path: lab.losses.CenterLoss\n        init_args: {weight: 0.5}\n"
        "    optimizer:\n      init_args: {lr: 0.01}\n"
        "trainer:\n  callbacks: []\n",
    )
    whole = printed_config(capsys, recipe)
    changed = printed_config(capsys, delta)
    assert "base" not in changed
    model, before = changed["model"], whole["model"]
    assert model["class_path"] == "lab.tasks.Classifier"
    losses = model["init_args"]["losses"]
    assert [term["class_path"] for term in losses] == [
        "lab.losses.CrossEntropy",
        "lab.losses.CenterLoss",
    ]
    assert losses[1]["init_args"]["weight"] == 0.5
    assert model["init_args"]["optimizer"]["init_args"]["lr"] == 0.01
    # What the delta does not state is the recipe's, down to the nested keys.
    assert model["init_args"]["optimizer"]["init_args"]["momentum"] == 0.9
    assert model["init_args"]["backbone"] == before["init_args"]["backbone"]
    assert model["init_args"]["label_smoothing"] == 0.1
    assert changed["data"] == whole["data"] and changed["trainer"]["max_epochs"] == 7
    assert changed["trainer"]["callbacks"] == []  # a list is replaced whole
    # The same as naming the recipe as a --config of its own before the delta.
    assert printed_config(capsys, recipe, tmp_path / "center.yaml") == changed


def test_bases_of_bases_and_lists_apply_in_order(tmp_path, capsys, workdir):
    write(tmp_path / "_base" / "recipe.yaml", RECIPE)
    write(tmp_path / "_base" / "long.yaml", "base: recipe.yaml\ntrainer:\n  max_epochs: 9\n")
    write(tmp_path / "_base" / "big.yaml", "data:\n  init_args:\n    batch_size: 64\n")
    delta = write(
        tmp_path / "sub" / "x.yaml",
        "base:\n  - ../_base/long.yaml\n  - ../_base/big.yaml\ndata:\n  init_args:\n"
        "    image_size: 16\n",
    )
    assert bases_of(delta) == [
        tmp_path / "sub" / "../_base/recipe.yaml",
        tmp_path / "sub" / "../_base/long.yaml",
        tmp_path / "sub" / "../_base/big.yaml",
    ]
    printed = printed_config(capsys, delta)
    assert printed["trainer"]["max_epochs"] == 9
    assert printed["data"]["init_args"]["batch_size"] == 64
    assert printed["data"]["init_args"]["image_size"] == 16
    assert printed["model"]["init_args"]["optimizer"]["init_args"]["lr"] == 0.05


def test_a_list_entry_of_the_same_class_keeps_what_it_does_not_set(tmp_path, capsys, workdir):
    # docs/experiments.md: a list is replaced whole, but an entry naming the same class as
    # the entry at its place keeps that entry's init_args; null clears one.
    recipe = write(tmp_path / "_base" / "recipe.yaml", RECIPE)
    triplet = "      - class_path: lab.losses.BatchHardTripletLoss\n        init_args: {%s}\n"
    losses = "model:\n  init_args:\n    losses:\n"
    base = write(tmp_path / "t.yaml", losses + triplet % "margin: 0.2, group_samples: 2")
    kept = write(tmp_path / "kept.yaml", losses + triplet % "margin: 0.3")
    cleared = write(tmp_path / "cleared.yaml", losses + triplet % "group_samples: null")

    def term(*configs: Path) -> dict:
        return printed_config(capsys, recipe, *configs)["model"]["init_args"]["losses"][0]

    assert term(base, kept)["init_args"]["group_samples"] == 2
    assert term(base, kept)["init_args"]["margin"] == 0.3
    assert term(base, cleared)["init_args"]["group_samples"] is None
    assert term(base, cleared)["init_args"]["margin"] == 0.2


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"x.yaml": "base: nope.yaml\n"}, "base nope.yaml does not exist"),
        ({"x.yaml": "base: [1, 2]\n"}, "must be a config file or a list of them"),
        ({"x.yaml": "base: y.yaml\n", "y.yaml": "base: x.yaml\n"}, "form a cycle"),
    ],
)
def test_a_bad_base_is_one_line_and_exit_2(tmp_path, capsys, workdir, files, message):
    for name, text in files.items():
        write(tmp_path / name, text)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(tmp_path / "x.yaml"), "--print_config"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and str(tmp_path) in err[0]


def test_expand_bases_inserts_before_each_config_form(tmp_path):
    base = write(tmp_path / "b.yaml", "trainer: {max_epochs: 1}\n")
    x = write(tmp_path / "x.yaml", "base: b.yaml\n")
    plain = write(tmp_path / "plain.yaml", "trainer: {max_epochs: 2}\n")
    args = ["fit", "--config", str(x), f"--config={x}", "-c", str(plain), "--seed", "3"]
    assert expand_bases(args) == [
        "fit",
        *("--config", str(base), "--config", str(x)),
        *("--config", str(base), f"--config={x}"),
        *("-c", str(plain), "--seed", "3"),
    ]


def test_a_run_is_named_after_the_file_the_user_named_not_its_base():
    # fmnist-contrastive-nn builds on contrastive-nn.yaml (no leading _): its runs were
    # filed under lightning_logs/contrastive-nn/ when --experiment was not given.
    config = REPO / "experiments" / "fmnist-contrastive-nn.yaml"
    args = expand_bases(
        ["--config", str(config), "--config", str(REPO / "experiments/_base/cpu.yaml")]
    )
    configs = args[1::2]
    assert Path(configs[0]).name == "cifar10-vgg16.yaml"  # the bases come first
    assert experiment_name(configs, "default") == "fmnist-contrastive-nn"
    assert experiment_name(configs[:-2], "default") == "contrastive-nn"
    assert experiment_name([REPO / "experiments/_base/cpu.yaml"], "default") == "default"


@pytest.mark.parametrize(
    "entry", ["base: a.yaml\n", "base: [a.yaml, b.yaml]\n", "base:\n- a.yaml\n# why\n- b.yaml\n"]
)
def test_strip_base_removes_only_the_entry(entry):
    rest = "# header\nmodel:\n  class_path: X  # note\n  init_args:\n    lr: 1.0e-3\n"
    head, tail = rest.split("model:")
    assert strip_base(head + entry + "model:" + tail) == rest
    assert strip_base(rest) == rest


def test_strip_base_refuses_an_entry_it_cannot_cut_cleanly():
    with pytest.raises(LabError, match="one top-level entry"):
        strip_base("base: &b a.yaml\nother: *b\n")


def test_every_recipe_is_used_and_every_experiment_names_its_task():
    used = {base.resolve() for config in ALL_EXPERIMENTS for base in bases_of(config)}
    recipes = {p.resolve() for p in BASES.glob("*.yaml") if p.name not in PRESETS}
    assert recipes and recipes <= used, sorted(str(p) for p in recipes - used)
    for config in ALL_EXPERIMENTS:
        loaded = yaml.safe_load(config.read_text())
        if "base" in loaded:  # a delta says which task it trains (conftest finds it by it)
            assert loaded["model"]["class_path"].startswith("lab.tasks."), config.name


def test_the_experiments_are_short_deltas():
    deltas = [c for c in ALL_EXPERIMENTS if "base" in yaml.safe_load(c.read_text())]
    assert len(deltas) >= 25
    for config in deltas:  # settings, not comments: a delta states a few keys
        settings = [
            line
            for line in config.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
        assert len(settings) <= 40, (config.name, len(settings))
