"""Fault injection: interruption, crashes, divergence, corrupt checkpoints, and repeatable
runs. Each test injects one fault and checks what the user sees and what was kept."""

from __future__ import annotations

import hashlib
import json
import math
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
import yaml

from lab.callbacks.reliability import DivergenceGuard, NonFiniteLossError
from lab.errors import LabError
from tests.conftest import REPO
from tests.helpers import short_fit

DEMO = REPO / "experiments" / "demo.yaml"
# 2 epochs of 4 steps; validation (and the epoch-end checkpoint) after each epoch.
SHORT = short_fit(2, 4, 1, "--trainer.log_every_n_steps=1", "--data.init_args.batch_size=16")


def _inject(callback: str, **init_args) -> str:
    spec = {"class_path": f"tests.faults.{callback}", "init_args": init_args}
    return "--trainer.callbacks+=" + json.dumps(spec)


def _ckpt(run, name="last.ckpt") -> dict:
    return torch.load(run / "checkpoints" / name, map_location="cpu", weights_only=False)


def _fit_loop(state: dict) -> tuple[int, int]:
    """(global step, epoch) as a checkpoint records them; an epoch-end checkpoint is saved
    during its epoch, so after 2 epochs of 4 steps it is (8, 1)."""
    return state["global_step"], state["epoch"]


def test_sigterm_mid_epoch_saves_and_the_resumed_run_ends_where_an_uninterrupted_one_does(
    lab, workdir, capsys
):
    lab("fit", "--config", DEMO, "--experiment", "whole", *SHORT)
    whole = _ckpt(workdir / "lightning_logs" / "whole" / "version_0")

    with pytest.raises(SystemExit) as stopped:
        lab("fit", "--config", DEMO, "--experiment", "cut", *SHORT, _inject("SignalAt", step=3))
    assert stopped.value.code == 143
    run = workdir / "lightning_logs" / "cut" / "version_0"
    cut = _ckpt(run)
    assert _fit_loop(cut) == (3, 0)  # mid-epoch 0, after the step the signal arrived in
    assert "optimizer_states" in cut and cut["lr_schedulers"]
    err = capsys.readouterr().err
    assert "SIGTERM at epoch 0, step 3: saved" in err and "--ckpt_path last" in err
    info = json.loads((run / "run.json").read_text())
    assert info["status"]["fit"].startswith("stopped: SIGTERMException")

    lab("fit", "--config", DEMO, "--experiment", "cut", *SHORT, "--ckpt_path", "last")
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0"]  # the same run
    resumed = _ckpt(run)
    assert _fit_loop(resumed) == _fit_loop(whole) == (8, 1)
    sched = resumed["lr_schedulers"][0]
    assert sched["last_epoch"] == whole["lr_schedulers"][0]["last_epoch"]
    assert json.loads((run / "run.json").read_text())["status"]["fit"] == "finished"
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["val/acc"].notna().sum() == 2  # one row per epoch, the log continued


def test_ctrl_c_saves_the_state_and_exits_1(lab, workdir, capsys):
    with pytest.raises(SystemExit) as stopped:
        lab("fit", "--config", DEMO, *SHORT, _inject("RaiseAt", step=2, kind="ctrl_c"))
    assert stopped.value.code == 1
    assert _fit_loop(_ckpt(workdir / "lightning_logs" / "demo" / "version_0")) == (2, 0)
    assert "Ctrl+C (SIGINT) at epoch 0, step 2: saved" in capsys.readouterr().err


def test_a_crash_leaves_a_checkpoint_to_resume_from(lab, workdir):
    with pytest.raises(RuntimeError, match="injected crash"):
        lab("fit", "--config", DEMO, *SHORT, _inject("RaiseAt", step=5))
    run = workdir / "lightning_logs" / "demo" / "version_0"
    assert _fit_loop(_ckpt(run)) == (5, 1)
    lab("fit", "--config", DEMO, *SHORT, "--ckpt_path", "last")
    assert _fit_loop(_ckpt(run)) == (8, 1)


def test_a_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(lab, workdir, capsys):
    record = workdir / "hash_at_poison.txt"
    with pytest.raises(SystemExit) as stopped:
        lab("fit", "--config", DEMO, *SHORT, _inject("PoisonAt", step=6, record=str(record)))
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("lab: error: training diverged: non-finite loss nan at epoch 1, step 6")
    assert "(batch 2)" in err and "the last finite loss was" in err and "at step 5" in err
    run = workdir / "lightning_logs" / "demo" / "version_0"
    last = run / "checkpoints" / "last.ckpt"
    assert hashlib.sha256(last.read_bytes()).hexdigest() == record.read_text()  # untouched
    state = _ckpt(run)
    assert _fit_loop(state) == (4, 0)  # the end of epoch 0
    assert all(
        torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point()
    )
    info = json.loads((run / "run.json").read_text())
    assert info["status"]["fit"].startswith("stopped: NonFiniteLossError")


def test_skip_drops_the_bad_step_and_finishes(lab, workdir):
    lab(
        "fit",
        "--config",
        DEMO,
        *SHORT,
        "--divergence.action=skip",
        _inject("PoisonAt", step=2),
    )
    run = workdir / "lightning_logs" / "demo" / "version_0"
    state = _ckpt(run)
    assert _fit_loop(state) == (8, 1)
    assert all(
        torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point()
    )
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["train/skipped_steps"].dropna().tolist() == [1.0]  # epoch 0 had one
    assert math.isfinite(metrics["val/loss"].dropna().iloc[-1])


def test_a_truncated_checkpoint_is_a_clear_error(lab, workdir, capsys):
    lab("fit", "--config", DEMO, *SHORT[:1], "--trainer.max_epochs=1", *SHORT[1:3])
    last = workdir / "lightning_logs" / "demo" / "version_0" / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    with pytest.raises(SystemExit) as stopped:
        lab("fit", "--config", DEMO, *SHORT, "--ckpt_path", "last")
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert (
        err.startswith("lab: error: checkpoint ") and "checkpoints/last.ckpt cannot be read" in err
    )


def test_ckpt_path_auto_starts_fresh_then_resumes(lab, workdir):
    lab("fit", "--config", DEMO, *SHORT, "--trainer.max_epochs=1", "--ckpt_path", "auto")
    run = workdir / "lightning_logs" / "demo" / "version_0"
    assert _fit_loop(_ckpt(run)) == (4, 0)
    lab("fit", "--config", DEMO, *SHORT, "--ckpt_path", "auto")
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0"]
    assert _fit_loop(_ckpt(run)) == (8, 1)


def test_same_seed_and_deterministic_give_the_same_numbers_and_config_yaml_repeats_a_run(
    lab, workdir
):
    args = [*SHORT, "--trainer.max_epochs=1", "--seed", "5", "--trainer.deterministic=true"]
    for name in ("a", "b"):
        lab("fit", "--config", DEMO, "--experiment", name, *args)
    root = workdir / "lightning_logs"
    saved = root / "a" / "version_0" / "config.yaml"
    assert yaml.safe_load(saved.read_text())["seed_everything"] == 5
    lab("fit", "--config", saved, "--experiment", "c")
    columns = ["train/loss", "val/loss", "val/acc"]
    tables = [pd.read_csv(root / n / "version_0" / "metrics.csv")[columns] for n in "abc"]
    pd.testing.assert_frame_equal(tables[0], tables[1])
    pd.testing.assert_frame_equal(tables[0], tables[2])
    info = json.loads((root / "a" / "version_0" / "run.json").read_text())
    assert info["seed"] == 5 and {"torch", "lightning"} <= set(info["versions"])
    assert set(info["git"]) == {"commit", "dirty"}


def test_no_second_last_checkpoint_after_a_resume(lab, workdir):
    with pytest.raises(SystemExit):
        lab("fit", "--config", DEMO, *SHORT, _inject("SignalAt", step=3))
    lab("fit", "--config", DEMO, *SHORT, "--ckpt_path", "last")
    names = sorted(
        p.name for p in (workdir / "lightning_logs/demo/version_0/checkpoints").iterdir()
    )
    assert [n for n in names if n.startswith("last")] == ["last.ckpt"]


def test_weights_gone_non_finite_are_caught_before_the_epoch_end_checkpoint(lab, workdir, capsys):
    with pytest.raises(SystemExit) as stopped:
        lab("fit", "--config", DEMO, *SHORT, _inject("CorruptWeightsAt", step=8))
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "non-finite weights (backbone.conv1.weight and 0 more) at epoch 1, step 8" in err
    state = _ckpt(workdir / "lightning_logs" / "demo" / "version_0")
    assert _fit_loop(state) == (4, 0)  # epoch 1's checkpoint was never written


def test_a_nan_loss_is_reported_with_its_step_at_the_next_check_point(lab, workdir, capsys):
    with pytest.raises(SystemExit) as stopped:
        lab(
            "fit",
            "--config",
            DEMO,
            *SHORT,
            "--divergence.check_every_n_steps=3",
            _inject("PoisonAt", step=4),
        )
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "non-finite loss nan at epoch 1, step 4 (batch 0) (found by the check at step 6)" in err
    assert "the last finite loss was" in err and "at step 3" in err
    state = _ckpt(workdir / "lightning_logs" / "demo" / "version_0")
    assert _fit_loop(state) == (4, 0)  # stopped before epoch 1's checkpoint


def _guard_trainer(step: int, scaler=None) -> SimpleNamespace:
    return SimpleNamespace(
        precision_plugin=SimpleNamespace(scaler=scaler),
        current_epoch=0,
        global_step=step,
        world_size=1,
        checkpoint_callback=None,
    )


def _run_steps(guard: DivergenceGuard, losses: list[float], scaler=None) -> None:
    for step, value in enumerate(losses):
        trainer = _guard_trainer(step, scaler)
        guard.on_train_batch_start(trainer, torch.nn.Linear(1, 1), None, step)
        loss = torch.tensor(value)
        guard.on_before_backward(trainer, None, scaler.scale(loss) if scaler else loss)
        trainer.global_step = step + 1  # the optimizer step
        guard.on_train_batch_end(trainer, None, None, None, step)


def test_the_guard_makes_no_host_sync_between_check_points(monkeypatch):
    calls = []
    for name in ("item", "tolist", "__float__", "__bool__", "cpu"):
        real = getattr(torch.Tensor, name)

        def spy(self, *args, _real=real, _name=name, **kwargs):
            calls.append(_name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, spy)
    guard = DivergenceGuard(check_every_n_steps=5)
    _run_steps(guard, [1.0, 0.9, 0.8, 0.7])
    assert calls == []  # four steps, no look at the loss
    _run_steps(guard, [1.0] * 5)  # step 5 is a check point: one read
    assert calls == ["tolist"]


def test_the_reported_loss_is_unscaled_under_16_mixed():
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    guard = DivergenceGuard(check_every_n_steps=2)
    with pytest.raises(NonFiniteLossError, match=r"nan at epoch 0, step 2 .*was 2\.5 at step 1"):
        _run_steps(guard, [3.0, 2.5, float("nan"), 1.0], scaler)
    skip = DivergenceGuard(action="skip")
    _run_steps(skip, [1.5], scaler)
    assert skip.last_finite == (0, 1.5)


def test_check_every_n_steps_must_be_positive():
    with pytest.raises(LabError, match="check_every_n_steps must be at least 1"):
        DivergenceGuard(check_every_n_steps=0)
