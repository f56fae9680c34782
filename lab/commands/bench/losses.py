"""Batch-hard triplet loss: ours vs pytorch-metric-learning, forward + backward.

On the same random tensors (``--batch`` embeddings of ``--dim`` dimensions, L2-normalised,
``--classes`` classes in P x K batches as training sees them) it times

(a) ``lab.losses.BatchHardTripletLoss(margin)``;
(b) pytorch-metric-learning's ``BatchHardMiner`` + ``TripletMarginLoss(margin)`` with
    plain Euclidean distances and a mean over the mined triplets (the same loss: checked
    in tests/test_losses.py, and the two values are printed here too).

Both are warmed up, then timed in turns as the median of ``--repeats`` runs of forward +
backward (CUDA synchronised when ``--device cuda``).

Run: ``python -m lab.commands.bench.losses [--batch 512] [--dim 128] [--classes 128]
[--repeats 200] [--device cpu]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import torch
from torch.nn import functional as F

from lab.losses import BatchHardTripletLoss


def pml_batch_hard(margin: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """pytorch-metric-learning's batch-hard triplet loss with our conventions."""
    from pytorch_metric_learning import losses, miners, reducers
    from pytorch_metric_learning.distances import LpDistance

    distance = LpDistance(normalize_embeddings=False, p=2, power=1)
    miner = miners.BatchHardMiner(distance=distance)
    loss = losses.TripletMarginLoss(
        margin=margin, distance=distance, reducer=reducers.MeanReducer()
    )

    def compute(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return loss(embeddings, labels, miner(embeddings, labels))

    return compute


def time_forward_backward(
    losses: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]],
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    repeats: int,
) -> dict[str, tuple[float, float]]:
    """Median milliseconds of forward + backward of each loss, and its value. The losses
    take turns within every repeat, so a busy spell of the machine hits all of them."""
    cuda = embeddings.is_cuda
    times: dict[str, list[float]] = {name: [] for name in losses}
    values: dict[str, float] = {}
    for i in range(repeats + 5):
        for name, loss in losses.items():
            x = embeddings.detach().requires_grad_(True)
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            out = loss(x, labels)
            out.backward()
            if cuda:
                torch.cuda.synchronize()
            if i >= 5:  # warm-up runs are not counted
                times[name].append((time.perf_counter() - start) * 1000)
            values[name] = float(out.detach())
    return {name: (statistics.median(times[name]), values[name]) for name in losses}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--classes", type=int, default=128, help="P; K = batch / P")
    parser.add_argument("--margin", type=float, default=0.2)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    generator = torch.Generator().manual_seed(0)
    embeddings = F.normalize(torch.randn(args.batch, args.dim, generator=generator), dim=1)
    labels = torch.arange(args.batch) % args.classes
    embeddings, labels = embeddings.to(args.device), labels.to(args.device)

    results = time_forward_backward(
        {"ours": BatchHardTripletLoss(args.margin), "pml": pml_batch_hard(args.margin)},
        embeddings,
        labels,
        args.repeats,
    )
    (ours_ms, ours), (pml_ms, theirs) = results["ours"], results["pml"]
    threads = torch.get_num_threads()
    print(
        f"batch-hard triplet, batch {args.batch}, dim {args.dim}, P {args.classes} x "
        f"K {args.batch // args.classes}, {args.device} ({threads} threads), "
        f"median of {args.repeats}, forward + backward"
    )
    print(f"  lab.losses.BatchHardTripletLoss        {ours_ms:8.2f} ms   loss {ours:.6f}")
    print(f"  pml BatchHardMiner + TripletMarginLoss {pml_ms:8.2f} ms   loss {theirs:.6f}")
    print(f"  ours / pml: {ours_ms / pml_ms:.2f}x the time")


if __name__ == "__main__":
    main()
