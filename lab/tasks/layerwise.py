"""Greedy layer-wise autoencoder pretraining of an MLP, then supervised fine-tuning.

``LayerwisePretrainedClassifier`` is a ``Classifier`` on a ``lab.models.MLP``. When a fit
starts (not a resumed one) it pretrains the MLP's hidden layers one at a time (Bengio et
al. 2007): stage k trains hidden layer k with a fresh linear decoder to reconstruct its
own input (MSE), and that input is the code of the frozen layers 1..k-1, computed from the
unlabelled images (STL-10's unlabelled split; the labelled training images, labels
ignored, for a data module without one). Then the whole MLP and a new classifier are
fine-tuned on the labelled split by the ordinary ``Classifier`` loop. With
``pretrain: false`` the same MLP trains from its random initialisation, for comparison.

The stages run in a plain PyTorch loop with an optimizer of their own, inside
``on_fit_start``: a Trainer runs one fit loop over one data loader with the module's own
optimizers, and the stages need six short fits of other modules (layer k + its decoder)
on another loader. The loop runs on the module's device in float32, whatever the
Trainer's precision. It logs ``pretrain/stage<k>/loss`` (mean reconstruction loss of
each epoch, the epoch as the step) to every logger and writes ``pretrain_stages.csv``
(stage, in, out, first_loss, last_loss, epochs, seconds) and ``pretrain_loss.png`` (loss
per epoch, a line per stage) into the run folder.

Under DDP every process runs the same stages on all the unlabelled data (the loader is
not sharded), then takes process 0's weights so that every copy starts fine-tuning alike.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torch.nn import functional as F

from lab.callbacks.figures import figure_writer
from lab.errors import LabError
from lab.io import atomic_write_text
from lab.plots import closing_figure, publish_figure, pyplot
from lab.tasks.classifier import Classifier

STAGES_FILE = "pretrain_stages.csv"
LOSS_FIGURE = "pretrain_loss.png"


def train_autoencoder(
    encoder: nn.Module,
    decoder: nn.Module,
    batches: Callable[[], Iterable[torch.Tensor]],
    epochs: int,
    optimizer: OptimizerCallable = torch.optim.Adam,
    noise: float = 0.0,
    on_epoch: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train ``decoder(encoder(h))`` to reconstruct ``h`` (MSE) for ``epochs`` passes.

    ``batches()`` yields the inputs ``h`` of one epoch (called once per epoch). With
    ``noise`` > 0, Gaussian noise of that standard deviation is added to the encoder's
    input and the clean ``h`` is the target (a denoising autoencoder). Returns the mean
    loss of each epoch (over the items seen while training); ``on_epoch(epoch, loss)`` is
    called after each.
    """
    parameters = [p for module in (encoder, decoder) for p in module.parameters()]
    optim = optimizer(parameters)
    losses = []
    for epoch in range(epochs):
        total, count = None, 0
        for h in batches():
            noisy = h + noise * torch.randn_like(h) if noise > 0 else h
            loss = F.mse_loss(decoder(encoder(noisy)), h)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            # Summed on the device: no synchronisation per step.
            weighted = loss.detach() * len(h)
            total = weighted if total is None else total + weighted
            count += len(h)
        if total is None:
            raise LabError("layer-wise pretraining got no batches: the unlabelled loader is empty")
        losses.append(float(total / count))
        if on_epoch is not None:
            on_epoch(epoch, losses[-1])
    return losses


class LayerwisePretrainedClassifier(Classifier):
    """A classifier on an MLP whose hidden layers are first pretrained as autoencoders.

    Args:
        backbone: a ``lab.models.MLP`` (it needs ``encoder_layers``, ``widths``, ``code``
            and ``forward_from``).
        num_classes: number of classes (set from the data module by the CLI).
        pretrain: run the layer-wise pretraining; False trains the same MLP from scratch.
        pretrain_epochs: epochs of each stage over the unlabelled images.
        pretrain_optimizer: optimizer of each stage (layer k and its decoder), from YAML
            like ``optimizer``.
        pretrain_batches: at most this many batches per stage epoch (None: all).
        noise: standard deviation of Gaussian noise added to each stage's input (a
            denoising autoencoder; 0: none).
        feature_layer: which hidden code ``features()`` returns, 1..depth (None: the last):
            what the t-SNE callback embeds and the embedding metrics judge. The logits are
            the same whatever the layer (the remaining layers and the classifier follow).
        The rest: see ``Classifier``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        pretrain: bool = True,
        pretrain_epochs: int = 5,
        pretrain_optimizer: OptimizerCallable = torch.optim.Adam,
        pretrain_batches: int | None = None,
        noise: float = 0.0,
        feature_layer: int | None = None,
        **kwargs: Any,
    ) -> None:
        if not all(hasattr(backbone, a) for a in ("encoder_layers", "code", "forward_from")):
            raise LabError(
                f"{type(self).__name__} pretrains the layers of an MLP: model.backbone must be "
                f"lab.models.MLP, got {type(backbone).__name__}"
            )
        if pretrain_epochs < 1:
            raise LabError(f"model.pretrain_epochs must be at least 1, got {pretrain_epochs}")
        if pretrain_batches is not None and pretrain_batches < 1:
            raise LabError(
                f"model.pretrain_batches must be at least 1 (or null: all), got {pretrain_batches}"
            )
        if noise < 0:
            raise LabError(f"model.noise must be >= 0, got {noise}")
        depth = len(backbone.encoder_layers)
        if feature_layer is not None and not 1 <= feature_layer <= depth:
            raise LabError(
                f"model.feature_layer must be 1..{depth} (the MLP's hidden layers) or null "
                f"(the last), got {feature_layer}"
            )
        super().__init__(backbone, num_classes, **kwargs)
        self.pretrain = pretrain
        self.pretrain_epochs = pretrain_epochs
        self.pretrain_optimizer = pretrain_optimizer
        self.pretrain_batches = pretrain_batches
        self.noise = noise
        self.feature_layer = feature_layer
        # One record per stage of the last pretraining (per-epoch losses included).
        self.pretrain_history: list[dict[str, Any]] = []

    # -- features of a chosen layer ------------------------------------------------------

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The code of hidden layer ``feature_layer`` (the last one by default)."""
        if self.feature_layer is None:
            return super().features(x)
        return self.backbone.code(x, self.feature_layer)

    def logits(self, features: torch.Tensor) -> torch.Tensor | None:
        if self.feature_layer is None:
            return super().logits(features)
        return self.backbone.forward_head(self.backbone.forward_from(features, self.feature_layer))

    # -- pretraining ---------------------------------------------------------------------

    def unlabeled_loader(self) -> Iterable:
        """The data module's unlabelled loader, or its training loader (labels ignored)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None:
            raise LabError(
                f"{type(self).__name__} pretrains on a data module's unlabelled (or training) "
                f"images: fit it with a data module (the `data` section of the config)"
            )
        if hasattr(datamodule, "unlabeled_dataloader"):
            return datamodule.unlabeled_dataloader()
        rank_zero_info(
            f"{type(datamodule).__name__} has no unlabelled split: pretraining on its "
            f"training images, labels ignored"
        )
        return datamodule.train_dataloader()

    def _stage_inputs(
        self, loader: Iterable, layer: int, max_batches: int | None
    ) -> Callable[[], Iterator[torch.Tensor]]:
        """Batches of the code of the first ``layer - 1`` (frozen) hidden layers."""

        def batches() -> Iterator[torch.Tensor]:
            for i, batch in enumerate(loader):
                if max_batches is not None and i >= max_batches:
                    return
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                x = x.to(self.device, dtype=self.dtype, non_blocking=True)
                with torch.no_grad():
                    code = self.backbone.code(x, layer - 1)
                # Yielded outside no_grad: a generator suspended inside it would leave
                # gradients off for the caller's training step.
                yield code

        return batches

    def pretrain_layers(
        self,
        loader: Iterable,
        epochs: int | None = None,
        max_batches: int | None = None,
        log: Callable[[int, int, float], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Greedy layer-wise pretraining of every hidden layer on the images of ``loader``.

        Stage k (1..depth) trains hidden layer k and a new ``Linear(widths[k],
        widths[k-1])`` decoder (not kept) to reconstruct the code of layers 1..k-1 (the
        flattened images for k = 1); the earlier layers are frozen and in eval mode.
        ``log(stage, epoch, loss)`` is called after every epoch. Returns (and keeps in
        ``pretrain_history``) one record per stage: ``stage, in, out, first_loss,
        last_loss, epochs, seconds, losses``.
        """
        epochs = self.pretrain_epochs if epochs is None else epochs
        layers = self.backbone.encoder_layers
        widths = self.backbone.widths
        was_training = self.training
        history = []
        self.backbone.eval()
        try:
            with torch.enable_grad():
                for stage in range(1, len(layers) + 1):
                    layer = layers[stage - 1]
                    decoder = nn.Linear(widths[stage], widths[stage - 1])
                    decoder.to(self.device, dtype=self.dtype)
                    # The stage trains its layer even where a `trainable` policy froze it.
                    frozen = [p for p in layer.parameters() if not p.requires_grad]
                    for p in frozen:
                        p.requires_grad_(True)
                    layer.train()
                    start = time.perf_counter()
                    try:
                        losses = train_autoencoder(
                            layer,
                            decoder,
                            self._stage_inputs(loader, stage, max_batches),
                            epochs,
                            self.pretrain_optimizer,
                            self.noise,
                            None if log is None else lambda e, v, s=stage: log(s, e, v),
                        )
                    finally:
                        layer.eval()
                        for p in frozen:
                            p.requires_grad_(False)
                    seconds = time.perf_counter() - start
                    history.append(
                        {
                            "stage": stage,
                            "in": widths[stage - 1],
                            "out": widths[stage],
                            "first_loss": losses[0],
                            "last_loss": losses[-1],
                            "epochs": len(losses),
                            "seconds": round(seconds, 2),
                            "losses": losses,
                        }
                    )
                    rank_zero_info(
                        f"pretraining stage {stage}/{len(layers)} ({widths[stage - 1]} -> "
                        f"{widths[stage]}): reconstruction loss {losses[0]:.4g} -> "
                        f"{losses[-1]:.4g} in {len(losses)} epochs, {seconds:.1f} s"
                    )
        finally:
            self.train(was_training)
        self.pretrain_history = history
        return history

    def on_fit_start(self) -> None:
        super().on_fit_start()
        trainer = self.trainer
        if not self.pretrain:
            rank_zero_info("model.pretrain=false: the MLP trains from its random initialisation")
            return
        if trainer.ckpt_path is not None or trainer.global_step > 0:
            rank_zero_info(
                "resumed fit: no layer-wise pretraining (the checkpoint has the weights)"
            )
            return
        run_dir = trainer.log_dir  # on every process: it is a collective call under DDP
        epochs, max_batches = self.pretrain_epochs, self.pretrain_batches
        if trainer.fast_dev_run:
            epochs, max_batches = 1, 1

        def log(stage: int, epoch: int, loss: float) -> None:
            for logger in self.loggers:
                logger.log_metrics({f"pretrain/stage{stage}/loss": loss}, step=epoch)

        history = self.pretrain_layers(self.unlabeled_loader(), epochs, max_batches, log)
        if trainer.world_size > 1:
            state = {k: v.cpu() for k, v in self.backbone.encoder_layers.state_dict().items()}
            state = trainer.strategy.broadcast(state, src=0)
            self.backbone.encoder_layers.load_state_dict(state)
        if trainer.is_global_zero:
            write_pretrain_files(history, Path(run_dir) if run_dir else None, trainer)


def write_pretrain_files(history: list[dict[str, Any]], run_dir: Path | None, trainer=None) -> None:
    """``pretrain_stages.csv`` and ``pretrain_loss.png`` in ``run_dir`` (if any), and the
    figure in TensorBoard (if the trainer has it)."""
    plt = pyplot()

    table = pd.DataFrame(history).drop(columns="losses")
    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=120)
    for record in history:
        epochs = range(1, len(record["losses"]) + 1)
        label = f"stage {record['stage']} ({record['in']} -> {record['out']})"
        axes.plot(epochs, record["losses"], marker="o", markersize=3, label=label)
    axes.set_yscale("log")  # the stages' losses differ by orders of magnitude
    axes.set_xlabel("epoch")
    axes.set_ylabel("reconstruction loss (MSE)")
    axes.set_title("Greedy layer-wise pretraining")
    axes.legend(fontsize=8)
    figure.tight_layout()
    with closing_figure(figure):
        if run_dir is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
            buffer = io.StringIO()
            table.to_csv(buffer, index=False, float_format="%.6g")
            atomic_write_text(run_dir / STAGES_FILE, buffer.getvalue())
        experiment = figure_writer(trainer) if trainer is not None else None
        png = run_dir / LOSS_FIGURE if run_dir is not None else None
        publish_figure(figure, png, experiment, "pretrain/loss", 0)
        if run_dir is not None:
            rank_zero_info(f"pretraining: {run_dir / STAGES_FILE}, {png}")
