"""lab study: a study file's runs and closing steps, as `make <study>` runs them."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from lab.cli import main
from lab.commands.study import plan
from lab.errors import LabError
from tests.conftest import QUIET, REPO
from tests.helpers import short_fit

STUDIES = sorted((REPO / "experiments" / "_studies").glob("*.yaml"))
FOLDER = "--data.init_args.folder=/usr/share/datasets/fashion-mnist"


def dry_run(study: Path | str, *extra: str) -> list[str]:
    """The commands ``lab study --dry_run`` prints for a file of the repository (as run
    from its root: the paths relative to it)."""
    steps = plan(REPO / study, list(extra))
    return [shlex.join(["lab", *args]).replace(f"{REPO}/", "") for _, args in steps]


@pytest.mark.parametrize("study", STUDIES, ids=lambda p: p.stem)
def test_every_shipped_study_is_a_make_target_of_existing_experiments(study):
    made = subprocess.run(
        ["make", "-n", study.stem], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert f"lab study experiments/_studies/{study.name}" in made
    lines = dry_run(f"experiments/_studies/{study.name}")
    fits = [shlex.split(line) for line in lines if line.startswith("lab fit ")]
    assert fits or study.stem == "fmnist-representation"  # only studies: fits of others
    for fit in fits:
        assert (REPO / fit[fit.index("--config") + 1]).is_file()
        assert fit[-2:] == ["--then_test", "last"]  # each run tested on its last.ckpt
    names = [fit[fit.index("--experiment") + 1] for fit in fits]
    assert len(set(names)) == len(names)  # each run its own folder
    description = yaml.safe_load(study.read_text())["description"]
    assert (
        description
        in subprocess.run(
            ["make", "help"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout
    )


def test_the_demo_study_runs_what_make_demo_always_ran():
    assert dry_run("experiments/_studies/demo.yaml") == [
        "lab fit --config experiments/demo.yaml --experiment demo --then_test last",
        "lab fit --config experiments/demo-triplet.yaml --experiment demo-triplet --then_test last",
        "lab fit --config experiments/demo-center.yaml --experiment demo-center --then_test last",
        "lab summary demo demo-triplet demo-center --min test/acc=0.98",
        "lab report demo demo-triplet demo-center --out lightning_logs/reports/demo",
        "lab compare demo demo-triplet",
        "lab compare demo demo-center",
        "lab compare demo-triplet demo-center",
    ]


def test_one_yaml_three_times_and_the_newest_encoder_by_name():
    transfer = dry_run("experiments/_studies/fmnist-transfer.yaml", FOLDER)
    weights = "--model.init_args.backbone.init_args.weights=last:fmnist-ce"
    assert transfer[:3] == [
        "lab fit --config experiments/fmnist-transfer.yaml --experiment fmnist-transfer-head "
        f"{weights} --then_test last",
        "lab fit --config experiments/fmnist-transfer.yaml --experiment fmnist-transfer-all "
        f"{weights} --model.init_args.trainable=all --then_test last",
        "lab fit --config experiments/fmnist-transfer.yaml --experiment fmnist-transfer-scratch "
        "--model.init_args.trainable=all --then_test last",
    ]  # the digits: no Fashion-MNIST folder
    (probe, summary) = dry_run("experiments/_studies/fmnist-contrastive-linear.yaml", FOLDER)
    assert f"{FOLDER} --model.init_args.backbone.init_args.weights=last:fmnist-contrastive" in probe
    assert summary == "lab summary fmnist-contrastive fmnist-contrastive-linear"


def test_fashion_mnist_studies_take_the_data_arguments_given():
    download = "--data.init_args.download=true"
    lines = dry_run("experiments/_studies/fmnist-representation.yaml", download)
    fits = [line for line in lines if line.startswith("lab fit ")]
    assert len(fits) == 6 and all(download in line for line in fits)  # the included studies too
    assert lines[-1].startswith("lab report fmnist-layerwise fmnist-layerwise-scratch ")
    assert dry_run("experiments/_studies/fmnist.yaml")[0] == (
        "lab fit --config experiments/fmnist-ce.yaml --experiment fmnist-ce --then_test last"
    )


def test_without_data_arguments_the_debian_folder_is_used_when_it_exists(
    tmp_path, monkeypatch, capsys
):
    from lab.data.fashion_mnist import FashionMNISTDataModule

    study = str(REPO / "experiments" / "_studies" / "fmnist-layerwise.yaml")
    monkeypatch.setattr(FashionMNISTDataModule, "debian_folder", str(tmp_path))
    main(["study", study, "--dry_run"])
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 3 and f"--data.init_args.folder={tmp_path} " in printed[0]
    monkeypatch.setattr(FashionMNISTDataModule, "debian_folder", str(tmp_path / "none"))
    main(["study", study, "--dry_run"])
    assert "--data.init_args.folder" not in capsys.readouterr().out


def write_study(folder: Path, text: str) -> Path:
    path = folder / "experiments" / "_studies" / "s.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("runs: [{config: demo.yaml}]\n", "expected description:"),
        ("description: x\n", "expected runs:"),
        ("description: x\nruns: [{config: demo.yaml}]\nsumary: {}\n", "unknown key sumary"),
        ("description: x\nruns: [{name: a}]\n", "runs[0] must be a map with config:"),
        ("description: x\nruns: [{config: demo.yaml, final: true}]\n", "must be a map with"),
        ("description: x\nruns: [{config: nope.yaml}]\n", "nope.yaml not found"),
        ("description: x\nruns: [{config: demo.yaml, args: --x=1}]\n", "must be a list"),
        ("description: x\nruns: [{sweep: nope}]\n", "sweep nope needs"),
        ("description: x\nstudies: [s]\n", "includes itself"),
        ("description: x\nruns: [{config: demo.yaml}]\nreport: {}\n", "report needs out:"),
        ("description: x\nruns: [{config: demo.yaml}]\ncompare: [[a]]\n", "a pair"),
    ],
)
def test_a_bad_study_file_is_one_line_naming_it(tmp_path, text, expected):
    path = write_study(tmp_path, text)
    (path.parent.parent / "demo.yaml").write_text("{}\n")
    with pytest.raises(LabError, match=r"s\.yaml") as error:
        plan(path, [])
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_a_missing_study_file_exits_2_with_one_line(capsys, tmp_path):
    with pytest.raises(SystemExit) as stop:
        main(["study", str(tmp_path / "nope.yaml")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "nope.yaml does not exist" in err
    assert len(err.strip().splitlines()) == 1


def test_a_study_runs_its_runs_then_its_steps_and_stops_at_a_failed_run(workdir, capsys):
    demo = REPO / "experiments" / "demo.yaml"
    # 8x8 images and no t-SNE: a run of seconds
    args = [*short_fit(1, 2, 1), "--trainer.callbacks=[]", "--data.init_args.image_size=8", *QUIET]
    study = write_study(
        workdir,
        yaml.safe_dump(
            {
                "description": "two short demo runs",
                "runs": [
                    {"config": str(demo), "name": "a", "args": args},
                    {"config": str(demo), "name": "b", "args": [*args, "--seed_everything=1"]},
                ],
                "summary": {},
                "compare": [["a", "b"]],
            }
        ),
    )
    main(["study", str(study)])
    out = capsys.readouterr().out
    for name in ("a", "b"):
        run = workdir / "lightning_logs" / name / "version_0"
        assert (run / "predictions.csv").is_file()  # fitted, then tested
        assert f"| lightning_logs/{name}/version_0 " in out  # the summary's row
    assert "exact McNemar p =" in out  # the compare ran

    broken = yaml.safe_load(study.read_text())
    broken["runs"][0]["args"] = [*args, "--trainer.max_epochs=many"]
    study.write_text(yaml.safe_dump(broken))
    with pytest.raises(SystemExit) as stop:
        main(["study", str(study)])
    captured = capsys.readouterr()
    assert stop.value.code == 2
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith(f"lab: error: study {study}: run a failed (exit 2): ") and "many" in last
    assert not (workdir / "lightning_logs" / "b" / "version_1").exists()  # nothing after it
    assert "McNemar" not in captured.out
