"""``lab sweep``: grids, one run per setting, one table, failures recorded, bad keys refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lab.cli import main
from lab.commands.sweep import expand, load_grid_file, parse_grid_argument, slug
from lab.commands.sweep import main as sweep
from lab.errors import LabError
from tests.conftest import QUIET, REPO
from tests.helpers import short_fit

DEMO = str(REPO / "experiments" / "demo.yaml")
TINY = short_fit(1, 2, 1, *QUIET)


def test_grid_arguments_are_yaml_lists():
    assert parse_grid_argument("model.margin=[0.1, 0.2]") == {"model.margin": [0.1, 0.2]}
    assert parse_grid_argument("--data.image_size=16") == {"data.image_size": [16]}
    assert parse_grid_argument("model.name=[a, null]") == {"model.name": ["a", None]}
    for bad in ("model.margin", "=[1]", "model.margin=", "model.margin=[]", "k=[1,"):
        with pytest.raises(LabError, match="grid"):
            parse_grid_argument(bad)


def test_grids_expand_to_every_combination_then_the_next_grid():
    settings = expand([{"a": [1, 2], "b": ["x", "y"]}, {"a": [1], "b": ["x"]}, {"c": [0]}])
    assert settings == [
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
        {"a": 2, "b": "x"},
        {"a": 2, "b": "y"},
        {"c": 0},
    ]
    assert slug({"model.init_args.center_weight": 0.1, "model.center_lr": 1}) == (
        "center_weight-0.1_center_lr-1"
    )


def test_grid_file_holds_a_map_or_a_list_of_maps(tmp_path):
    one = tmp_path / "one.yaml"
    one.write_text("grid:\n  model.margin: [0.1, 0.2]\n  model.soft_margin: false\n")
    assert load_grid_file(one) == [{"model.margin": [0.1, 0.2], "model.soft_margin": [False]}]
    two = tmp_path / "two.yaml"
    two.write_text("grid:\n  - {model.a: [1, 2]}\n  - {model.b: [3]}\n")
    assert expand(load_grid_file(two)) == [{"model.a": 1}, {"model.a": 2}, {"model.b": 3}]
    bad = tmp_path / "bad.yaml"
    bad.write_text("margin: [1, 2]\n")
    with pytest.raises(LabError, match="grid:"):
        load_grid_file(bad)
    with pytest.raises(LabError, match="does not exist"):
        load_grid_file(tmp_path / "missing.yaml")


def test_a_sweep_of_two_settings_makes_two_runs_and_one_table(workdir, capsys):
    grid = "model.init_args.optimizer.init_args.lr=[0.01, 0.05]"
    main(["sweep", "--config", DEMO, "--grid", grid, "--", *TINY])
    sweep = workdir / "lightning_logs" / "sweeps" / "demo"
    runs = sorted(p.relative_to(sweep).as_posix() for p in sweep.glob("*/version_*"))
    assert runs == ["lr-0.01/version_0", "lr-0.05/version_0"]
    table = pd.read_csv(sweep / "sweep.csv")
    assert table["lr"].tolist() == [0.01, 0.05]
    assert table["status"].tolist() == ["ok", "ok"]
    for run, acc in zip(runs, table["test/acc"], strict=True):
        metrics = pd.read_csv(sweep / run / "metrics.csv")
        assert acc == pytest.approx(metrics["test/acc"].dropna().iloc[-1])
        config = (sweep / run / "config.yaml").read_text()
        assert f"lr: {run.split('/')[0].removeprefix('lr-')}" in config
    assert (sweep / "sweep.md").read_text().count("| ok ") == 2
    assert (sweep / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert "2 settings, 0 failed" in capsys.readouterr().out


def test_a_failing_setting_is_recorded_and_the_sweep_goes_on(workdir, capsys):
    # label_smoothing=1.0 parses but the task refuses it when it is built.
    grid = "model.init_args.label_smoothing=[1.0, 0.1]"
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "--config", DEMO, "--grid", grid, "--name", "smooth", "--", *TINY])
    assert exit_info.value.code == 1  # the sweep finished, but says a setting failed
    table = pd.read_csv(workdir / "lightning_logs" / "sweeps" / "smooth" / "sweep.csv")
    assert table["status"].tolist() == ["failed (fit)", "ok"]
    assert "label_smoothing" in table["error"][0]
    assert table["test/acc"].notna().tolist() == [False, True]
    assert "2 settings, 1 failed" in capsys.readouterr().out


def test_an_unknown_key_stops_the_sweep_before_anything_runs(workdir):
    with pytest.raises(LabError, match="not a valid config.*no_such_option"):
        sweep(["--config", DEMO, "--grid", "model.init_args.no_such_option=[1, 2]"])
    assert not (workdir / "lightning_logs").exists()


def test_a_sweep_without_a_grid_or_config_is_refused(workdir):
    with pytest.raises(LabError, match="--grid"):
        sweep(["--config", DEMO])
    with pytest.raises(LabError, match="does not exist"):
        sweep(["--config", "nope.yaml", "--grid", "model.x=[1]"])


def test_best_setting_keeps_only_the_keys_that_vary():
    from lab.commands.sweep import best_setting

    settings = [{"model.dropout": d, "trainer.max_epochs": 20} for d in (0.1, 0.2, 0.3, 0.4)]
    table = pd.DataFrame(
        {
            "status": ["ok", "ok", "failed (fit)", "ok"],
            "best val/acc": [0.50, 0.70, None, 0.60],
            "test/acc": [0.9, 0.1, None, 0.2],  # never chosen by test
        }
    )
    assert best_setting(settings, table, "best val/acc") == {"model.dropout": 0.2}
    with pytest.raises(LabError, match="not a column"):
        best_setting(settings, table, "val/nope")
    with pytest.raises(LabError, match="no setting finished"):
        best_setting(settings, table.assign(status="failed (fit)"), "best val/acc")


def test_final_trains_the_best_setting_again_with_the_configs_own_values(workdir, capsys):
    grid = ["--grid", "model.label_smoothing=[0.0, 0.2]", "--grid", "trainer.max_epochs=[1]"]
    fast = ["--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1", *QUIET]
    fast.append("--trainer.max_epochs=2")  # the config's own value, for the final run
    sweep(["--config", DEMO, *grid, "--final", "--", *fast])
    sweep_dir = workdir / "lightning_logs" / "sweeps" / "demo"
    table = pd.read_csv(sweep_dir / "sweep.csv")
    assert list(table["status"]) == ["ok", "ok", "final: ok"]
    best = table.iloc[:2]["best val/acc"].astype(float).idxmax()
    assert table.iloc[2]["label_smoothing"] == table.iloc[best]["label_smoothing"]
    final = sweep_dir / "final" / "version_0"
    import yaml

    saved = yaml.safe_load((final / "config.yaml").read_text())
    assert saved["trainer"]["max_epochs"] == 2  # the config's own, not the sweep's 1
    assert saved["model"]["init_args"]["label_smoothing"] == table.iloc[best]["label_smoothing"]
    assert (final / "confusion_matrix.csv").is_file()  # tested too


def test_seeded_runs_aggregate_to_mean_std_and_n_ranked_by_the_mean():
    from lab.commands.sweep import seed_table

    settings = [{"model.init_args.dropout": d} for d in (0.1, 0.2, 0.3)]
    runs = pd.DataFrame(
        {
            "dropout": [0.1, 0.1, 0.1, 0.2, 0.2, 0.2, 0.3, 0.3, 0.3],
            "seed": [0, 1, 2] * 3,
            "status": ["ok"] * 7 + ["failed (fit)", "ok"],
            "test/acc": [0.90, 0.92, 0.94, 0.95, 0.97, 0.96, 0.80, None, 0.99],
            "best val/acc": [0.5] * 9,
        }
    )
    table = seed_table(runs, settings, rank_by="test/acc")
    assert table["dropout"].tolist() == [0.1, 0.2, 0.3]  # in the order of the settings
    assert table["n"].tolist() == [3, 3, 2]
    assert table["status"].tolist() == ["ok", "ok", "1/3 failed"]
    expected = [[0.90, 0.92, 0.94], [0.95, 0.97, 0.96], [0.80, 0.99]]
    assert table["test/acc"].tolist() == pytest.approx([np.mean(v) for v in expected])
    assert table["test/acc std"].tolist() == pytest.approx([np.std(v, ddof=1) for v in expected])
    assert table["rank"].tolist() == [2, 1, 3]  # 0.96 > 0.92 > 0.895
    assert table["test/acc ± std"].iloc[1] == "0.9600 ± 0.0100"
    assert np.isnan(seed_table(runs.iloc[:1], settings[:1])["test/acc std"].iloc[0])


def test_a_seeded_sweep_runs_each_setting_per_seed_and_plots_error_bars(workdir, capsys):
    grid = "model.init_args.optimizer.init_args.lr=[0.05]"
    main(["sweep", "--config", DEMO, "--grid", grid, "--seeds", "2", "--", *TINY])
    sweep_dir = workdir / "lightning_logs" / "sweeps" / "demo"
    runs = sorted(p.relative_to(sweep_dir).as_posix() for p in sweep_dir.glob("*/*/version_*"))
    assert runs == ["lr-0.05/seed-0/version_0", "lr-0.05/seed-1/version_0"]
    table = pd.read_csv(sweep_dir / "sweep.csv")
    assert table["seed"].tolist() == [0, 1] and table["status"].tolist() == ["ok", "ok"]
    for run in runs:
        config = (sweep_dir / run / "config.yaml").read_text()
        assert f"seed_everything: {run.split('/')[1].removeprefix('seed-')}" in config
    assert (
        (table["test/acc low"] <= table["test/acc"]) & (table["test/acc"] <= table["test/acc high"])
    ).all()
    seeded = pd.read_csv(sweep_dir / "sweep_seeds.csv")
    assert seeded["n"].tolist() == [2]
    assert seeded["test/acc"].iloc[0] == pytest.approx(table["test/acc"].mean())
    assert seeded["test/acc std"].iloc[0] == pytest.approx(table["test/acc"].std(ddof=1))
    assert "± std" in (sweep_dir / "sweep.md").read_text()
    out = capsys.readouterr().out
    assert "test/acc ± std" in out and "2 runs, 0 failed" in out
    assert (sweep_dir / "sweep.png").read_bytes()[:4] == b"\x89PNG"


def test_a_runs_failure_is_put_on_the_stage_that_failed(tmp_path, monkeypatch):
    import json

    import lab.commands.sweep as sweep_module

    calls = []
    monkeypatch.setattr(sweep_module, "run_lab", lambda args: calls.append(args) or (1, "boom"))
    experiment = tmp_path / "sweeps" / "s" / "lr-1"
    assert sweep_module.fit_and_test(["--x"], experiment, test=True) == ("failed (fit)", "boom")
    assert calls[-1] == ["fit", "--x", "--then_test", "last"]  # one process: fit, then test
    (experiment / "version_0").mkdir(parents=True)
    info = {"status": {"fit": "finished", "test": "stopped: ValueError"}}
    (experiment / "version_0" / "run.json").write_text(json.dumps(info))
    assert sweep_module.fit_and_test(["--x"], experiment, test=True)[0] == "failed (test)"
    assert sweep_module.fit_and_test(["--x"], experiment, test=False)[0] == "failed (fit)"
    assert calls[-1] == ["fit", "--x"]
    monkeypatch.setattr(sweep_module, "run_lab", lambda args: (0, ""))
    assert sweep_module.fit_and_test(["--x"], experiment, test=True) == ("ok", "")
