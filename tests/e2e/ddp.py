"""What the DDP tests share: the scenarios each of the two processes runs, the worker
that runs them all, and the one-process references (the tests: test_ddp_*.py)."""

from __future__ import annotations

import functools
import os
import socket
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.loggers import CSVLogger
from threadpoolctl import threadpool_limits
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from lab.callbacks import TestEvaluation, TSNEPlot
from lab.data import DigitsDataModule
from lab.distributed import gather_rows, gather_split
from lab.losses import BatchHardTripletLoss, CenterLoss, CrossEntropy, SampledTripletLoss
from lab.models import MLP
from lab.tasks import Classifier
from tests import helpers

WORLD = 2
# Rows of the global batch held by each process: equal halves, and a short last batch.
SPLITS = {"even": (0, 8, 16), "uneven": (0, 9, 16)}
CENTER_STEPS = 3
CENTER_BATCH = 16  # global batch of the center-loss run (8 per process)
TEST_BATCH = 60  # the 360 test digits: 3 batches per process, 6 for one


# -- what both sides build ---------------------------------------------------------------


def triplet_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(16, 6, generator=g), torch.randperm(16, generator=g) % 4


def embedder() -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(6, 4)


def sampled_generator() -> torch.Generator:
    return torch.Generator().manual_seed(5)


LOSSES = {
    "batch_hard": (BatchHardTripletLoss, {}),
    "sampled": (SampledTripletLoss, {"generator": sampled_generator}),
}


def loss_call(name: str) -> tuple[nn.Module, dict]:
    cls, extra = LOSSES[name]
    return cls(), {k: make() for k, make in extra.items()}


def quiet_trainer(**kwargs) -> L.Trainer:
    """``helpers.quiet_trainer`` on the CPU, with Lightning's default logger unless told."""
    return helpers.quiet_trainer(**{"accelerator": "cpu", "logger": True, **kwargs})


def trainer_kwargs(devices: int) -> dict:
    return {"devices": devices, "strategy": "ddp" if devices > 1 else "auto"}


def center_run(devices: int) -> dict[str, torch.Tensor]:
    """The centers and weights after ``CENTER_STEPS`` steps on 64 random 8x8 images."""
    L.seed_everything(0, verbose=False)
    model = Classifier(
        MLP(hidden=[16], in_channels=1, image_size=8),
        num_classes=4,
        losses=[CrossEntropy(), CenterLoss(weight=0.5, lr=0.5)],
        optimizer=functools.partial(torch.optim.SGD, lr=0.1),
        embedding_metrics=False,
    )
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(64, 1, 8, 8, generator=g), torch.arange(64) % 4
    data = TensorDataset(x, y)
    # Unshuffled, process r takes the samples r, r + 2, ... of each global batch, so the
    # two processes' batches make up the one-process batch. (The sampler is our own:
    # Lightning 2.6 shuffles the DistributedSampler it puts into a training loader even
    # when the loader does not shuffle.)
    sampler = None
    if devices > 1:
        sampler = DistributedSampler(data, devices, dist.get_rank(), shuffle=False)
    loader = DataLoader(data, batch_size=CENTER_BATCH // devices, sampler=sampler)
    trainer = quiet_trainer(
        max_steps=CENTER_STEPS, limit_val_batches=0, logger=False, **trainer_kwargs(devices)
    )
    trainer.fit(model, loader)
    return {
        "centers": model.losses[1].centers.detach().clone(),
        "weight": model.backbone.encoder_layers[0][0].weight.detach().clone(),
    }


def centres_model() -> Classifier:
    torch.manual_seed(0)
    return Classifier(
        MLP(hidden=[16], in_channels=1, image_size=8),
        num_classes=4,
        losses=[SampledTripletLoss()],  # no head: classified by the nearest class centre
        optimizer=functools.partial(torch.optim.SGD, lr=0.0),  # fixed features
        embedding_metrics=False,
    )


def centres_data() -> TensorDataset:
    g = torch.Generator().manual_seed(3)
    return TensorDataset(torch.randn(64, 1, 8, 8, generator=g), torch.arange(64) % 4)


def centres_run(devices: int) -> dict[str, torch.Tensor]:
    """The nearest-centre task's class centres after one epoch on both processes, with
    two validations in the epoch (``val_check_interval=0.5``)."""
    model = centres_model()
    data = centres_data()
    sampler = DistributedSampler(data, devices, dist.get_rank(), shuffle=False)
    loader = DataLoader(data, batch_size=8, sampler=sampler)
    trainer = quiet_trainer(
        max_epochs=1, val_check_interval=0.5, limit_val_batches=1, **trainer_kwargs(devices)
    )
    trainer.fit(model, loader, DataLoader(data, batch_size=8))
    return {"centres": model.means.centres.clone(), "present": model.means.present.clone()}


def digits_test(devices: int, root: Path) -> dict[str, float]:
    """``trainer.test`` of a seeded, untrained MLP classifier on digits, with the
    evaluation and t-SNE callbacks writing into ``root``; the logged metrics."""
    L.seed_everything(0, verbose=False)
    model = Classifier(MLP(hidden=[32], in_channels=1, image_size=8), num_classes=10, knn_k=5)
    data = DigitsDataModule(eval_batch_size=TEST_BATCH)
    callbacks = [TestEvaluation(), TSNEPlot(max_points=120, projector=False)]
    logger = CSVLogger(root, name="run", version=0)
    trainer = quiet_trainer(logger=logger, callbacks=callbacks, **trainer_kwargs(devices))
    # One OpenMP thread for t-SNE: two spinning threads on a busy two-core machine take
    # seconds for these 120 points, one takes a fraction of one.
    with threadpool_limits(1):
        trainer.test(model, datamodule=data, verbose=False)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


# -- the two processes -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def triplet_on_ranks(rank: int) -> dict:
    """Each loss on this process's rows of the global batch, under a DDP-wrapped layer."""
    x, y = triplet_batch()
    found = {}
    for name in LOSSES:
        for split, bounds in SPLITS.items():
            rows = slice(bounds[rank], bounds[rank + 1])
            model = DistributedDataParallel(embedder())
            embeddings = model(x[rows])
            embeddings.retain_grad()
            loss_fn, extra = loss_call(name)
            loss = loss_fn(embeddings, y[rows], **extra)
            loss.backward()  # DDP averages the weight's gradient over the processes
            found[name, split] = {
                "loss": loss.detach(),
                "embedding_grad": embeddings.grad,
                "weight_grad": model.module.weight.grad,
                "bias_grad": model.module.bias.grad,
            }
    # The option off: each process mines its own batch.
    half = slice(rank * 8, rank * 8 + 8)
    found["local"] = BatchHardTripletLoss(gather_across_ranks=False)(embedder()(x[half]), y[half])
    # No generator given: drawn alike on every process, whatever their global states.
    torch.manual_seed(100 + rank)
    found["shared_draw"] = SampledTripletLoss()(embedder()(x[rank::2]), y[rank::2]).detach()
    return found


def gathering_on_ranks(rank: int) -> dict:
    """``gather_split`` on a 7-sample split (padded to 8) and on an unsharded one."""
    sampler = DistributedSampler(range(7), num_replicas=WORLD, rank=rank, shuffle=False)
    held = torch.tensor(list(sampler))  # this process's samples, padding included
    sharded = SimpleNamespace(test_dataloaders=DataLoader(range(7), sampler=sampler))
    whole = SimpleNamespace(test_dataloaders=DataLoader(range(7)))
    return {
        "sharded": gather_split(sharded, held, "test"),
        "unsharded": gather_split(whole, held, "test"),
        "rows": gather_rows(torch.full((3 - 2 * rank, 2), rank)),  # 3 rows and 1 row
    }


def divergence_run(rank: int) -> dict:
    """A NaN loss on rank 1 alone: every process must stop at the same step (one that
    raised alone would leave the other waiting in the next collective)."""
    from lab.callbacks.reliability import DivergenceGuard, NonFiniteLossError

    class PoisonOnRank1(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_rank == 1 and trainer.global_step == 2:
                batch[0].fill_(float("nan"))

    L.seed_everything(0, verbose=False)
    model = Classifier(
        MLP(hidden=[8], in_channels=1, image_size=8), num_classes=4, embedding_metrics=False
    )
    g = torch.Generator().manual_seed(3)
    data = TensorDataset(torch.randn(64, 1, 8, 8, generator=g), torch.arange(64) % 4)
    trainer = quiet_trainer(
        max_steps=6,
        limit_val_batches=0,
        logger=False,
        callbacks=[DivergenceGuard(), PoisonOnRank1()],
        **trainer_kwargs(WORLD),
    )
    try:
        trainer.fit(model, DataLoader(data, batch_size=8))
    except NonFiniteLossError as error:
        return {"raised": True, "step": trainer.global_step, "message": str(error)}
    return {"raised": False, "step": trainer.global_step, "message": ""}


def worker(rank: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(WORLD),
        NODE_RANK="0",
        LOCAL_RANK=str(rank),  # Lightning then takes the processes as launched already
    )
    torch.set_num_threads(1)  # two processes on two cores
    # A short timeout: a process left waiting in a collective fails the test, not hangs it.
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=timedelta(seconds=90))
    written: list[str] = []

    def recording(save):
        def wrapped(*args, **kwargs):
            written.extend(Path(a).name for a in args if isinstance(a, Path))
            return save(*args, **kwargs)

        return wrapped

    import lab.callbacks.evaluation as evaluation
    import lab.callbacks.tsne as tsne
    import lab.plots as plots

    for module in (evaluation, tsne):
        module.atomic_write_text = recording(module.atomic_write_text)
    plots.save_figure_atomically = recording(plots.save_figure_atomically)
    try:
        results = {
            "triplet": triplet_on_ranks(rank),
            "gathering": gathering_on_ranks(rank),
            "center": center_run(WORLD),
            "centres": centres_run(WORLD),
            "metrics": digits_test(WORLD, Path(out) / "ddp"),
            "divergence": divergence_run(rank),
            "written": written,
        }
        torch.save(results, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def one_process_triplet(name: str) -> dict[str, torch.Tensor]:
    x, y = triplet_batch()
    model = embedder()
    embeddings = model(x)
    embeddings.retain_grad()
    loss_fn, extra = loss_call(name)
    loss = loss_fn(embeddings, y, **extra)
    loss.backward()
    return {
        "loss": loss.detach(),
        "embedding_grad": embeddings.grad,
        "weight_grad": model.weight.grad,
        "bias_grad": model.bias.grad,
    }
