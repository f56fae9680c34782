"""The benchmark scripts run and print their figures (on tiny sizes; nothing is timed)."""

import re

import pandas as pd
import pytest
import torch

from lab.commands.bench import BENCHMARKS, losses, overhead, throughput, tsne
from lab.errors import LabError


def test_loss_benchmark_prints_equal_losses_for_ours_and_pml(capsys):
    losses.main(["--batch", "32", "--dim", "8", "--classes", "8", "--repeats", "2"])
    out = capsys.readouterr().out
    ours = out.split("BatchHardTripletLoss")[1].split("loss")[1].split()[0]
    theirs = out.split("TripletMarginLoss")[1].split("loss")[1].split()[0]
    assert ours == theirs and "ours / pml" in out


def test_tsne_benchmark_compares_both_methods_and_records_them(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_RESULTS", str(tmp_path))
    tsne.main(["--points", "200", "--dim", "64", "--classes", "4", "--record"])
    out = capsys.readouterr().out
    rows = {
        line.split("  ")[1].strip(): line
        for line in out.splitlines()
        if "(BH)" in line or "(FFT)" in line
    }
    assert set(rows) == {"scikit-learn (BH)", "openTSNE (FFT)"}
    for line in rows.values():
        seconds, agreement = (float(x) for x in line.split()[-2:])
        assert seconds > 0 and agreement > 0.9  # both maps keep the clusters apart
    recorded = pd.read_csv(tmp_path / "benchmarks.csv").set_index("name")["figure"]
    assert set(recorded.index) >= {"tsne-sklearn", "tsne-opentsne", "tsne-ratio"}
    ratio = float(out.split("scikit-learn: ")[1].split()[0])
    assert recorded["tsne-ratio"] == pytest.approx(ratio, abs=0.01)


def numbers(text: str) -> list[float]:
    """The numbers in a printed table row (``1,234.5`` and ``0.98-1.02`` included)."""
    return [float(n.replace(",", "")) for n in re.findall(r"\d[\d,]*\.?\d*", text)]


def test_overhead_benchmark_prints_each_variant_and_the_ratios(lab, capsys):
    options = "--batch 8 --image_size 8 --steps 2 --warmup 1 --repeats 2 --device cpu --threads 1"
    threads = torch.get_num_threads()
    lab("bench", "overhead", *options.split())
    assert torch.get_num_threads() == threads  # restored for whatever runs next
    out = capsys.readouterr().out
    rows = {line[:3]: line for line in out.splitlines() if line[:3] in ("(a)", "(b)", "(c)")}
    assert sorted(rows) == ["(a)", "(b)", "(c)"]
    for key, row in rows.items():
        ms, low, high, ratio, ratio_low, ratio_high = numbers(row.split("  ", 1)[1])
        assert 0 < low <= ms <= high and 0 < ratio_low <= ratio <= ratio_high
        if key == "(a)":
            assert ratio == ratio_low == ratio_high == 1.0  # the baseline
    ms = r"(\d+\.\d+), [+-]\d+\.\d+ ms/step"
    overhead_ratio = re.search(r"Lightning overhead \(b\)/\(a\): " + ms, out)
    callbacks_ratio = re.search(r"lab fit's callbacks \(c\)/\(b\): " + ms, out)
    assert overhead_ratio and float(overhead_ratio.group(1)) > 0
    assert callbacks_ratio and float(callbacks_ratio.group(1)) > 0
    assert "1 threads" in out and "2 timed steps after 1 warm-up, 2 round(s)" in out


def test_overhead_ratio_is_the_median_of_the_per_round_ratios():
    times = {"a": [1.0, 2.0, 4.0], "b": [1.1, 2.0, 8.0], "c": [2.2, 2.0, 8.0]}
    assert overhead.overhead_ratio(times) == pytest.approx(1.1)
    assert overhead.overhead_ratio(times, "c", "b") == pytest.approx(1.0)


def test_throughput_benchmark_prints_images_per_second_per_size(capsys):
    throughput.main(
        ["--sizes", "8", "16", "--batch", "8", "--steps", "2", "--warmup", "1", "--presets", "cpu"]
    )
    out = capsys.readouterr().out
    prefix = "resnet18    cpu "
    rows = [numbers(line[len(prefix) :]) for line in out.splitlines() if line.startswith(prefix)]
    assert [(size, batch) for size, batch, _ in rows] == [(8, 8), (16, 8)]
    assert all(rate > 0 for _, _, rate in rows)
    assert "cpu: cpu, 32-true" in out


def test_throughput_times_each_backbone_on_greyscale_input(capsys):
    throughput.main(
        ["--backbones", "vgg16-bn", "fmnist-cnn", "--channels", "1", "--sizes", "32"]
        + ["--batch", "2", "--steps", "1", "--warmup", "1", "--presets", "cpu"]
    )
    out = capsys.readouterr().out
    assert "vgg16-bn, fmnist-cnn (10 classes, 1 input channels)" in out
    names = [line.split()[0] for line in out.splitlines() if " cpu " in line and "32" in line]
    assert names == ["vgg16-bn", "fmnist-cnn"]
    assert throughput.backbone("fmnist-cnn", 1)(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_throughput_refuses_unknown_or_unavailable_presets():
    with pytest.raises(LabError, match="unknown preset 'tpu'"):
        throughput.main(["--presets", "tpu"])
    if not torch.cuda.is_available():
        with pytest.raises(LabError, match="needs a CUDA GPU"):
            throughput.main(["--presets", "gpu"])
        assert throughput.available_presets() == ["cpu"]


def test_lab_bench_help_lists_every_benchmark(lab, capsys):
    lab("bench", "--help")
    out = capsys.readouterr().out
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert listed == list(BENCHMARKS)
    assert "Lightning overhead" in out and "Training throughput" in out


def test_lab_bench_passes_the_options_on(lab, capsys):
    with pytest.raises(SystemExit) as exit_info:  # argparse's --help of the dataloader bench
        lab("bench", "dataloader", "--help")
    assert exit_info.value.code == 0 and "--images" in capsys.readouterr().out


@pytest.mark.parametrize("args", [["bench", "nope"], ["bench"]])
def test_lab_bench_without_a_known_name_is_a_one_line_error(lab, capsys, args):
    with pytest.raises(SystemExit) as exit_info:
        lab(*args)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert err.startswith("lab: error: ") and "overhead, throughput, dataloader" in err


def test_gpu_check_without_a_gpu_says_so_in_one_line_and_exits_0(lab, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    lab("bench", "gpu", "--out", "table.txt")  # returns: exit status 0
    out = capsys.readouterr().out
    assert out.strip() == "lab bench gpu: no CUDA GPU on this machine: nothing checked"


def test_gpu_check_prints_one_table_writes_it_and_fails_on_a_broken_check(
    capsys, tmp_path, monkeypatch
):
    from lab.commands.bench import gpu

    def broken(device):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
    monkeypatch.setattr(
        gpu, "CHECKS", {"good": lambda d: [("a check", "1.00", "ok")], "bad": broken}
    )
    out_file = tmp_path / "gpu.txt"
    with pytest.raises(SystemExit) as failed:
        gpu.main(["--out", str(out_file)])
    assert failed.value.code == 1
    table = capsys.readouterr().out.strip()
    assert table == out_file.read_text().strip()
    lines = table.splitlines()
    assert lines[0].startswith("lab bench gpu: Fake GPU") and lines[1].split()[:2] == [
        "check",
        "figure",
    ]
    assert lines[2].split() == ["a", "check", "1.00", "ok"]
    assert lines[3].split()[:2] == ["bad", "error"] and "out of memory" in lines[3]


def test_gpu_check_loss_numerics_run_on_the_cpu_too():
    from lab.commands.bench import gpu

    rows = gpu.check_losses(torch.device("cpu"))  # CPU autocast does bf16 (and fp16)
    assert [r[0] for r in rows] == [
        f"losses: {name}, {label}"
        for label in ("bf16", "16-mixed")
        for name in ("batch-hard triplet", "center")
    ]
    assert all(r[1].startswith("value ") for r in rows)
