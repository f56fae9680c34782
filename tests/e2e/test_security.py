"""No file ``lab`` reads can run code: weights, checkpoints and CIFAR-10 pickles.

Each malicious file below carries a payload that, unpickled the usual way, creates a
marker file (the first test shows that it does). Through every entry point of ``lab`` the
command must stop with one ``lab: error:`` line, exit 2, and leave no marker; genuine
files must still load.
"""

from __future__ import annotations

import argparse
import datetime
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision

from lab.cli import main
from lab.data.cifar10 import CIFAR10DataModule, _unpickle
from lab.data.fakes.cifar10 import write_cifar10
from lab.errors import LabError
from lab.models import VGG, ResNet
from lab.models.weights import UnsafeFileError, load_torch_file
from lab.runs import best_checkpoint, check_checkpoint
from tests.conftest import QUIET, REPO

DEMO = REPO / "experiments" / "demo.yaml"
CONTRASTIVE = REPO / "experiments" / "contrastive.yaml"
WEIGHTS = "--model.init_args.backbone.init_args.weights"


class Payload:
    """Unpickled, runs ``exec`` and so creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


@pytest.fixture
def marker(workdir: Path) -> Path:
    return workdir / "payload-ran"


def run_lab(capsys, *args: str) -> tuple[int, list[str]]:
    """``lab`` with ``args`` that must fail: its exit code and the lines it printed to
    stderr. An exception other than SystemExit (a traceback) fails the test."""
    extra = QUIET if args[0] in ("fit", "validate", "test") else []
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        main([*map(os.fspath, args), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    return stopped.value.code, [line for line in err if line.startswith("lab:")]


def assert_refused(code: int, lines: list[str], path: Path, marker: Path) -> None:
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"lab: error: refused to load {path}: ")
    assert (
        re.search(r": it calls or builds [\w.]*exec, ", lines[0]) and "trusted machine" in lines[0]
    )
    assert not marker.exists()


def malicious_state_dict(path: Path, marker: Path, model: torch.nn.Module) -> Path:
    """A real state dict of ``model`` with the payload beside it."""
    torch.save({"state_dict": model.state_dict(), "note": Payload(marker)}, path)
    return path


def test_the_payload_runs_when_unpickled_the_usual_way(workdir, marker):
    path = malicious_state_dict(workdir / "bad.pt", marker, torch.nn.Linear(2, 2))
    torch.load(path, weights_only=False)
    assert marker.exists()  # so the marker's absence below means the payload did not run


# -- backbone.weights ----------------------------------------------------------------------


def test_resnet_weights_file_with_a_payload_is_refused(workdir, marker, capsys):
    source = ResNet(depth=18, in_channels=1, small_input=True)
    bad = malicious_state_dict(workdir / "classmate.pt", marker, source)
    code, lines = run_lab(capsys, "fit", "--config", DEMO, WEIGHTS, bad, "--trainer.max_steps=1")
    assert_refused(code, lines, bad, marker)


def test_vgg_weights_file_with_a_payload_is_refused(workdir, marker, capsys):
    bad = malicious_state_dict(workdir / "encoder.ckpt", marker, torch.nn.Linear(2, 2))
    code, lines = run_lab(
        capsys, "fit", "--config", CONTRASTIVE, WEIGHTS, bad, "--trainer.max_steps=1"
    )
    assert_refused(code, lines, bad, marker)
    with pytest.raises(UnsafeFileError):
        VGG(depth=11, weights=str(bad))
    assert not marker.exists()


def test_a_payload_in_the_torchvision_cache_is_refused(workdir, marker, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(workdir))
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    cached = workdir / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    cached.parent.mkdir(parents=True)
    malicious_state_dict(cached, marker, torch.nn.Linear(2, 2))
    with pytest.raises(UnsafeFileError) as refused:
        ResNet(depth=18, weights="IMAGENET1K_V1")
    message = str(refused.value)
    assert message.startswith(f"refused to load {cached}: ") and "\n" not in message
    assert f"delete it and download {url}" in message
    assert not marker.exists()


# -- checkpoints: --ckpt_path and the check before a run ----------------------------------


@pytest.mark.parametrize("stage", ["fit", "test"])
def test_ckpt_path_to_a_file_with_a_payload_is_refused(workdir, marker, capsys, stage):
    bad = malicious_state_dict(workdir / "bad.ckpt", marker, torch.nn.Linear(2, 2))
    code, lines = run_lab(capsys, stage, "--config", DEMO, "--ckpt_path", bad)
    assert_refused(code, lines, bad, marker)
    assert "--model.init_args.backbone.init_args.weights weights.pt" in lines[0]


@pytest.mark.parametrize("which", ["last", "best", "auto"])
def test_a_run_folder_checkpoint_with_a_payload_is_refused(workdir, marker, capsys, which):
    # ``last`` and ``auto`` go through the check before the run, ``best`` first reads
    # last.ckpt for the path of the best one.
    last = workdir / "lightning_logs" / "demo" / "version_0" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    malicious_state_dict(last, marker, torch.nn.Linear(2, 2))
    code, lines = run_lab(
        capsys, "test" if which != "auto" else "fit", "--config", DEMO, "--ckpt_path", which
    )
    assert_refused(code, lines, last.relative_to(workdir), marker)  # as the run folder is found


def test_the_refusal_of_a_checkpoint_reaches_the_console_as_one_line(workdir, marker):
    bad = malicious_state_dict(workdir / "bad.ckpt", marker, torch.nn.Linear(2, 2))
    done = subprocess.run(
        [sys.executable, "-m", "lab.cli", "test", "--config", str(DEMO), "--ckpt_path", str(bad)],
        cwd=workdir,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"lab: error: refused to load {bad}")
    assert not marker.exists()


def test_a_plain_state_dict_as_ckpt_path_is_a_clear_error(workdir, capsys):
    plain = workdir / "weights.pt"
    torch.save(ResNet(depth=18).state_dict(), plain)
    code, lines = run_lab(capsys, "test", "--config", DEMO, "--ckpt_path", plain)
    assert code == 2 and len(lines) == 1
    assert "is not a Lightning checkpoint" in lines[0] and WEIGHTS in lines[0]


def test_a_genuine_lab_checkpoint_still_loads_everywhere(lab, workdir):
    lab("fit", "--config", DEMO, "--trainer.max_epochs=1", "--trainer.limit_train_batches=2")
    checkpoints = workdir / "lightning_logs" / "demo" / "version_0" / "checkpoints"
    last = checkpoints / "last.ckpt"
    check_checkpoint(last)  # no error
    assert best_checkpoint(last).name.startswith("best-epoch")
    source = torch.load(last, weights_only=False, map_location="cpu")["state_dict"]
    model = ResNet(depth=18, in_channels=1, small_input=True, weights=str(last))
    for key, value in model.state_dict().items():
        if key.split(".")[0] != "fc":
            torch.testing.assert_close(value, source[f"backbone.{key}"])


# -- lab report / lab summary --------------------------------------------------------------


def test_report_and_summary_never_load_a_checkpoint_in_a_run_folder(workdir, marker, capsys):
    run = workdir / "lightning_logs" / "demo" / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("last.ckpt", "best-epoch000.ckpt"):
        malicious_state_dict(run / "checkpoints" / name, marker, torch.nn.Linear(2, 2))
    pd.DataFrame(
        {"epoch": [0, 0], "step": [1, 1], "val/acc": [0.5, None], "test/acc": [None, 0.4]}
    ).to_csv(run / "metrics.csv", index=False)
    main(["summary", "demo"])
    assert "0.4" in capsys.readouterr().out
    main(["report", "--out", str(workdir / "report")])
    assert (workdir / "report" / "report.md").is_file()
    assert not marker.exists()


# -- foreign files: the few extra plain-data types, and the way out for the rest -------------


def test_a_timm_style_checkpoint_loads_with_its_namespace_and_numpy_metric(workdir):
    source = ResNet(depth=18)
    path = workdir / "timm.pth.tar"
    args = argparse.Namespace(model="resnet18", lr=0.1)
    torch.save({"state_dict": source.state_dict(), "args": args, "metric": np.float64(71.2)}, path)
    loaded = load_torch_file(path)
    assert loaded["args"] == args and loaded["metric"] == np.float64(71.2)
    model = ResNet(depth=18, weights=str(path))
    torch.testing.assert_close(model.layer4[1].conv2.weight, source.layer4[1].conv2.weight)


def test_a_harmless_foreign_type_is_refused_and_the_hint_converts_it(workdir):
    source = ResNet(depth=18)
    path = workdir / "foreign.pth"
    torch.save({"state_dict": source.state_dict(), "saved": datetime.datetime(2024, 1, 2)}, path)
    with pytest.raises(UnsafeFileError) as refused:
        ResNet(depth=18, weights=str(path))
    message = str(refused.value)
    assert "datetime" in message and "\n" not in message
    # On a machine where the file is trusted, the command the message gives makes it loadable.
    command = re.search(r'python -c "([^"]+)"', message).group(1)
    subprocess.run([sys.executable, "-c", command], cwd=workdir, check=True, timeout=120)
    model = ResNet(depth=18, weights=str(workdir / "weights.pt"))
    torch.testing.assert_close(model.conv1.weight, source.conv1.weight)


@pytest.mark.parametrize("damage", ["truncated", "not a pickle"])
def test_a_damaged_weights_file_is_a_read_error_not_a_refusal(workdir, damage):
    path = workdir / "cut.pt"
    torch.save(ResNet(depth=18).state_dict(), path)
    path.write_bytes(path.read_bytes()[:4000] if damage == "truncated" else b"not a checkpoint")
    with pytest.raises(LabError, match="cannot read weights from") as error:
        ResNet(depth=18, weights=str(path))
    message = str(error.value)
    assert not isinstance(error.value, UnsafeFileError) and "\n" not in message
    assert "weights_only=False" not in message  # torch's advice to load it unsafely is dropped


# -- CIFAR-10's python pickles -------------------------------------------------------------


def test_a_cifar10_batch_with_a_payload_is_refused_with_verify_false(workdir, marker, capsys):
    folder = write_cifar10(workdir / "data", per_class_train=2, per_class_test=1)
    batch = folder / "data_batch_3"
    with open(batch, "rb") as handle:
        content = pickle.load(handle, encoding="bytes")  # our own fixture: trusted
    content[b"batch_label"] = Payload(marker)
    batch.write_bytes(pickle.dumps(content, protocol=2))
    with pytest.raises(LabError, match=r"refused to read .*data_batch_3: it names \w+\.exec"):
        CIFAR10DataModule(root=str(workdir / "data"), verify=False).setup("fit")
    code, lines = run_lab(
        capsys,
        "fit",
        "--config",
        CONTRASTIVE,
        "--data.init_args.root",
        workdir / "data",
        "--data.init_args.verify=false",
        "--data.init_args.num_workers=0",
        "--trainer.max_steps=1",
    )
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith(f"lab: error: refused to read {batch}: it names ")
    assert not marker.exists()


def test_the_restricted_reader_gives_what_pickle_gives(workdir):
    folder = write_cifar10(workdir, per_class_train=3, per_class_test=1)
    for path in [*folder.glob("data_batch_*"), folder / "test_batch", folder / "batches.meta"]:
        with open(path, "rb") as handle:
            reference = pickle.load(handle, encoding="bytes")
        ours = _unpickle(path, ())
        assert ours.keys() == reference.keys()
        for key, value in reference.items():
            if isinstance(value, np.ndarray):
                assert ours[key].dtype == value.dtype
                np.testing.assert_array_equal(ours[key], value)
            else:
                assert ours[key] == value


def test_a_batch_pickled_by_python3_also_loads(workdir):
    # Python 3's protocol-2 pickler writes bytes through _codecs.encode (the real files,
    # from Python 2, do not): a re-saved copy still reads.
    folder = write_cifar10(workdir, per_class_train=2, per_class_test=1)
    batch = folder / "test_batch"
    with open(batch, "rb") as handle:
        content = pickle.load(handle, encoding="bytes")
    batch.write_bytes(pickle.dumps(content, protocol=2))
    assert b"_codecs" in batch.read_bytes()
    np.testing.assert_array_equal(_unpickle(batch, (b"data",))[b"data"], content[b"data"])
