"""Results on file: `lab record` rows from run folders, benchmark rows, the README's tables
made from results/, and the check that the README and results/ agree."""

import json
import multiprocessing

import pandas as pd
import pytest
from scipy import stats as scipy_stats

from lab.cli import main
from lab.commands.record import (
    RUN_COLUMNS,
    machine,
    marked_blocks,
    record_benchmark,
    record_run,
    render_tables,
    run_row,
    update_text,
    write_tables,
)
from lab.errors import LabError
from lab.runs import summarize
from tests.conftest import REPO
from tests.helpers import short_fit

SHORT = short_fit()


def fake_run(root, experiment="demo", version=0, acc=0.9, seconds=12.5, dirty=False):
    run = root / "lightning_logs" / experiment / f"version_{version}"
    run.mkdir(parents=True)
    pd.DataFrame(
        {"epoch": [0, 1, None], "val/acc": [0.5, 0.8, None], "test/acc": [None, None, acc],
         "test/knn_acc": [None, None, acc - 0.01]}
    ).to_csv(run / "metrics.csv", index=False)  # fmt: skip
    info = {
        "versions": {"torch": "2.9.0+cpu"},
        "git": {"commit": "0123456789abcdef" * 2 + "01234567", "dirty": dirty},
        "accelerator": "CPUAccelerator",
        "devices": 1,
        "commands": [f"lab fit --config experiments/{experiment}.yaml", "lab test ..."],
        "seconds": {"fit": seconds, "test": 1.0},
    }
    (run / "run.json").write_text(json.dumps(info))
    return run


def test_a_recorded_row_holds_what_the_run_folder_says(tmp_path):
    run = fake_run(tmp_path, dirty=True)
    row = record_run(run, tmp_path / "results")
    table = pd.read_csv(tmp_path / "results" / "runs.csv", dtype={"commit": str})
    assert list(table.columns) == RUN_COLUMNS and len(table) == 1
    assert row["experiment"] == "demo" and row["run"].endswith("demo/version_0")
    assert row["test_acc"] == 0.9 and row["knn_acc"] == pytest.approx(0.89)
    assert row["best_val_acc"] == 0.8 and row["epochs"] == 2 and row["fit_seconds"] == 12.5
    assert row["commit"] == "0123456789ab+dirty" and row["torch"] == "2.9.0+cpu"
    assert row["command"] == "lab fit --config experiments/demo.yaml && lab test ..."
    assert row["machine"] == machine() and "cores" in row["machine"]
    assert table["commit"][0] == "0123456789ab+dirty"
    # A fit with --then_test writes its one command for both stages: the row says it once.
    info = json.loads((run / "run.json").read_text())
    info["commands"] = ["lab fit --config x.yaml --then_test last"] * 2
    (run / "run.json").write_text(json.dumps(info))
    assert run_row(run)["command"] == "lab fit --config x.yaml --then_test last"


def test_recording_again_replaces_the_row_and_other_runs_append(tmp_path):
    results = tmp_path / "results"
    record_run(fake_run(tmp_path), results)
    record_run(tmp_path / "lightning_logs" / "demo" / "version_0", results)
    record_run(fake_run(tmp_path, version=1, acc=0.95), results)
    table = pd.read_csv(results / "runs.csv")
    assert table["test_acc"].tolist() == [0.9, 0.95]


def _record_at_once(start, run, results) -> None:
    start.wait()  # every process reads runs.csv at the same moment
    record_run(run, results)


def test_records_from_several_processes_at_once_lose_no_row(tmp_path):
    results = tmp_path / "results"
    runs = [fake_run(tmp_path, version=v, acc=0.5 + v / 100) for v in range(6)]
    context = multiprocessing.get_context("fork")
    start = context.Barrier(len(runs))
    processes = [context.Process(target=_record_at_once, args=(start, r, results)) for r in runs]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert [p.exitcode for p in processes] == [0] * len(runs)
    table = pd.read_csv(results / "runs.csv")
    assert sorted(table["test_acc"].round(2)) == [0.5 + v / 100 for v in range(6)]
    assert sorted(p.name for p in results.iterdir()) == [".runs.csv.lock", "runs.csv"]


def test_runs_that_cannot_be_recorded_say_why(tmp_path):
    run = fake_run(tmp_path)
    (run / "run.json").unlink()
    with pytest.raises(LabError, match="no run.json"):
        record_run(run, tmp_path)
    run = fake_run(tmp_path, version=1)
    pd.DataFrame({"epoch": [0], "val/acc": [0.5]}).to_csv(run / "metrics.csv", index=False)
    with pytest.raises(LabError, match="no test metrics: run `lab test"):
        record_run(run, tmp_path)
    assert not (tmp_path / "runs.csv").exists()


def test_a_run_with_predictions_gets_the_wilson_interval_of_its_accuracy(tmp_path):
    run = fake_run(tmp_path, acc=0.9)
    targets = [0, 1, 2, 3, 4] * 4
    predictions = targets[:18] + [0, 0]  # 18 of 20 right
    pd.DataFrame({"index": range(20), "target": targets, "prediction": predictions}).to_csv(
        run / "predictions.csv", index=False
    )
    row = record_run(run, tmp_path / "results")
    ci = scipy_stats.binomtest(18, 20).proportion_ci(method="wilson")
    assert row["test_images"] == 20
    assert row["test_acc_low"] == pytest.approx(ci.low) and row["test_acc_high"] == pytest.approx(
        ci.high
    )
    line = render_tables(tmp_path / "results")["demo"].splitlines()[2]
    assert f"| 90.00% [{100 * ci.low:.1f}, {100 * ci.high:.1f}] |" in line


def test_tables_render_the_newest_row_per_experiment(tmp_path):
    results = tmp_path / "results"
    record_run(fake_run(tmp_path, "demo-center", acc=0.97, dirty=True), results)
    record_run(fake_run(tmp_path, "demo", acc=0.9), results)
    record_run(fake_run(tmp_path, "demo", version=1, acc=0.925, seconds=40.04), results)
    tables = render_tables(results, REPO / "experiments")
    lines = tables["demo"].splitlines()
    assert lines[0].startswith("| id | objective | test top-1 [95% CI] |") and len(lines) == 5
    assert lines[2].startswith("| `demo` | cross-entropy, label smoothing 0.1 |")
    assert "| 92.50% |" in lines[2]
    assert "| 40.0 s |" in lines[2] and "`0123456`" in lines[2]
    assert lines[3].startswith("| `demo-triplet` | batch-hard triplet, margin 0.3; 64-d")
    assert "| not recorded |" in lines[3]
    assert lines[4].startswith("| `demo-center` |") and "97.00%" in lines[4]
    assert "`0123456+dirty`" in lines[4]  # made with uncommitted changes: the table says so
    assert "| published | ResNet-18 | 94.90% |" in tables["fmnist"]
    assert "No benchmark recorded" in tables["benchmarks"]


def test_benchmark_rows_and_their_table(tmp_path):
    record_benchmark("t-SNE 10k x 512", 41.5, "s", "make bench-tsne", tmp_path)
    record_benchmark("t-SNE 10k x 512", 40.25, "s", "make bench-tsne", tmp_path)  # replaces
    table = pd.read_csv(tmp_path / "benchmarks.csv")
    assert table["figure"].tolist() == [40.25] and table["machine"][0] == machine()
    rendered = render_tables(tmp_path)["benchmarks"]
    assert "| t-SNE 10k x 512 | 40.25 s |" in rendered and "`make bench-tsne`" in rendered
    # the figures one command printed share a row, each under what tells it apart
    for name, figure in (("startup-import-torch", 2.3), ("startup-lab-summary", 0.5)):
        record_benchmark(name, figure, "s", "lab bench startup --record", tmp_path)
    rendered = render_tables(tmp_path)["benchmarks"]
    assert "| startup | import-torch 2.3 s; lab-summary 0.5 s |" in rendered
    assert len(rendered.splitlines()) == 2 + 2  # header, rule, one row per command


def test_marked_blocks_are_replaced_and_the_rest_kept(tmp_path):
    text = "intro\n<!-- results:demo -->\nold\n<!-- /results:demo -->\nafter\n"
    new = update_text(text, {"demo": "| new |"})
    assert new == "intro\n<!-- results:demo -->\n| new |\n<!-- /results:demo -->\nafter\n"
    assert marked_blocks(new) == {"demo": "| new |\n"}
    with pytest.raises(LabError, match="unknown results table 'nope'"):
        update_text("<!-- results:nope -->\n<!-- /results:nope -->", {"demo": ""})
    with pytest.raises(LabError, match="no closing"):
        marked_blocks("<!-- results:demo -->\nx")
    readme = tmp_path / "README.md"
    readme.write_text(text)
    (tmp_path / "experiments").symlink_to(REPO / "experiments")  # the objectives' source
    assert write_tables(readme, tmp_path / "results") == ["demo"]
    center = "cross-entropy + 0.1 x center loss, label smoothing 0.1, centers' rate 0.5"
    assert f"| `demo-center` | {center} | not recorded |" in readme.read_text()
    assert write_tables(readme, tmp_path) == []


def test_the_readme_tables_agree_with_results():
    """Every marked table of README.md is what `make results-tables` makes from results/."""
    readme = (REPO / "README.md").read_text()
    tables = render_tables(REPO / "results", REPO / "experiments")
    assert update_text(readme, tables) == readme, (
        "README.md's result tables differ from results/: run `make results-tables`"
    )


@pytest.mark.slow
def test_lab_record_from_a_real_run(lab, workdir, capsys):
    demo = REPO / "experiments" / "demo.yaml"
    lab("fit", "--config", demo, *SHORT)
    lab("test", "--config", demo, "--ckpt_path", "last")
    capsys.readouterr()
    main(["record", "demo", "--results", str(workdir / "results")])
    assert "recorded lightning_logs/demo/version_0: test acc" in capsys.readouterr().out
    row = pd.read_csv(workdir / "results" / "runs.csv").iloc[0]
    summary = summarize(workdir / "lightning_logs" / "demo" / "version_0")
    assert row["test_acc"] == pytest.approx(summary["test/acc"])
    assert row["epochs"] == 1 and row["fit_seconds"] == summary["fit seconds"]
    assert row["command"].startswith("lab fit --config") and " && lab test " in row["command"]
    with pytest.raises(SystemExit) as exit_info:
        main(["record", "nothing-here"])
    assert exit_info.value.code == 2
