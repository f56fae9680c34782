"""Collectives for training on several processes (DDP): what the metric-learning losses,
the tasks' epoch-end metrics and the evaluation callbacks share.

- :func:`gather_with_grad`: the rows of every process, concatenated in rank order, with a
  gradient that flows back to each process's own rows. A loss computed on the gathered
  batch is the loss of the *global* batch, the same value on every process; the backward
  sums the gradient of every process's copy of it (an all-reduce), so each process's rows
  get ``world_size`` times the global-batch gradient and DDP's averaging over processes
  gives exactly the single-process gradient on the global batch, whatever the batch
  size of each process (the last batch may be shorter). This is pytorch-metric-learning's
  ``DistributedLossWrapper`` (``efficient=False``: every process computes the loss over
  all anchors), whose plain ``all_gather`` cuts the other processes' rows off the graph
  and multiplies the loss by ``world_size`` instead; here the logged loss stays the
  global batch's. For a P x K batch of a few hundred rows the duplicated ``(B, B)``
  distance matrix costs nothing beside the network.
- :func:`gather_rows`: the same without a gradient (labels).
- :func:`shared_generator`: a random generator seeded alike on every process, so that
  random in-batch triplets drawn from the gathered batch are the same everywhere.
- :func:`gather_split`: a validation or test split's per-process rows (features, logits,
  targets) put back together in the dataset's order, without the samples Lightning's
  ``DistributedSampler`` repeats to give every process an equal share.

Without an initialised process group (or with one process) every function is a no-op.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler


def world_size() -> int:
    """Processes in the default group; 1 when training is not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def _sizes(x: torch.Tensor) -> list[int]:
    """Every process's number of rows of ``x`` (one small all-gather)."""
    local = torch.tensor([len(x)], device=x.device, dtype=torch.long)
    sizes = [torch.zeros_like(local) for _ in range(world_size())]
    dist.all_gather(sizes, local)
    return [int(s) for s in sizes]


def _gather_padded(x: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    """Every process's ``x`` (rows ``sizes[r]``), padded to the longest for the
    all-gather (collectives need equal shapes) and cut back after it."""
    padded = x.new_zeros((max(sizes), *x.shape[1:]))
    padded[: len(x)] = x
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous())
    return [part[:n] for part, n in zip(parts, sizes, strict=True)]


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        ctx.rank, ctx.sizes = dist.get_rank(), sizes
        return torch.cat(_gather_padded(x.detach(), sizes))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        # Every process's loss may depend on this process's rows: sum their gradients.
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """``x (B_r, ...)`` of every process concatenated in rank order, ``(sum B_r, ...)``;
    the backward all-reduces the gradient and hands each process its own rows' part.

    A collective in both directions: every process must call it (and, when the result
    takes part in the loss, run the backward) the same number of times.
    """
    if world_size() == 1:
        return x
    return _GatherWithGrad.apply(x, _sizes(x))


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """``x (B_r, ...)`` of every process concatenated in rank order, without a gradient;
    the processes may hold different numbers of rows."""
    if world_size() == 1:
        return x
    with torch.no_grad():
        return torch.cat(_gather_padded(x.detach(), _sizes(x)))


def gather_embeddings(
    embeddings: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The global batch: every process's embeddings (with gradient, see
    :func:`gather_with_grad`) and labels."""
    return gather_with_grad(embeddings), gather_rows(labels)


def shared_generator(device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on ``device`` seeded from rank 0's global random state (so
    ``seed_everything`` still makes runs repeatable) and seeded alike on every process:
    the processes' own global states may differ (random augmentations draw unequally)."""
    seed = torch.randint(0, 2**62, (1,), dtype=torch.long)
    if world_size() > 1:
        # NCCL only broadcasts tensors on the GPU: send it from the device it is for.
        seed = seed.to(device)
        dist.broadcast(seed, src=0)
    return torch.Generator(device=device).manual_seed(int(seed.item()))


def _eval_loader(trainer: Any, stage: str) -> Any:
    loaders = trainer.test_dataloaders if stage == "test" else trainer.val_dataloaders
    if isinstance(loaders, dict):
        loaders = list(loaders.values())
    if isinstance(loaders, (list, tuple)):
        loaders = loaders[0] if loaders else None
    return loaders


def _sharding(sampler: Any) -> tuple[int, int | None] | None:
    """``(world_size, split size or None)`` of a sampler that hands each process every
    ``world_size``-th sample of a split; the size only when the samples come in the
    dataset's order (unshuffled, none dropped). None: the sampler does not shard."""
    if isinstance(sampler, DistributedSampler):
        in_order = type(sampler) is DistributedSampler and not sampler.shuffle
        in_order = in_order and not sampler.drop_last
        return sampler.num_replicas, len(sampler.dataset) if in_order else None
    # lab.data.device_loader.EpochOrder: DistributedSampler's order, never drops.
    shards, size = getattr(sampler, "world_size", 1), getattr(sampler, "size", None)
    if isinstance(shards, int) and shards > 1:
        in_order = getattr(sampler, "shuffle", True) is False and isinstance(size, int)
        return shards, size if in_order else None
    return None


def gather_split(trainer: Any, x: torch.Tensor, stage: str) -> torch.Tensor:
    """All rows of a ``val`` or ``test`` split that the processes evaluated, from this
    process's rows ``x``: the same on every process, and a collective (every process
    must call it). Without distribution, ``x`` itself.

    - The split's loader shards it (Lightning's ``DistributedSampler``, the default, or
      ``lab.data.device_loader``'s own order): each process held every
      ``world_size``-th sample. The rows are gathered and, for a whole unshuffled pass,
      interleaved back into the dataset's order with the repeated padding samples
      dropped, so the result is what one process would have seen.
    - It does not (``use_distributed_sampler=False``, which P x K training needs): every
      process evaluated the whole split, and gathering would count each sample
      ``world_size`` times (a query would find its own copy at distance 0): ``x`` as is.
    """
    if world_size() == 1:
        return x
    sampler = getattr(_eval_loader(trainer, stage), "sampler", None)
    # A loader without a sampler to read: assume Lightning's default, a sharded split.
    sharding = _sharding(sampler) if sampler is not None else (world_size(), None)
    if sharding is None:
        return x
    shards, size = sharding
    parts = _gather_padded(x.detach(), _sizes(x))
    share = -(-size // shards) if size is not None else None
    if share is None or len(parts) != shards or any(len(p) != share for p in parts):
        return torch.cat(parts)  # shuffled or cut short (limit_*_batches): order unknown
    # Process r held samples r, r + world_size, ...; the last ones repeat the first.
    return torch.stack(parts, dim=1).flatten(0, 1)[:size]
