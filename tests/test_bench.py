"""The benchmark scripts run and print their figures (on tiny sizes; nothing is timed)."""

from lab.bench import losses, tsne


def test_loss_benchmark_prints_equal_losses_for_ours_and_pml(capsys):
    losses.main(["--batch", "32", "--dim", "8", "--classes", "8", "--repeats", "2"])
    out = capsys.readouterr().out
    ours = out.split("BatchHardTripletLoss")[1].split("loss")[1].split()[0]
    theirs = out.split("TripletMarginLoss")[1].split("loss")[1].split()[0]
    assert ours == theirs and "ours / pml" in out


def test_tsne_benchmark_prints_its_times(capsys):
    tsne.main(["--points", "200", "--dim", "64", "--classes", "4"])
    out = capsys.readouterr().out
    assert "PCA + t-SNE (total)" in out
    agreement = float(out.rsplit(":", 1)[1])
    assert agreement > 0.9  # the 2-D map keeps the well-separated clusters apart
