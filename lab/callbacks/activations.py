"""Feature maps of chosen layers for a few fixed images: ``activations_<layer>.png`` in
the run folder and the same figures in TensorBoard.

A layer is named as in ``pl_module.named_modules()`` (``backbone.conv1``,
``backbone.layer1``, ``backbone.layer2.0.conv1``, ...); the file keeps the dots of the name
(``activations_backbone.layer1.png``), so a name maps back to exactly one layer.
"""

from __future__ import annotations

import difflib
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn

from lab.callbacks.batches import BatchEnd, BatchEndCallback
from lab.callbacks.figures import figure_writer
from lab.callbacks.figures import run_dir as run_folder
from lab.errors import LabError
from lab.plots import closing_figure, publish_figure, pyplot


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    return None


def _images_of(batch: Any) -> torch.Tensor | None:
    """The images ``(B, C, H, W)`` of a batch that is a tensor or ``(images, targets, ...)``."""
    images = _first_tensor(batch)
    if images is None or images.ndim != 4 or not images.is_floating_point():
        return None
    return images


def _rescale(x: np.ndarray) -> np.ndarray:
    """``x`` mapped to [0, 1] by its own minimum and maximum (a constant map gives 0)."""
    low, high = float(np.min(x)), float(np.max(x))
    return (x - low) / (high - low) if high > low else np.zeros_like(x)


def as_maps(activation: torch.Tensor) -> torch.Tensor:
    """A layer's output as ``(B, channels, H, W)``: a 4-D output as it is, a sequence
    ``(B, C, L)`` as ``C`` maps of one row, a vector ``(B, D)`` as one map of one row."""
    if activation.ndim == 4:
        return activation
    if activation.ndim == 3:
        return activation.unsqueeze(2)
    if activation.ndim == 2:
        return activation[:, None, None, :]
    raise LabError(
        f"expected a layer output of 2 to 4 dimensions, got shape {tuple(activation.shape)}"
    )


# Each tile of the mosaic is drawn at least this many pixels a side (nearest neighbour), so
# that 1x1 or 4x4 maps stay visible; the gap between tiles is white.
_TILE = 32
_GAP = 2


def _tile(x: np.ndarray, size: int) -> np.ndarray:
    """``x`` (H, W[, 3]) resized to ``size`` x ``size`` by nearest neighbour (a map of one
    row is stretched, as ``aspect="auto"`` would)."""
    rows = np.arange(size) * x.shape[0] // size
    columns = np.arange(size) * x.shape[1] // size
    return x[rows][:, columns]


def activation_mosaic(images: torch.Tensor, maps: torch.Tensor, channels: int) -> np.ndarray:
    """The RGB mosaic (rows x (1 + channels) tiles) of :func:`plot_activations`: per row the
    input image rescaled to [0, 1] (RGB if it has 3 channels, else its first channel in
    grey), then the first ``channels`` maps, each rescaled to its own min/max, in viridis."""
    from matplotlib import colormaps  # matplotlib only once a figure is drawn

    viridis = colormaps["viridis"]
    rows = min(len(images), len(maps))
    size = max(_TILE, *images.shape[-2:], *maps.shape[-2:])
    step = size + _GAP
    canvas = np.ones((rows * step - _GAP, (channels + 1) * step - _GAP, 3))
    for r in range(rows):
        image = images[r].numpy()
        rgb = image.transpose(1, 2, 0) if image.shape[0] == 3 else image[0][..., None]
        tiles = [np.broadcast_to(_rescale(rgb), (*rgb.shape[:2], 3))]
        tiles += [viridis(_rescale(maps[r, k].numpy()))[..., :3] for k in range(channels)]
        for c, tile in enumerate(tiles):
            canvas[r * step : r * step + size, c * step : c * step + size] = _tile(tile, size)
    return canvas


def plot_activations(
    images: torch.Tensor, activation: torch.Tensor, layer: str, max_channels: int = 16
):
    """A grid with one row per image: the input image, then the first ``max_channels``
    feature maps of ``activation`` (see :func:`as_maps`; :func:`activation_mosaic` says
    how each is scaled). One image on one axes: drawing a figure of 70 small axes took
    seconds per layer."""
    plt = pyplot()
    maps = as_maps(activation.detach().float().cpu())
    images = images.detach().float().cpu()
    rows = min(len(images), len(maps))
    channels = min(maps.shape[1], max_channels)
    columns = channels + 1
    mosaic = activation_mosaic(images, maps, channels)
    figure, axes = plt.subplots(figsize=(1.3 * columns, 1.3 * rows + 0.6), dpi=100)
    axes.imshow(mosaic, interpolation="nearest")
    axes.set_axis_off()
    step = mosaic.shape[1] / columns
    labels = ["input", *(f"ch {k}" for k in range(channels))]
    for c, label in enumerate(labels):
        axes.text((c + 0.5) * step, -2, label, ha="center", va="bottom", fontsize=8)
    if activation.ndim == 2:
        title = f"{layer}: {activation.shape[1]} values, drawn as one row"
    else:
        shape = "x".join(str(s) for s in activation.shape[1:])
        title = f"{layer}: {shape} (first {channels} channels)"
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


class ActivationMaps(BatchEndCallback):
    """Draws the feature maps of ``layers`` for the first ``num_images`` images of a batch.

    With ``stage="test"`` the images are the first test batch's and the maps are drawn at
    the end of testing; with ``stage="fit"`` they are the first validation batch's (the
    first training batch's if there is no validation) and the maps are drawn at the end of
    fitting. The model runs once more on those images, in eval mode and without
    gradients; each layer gives ``activations_<layer>.png`` in the run folder (dots kept)
    and the figure ``<stage>/activations/<layer>`` in TensorBoard.

    Args:
        layers: module names as in ``pl_module.named_modules()``, e.g. ``backbone.layer1``;
            an unknown name is refused when the Trainer sets up, before anything runs.
        num_images: how many images (rows).
        max_channels: at most this many feature maps per image (the first ones).
        stage: ``test`` (at the end of testing) or ``fit`` (at the end of fitting).
        image_indices: with ``stage="test"``, draw these images of the test split (by
            index, e.g. a ship and a cat of CIFAR-10) instead of the first batch's.
    """

    def __init__(
        self,
        layers: list[str],
        num_images: int = 4,
        max_channels: int = 16,
        stage: Literal["test", "fit"] = "test",
        image_indices: list[int] | None = None,
    ) -> None:
        if isinstance(layers, str):
            layers = [layers]
        if not layers:
            raise LabError(
                "ActivationMaps.layers must name at least one layer, e.g. [backbone.layer1]"
            )
        if num_images < 1:
            raise LabError(f"ActivationMaps.num_images must be at least 1, got {num_images}")
        if max_channels < 1:
            raise LabError(f"ActivationMaps.max_channels must be at least 1, got {max_channels}")
        if stage not in ("test", "fit"):
            raise LabError(f"ActivationMaps.stage must be 'test' or 'fit', got {stage!r}")
        self.layers = list(layers)
        self.num_images = num_images
        self.max_channels = max_channels
        self.stage = stage
        if image_indices is not None and stage != "test":
            raise LabError("ActivationMaps.image_indices goes with stage='test'")
        if image_indices is not None and (not image_indices or min(image_indices) < 0):
            raise LabError(
                f"ActivationMaps.image_indices must be test-split indices >= 0, got {image_indices}"
            )
        self.image_indices = list(image_indices) if image_indices is not None else None
        self._images: torch.Tensor | None = None
        self._train_images: torch.Tensor | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        names = [name for name, _ in pl_module.named_modules() if name]
        known = set(names)
        for layer in self.layers:
            if layer not in known:
                near = difflib.get_close_matches(layer, names, n=5, cutoff=0.5)
                shown = ", ".join(near or names[:8])
                raise LabError(
                    f"ActivationMaps: {type(pl_module).__name__} has no layer {layer!r}; give a "
                    f"name from named_modules(), e.g. {shown}"
                )
        if self.image_indices is not None and stage == "test":
            test_set = getattr(trainer.datamodule, "test_set", None)
            if test_set is None:
                raise LabError("ActivationMaps.image_indices needs a data module with a test_set")
            if max(self.image_indices) >= len(test_set):
                raise LabError(
                    f"ActivationMaps.image_indices {self.image_indices}: the test split has "
                    f"{len(test_set)} images (indices 0 to {len(test_set) - 1})"
                )

    # -- keeping the images --------------------------------------------------------------

    def _keep(self, batch: Any) -> torch.Tensor | None:
        images = _images_of(batch)
        if images is None:
            rank_zero_warn(
                "ActivationMaps needs batches of images (B, C, H, W) or (images, targets); "
                "no activation maps"
            )
            return None
        return images[: self.num_images].detach().cpu().clone()

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.stage == "test":
            self._images = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.stage == "fit":
            self._images = self._train_images = None

    def on_batch(self, trainer: L.Trainer, end: BatchEnd) -> None:
        if self.stage == "test" and end.stage == "test" and end.first:
            if self._images is None:
                self._images = self._keep(end.batch)
        elif self.stage == "fit" and end.stage == "val" and trainer.state.fn == "fit":
            if self._images is None and end.first:
                self._images = self._keep(end.batch)
        elif self.stage == "fit" and end.stage == "train":
            if self._train_images is None and end.batch_idx == 0:
                self._train_images = self._keep(end.batch)

    # -- drawing -------------------------------------------------------------------------

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.stage == "test":
            images = self._images
            if self.image_indices is not None:
                test_set = trainer.datamodule.test_set
                images = torch.stack([test_set[i][0] for i in self.image_indices])
            self._draw(trainer, pl_module, images)
            self._images = None

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.stage == "fit":
            images = self._images if self._images is not None else self._train_images
            self._draw(trainer, pl_module, images)
            self._images = self._train_images = None

    def activations(
        self, trainer: L.Trainer, pl_module: L.LightningModule, images: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Each layer's output for ``images`` (on the CPU, float), from one forward pass of
        ``pl_module`` in eval mode without gradients; the modules' modes are restored."""
        modules = dict(pl_module.named_modules())
        found: dict[str, torch.Tensor] = {}

        def hook_for(name: str):
            def hook(module: nn.Module, args: Any, output: Any) -> None:
                tensor = _first_tensor(output)
                if tensor is not None and name not in found:  # first call of a shared layer
                    found[name] = tensor.detach().float().cpu()

            return hook

        handles = [modules[name].register_forward_hook(hook_for(name)) for name in self.layers]
        modes = {module: module.training for module in pl_module.modules()}
        try:
            pl_module.eval()
            x = trainer.precision_plugin.convert_input(images.to(pl_module.device))
            with torch.no_grad(), trainer.precision_plugin.forward_context():
                pl_module(x)
        finally:
            for handle in handles:
                handle.remove()
            for module, training in modes.items():
                module.training = training
        return found

    def _draw(
        self, trainer: L.Trainer, pl_module: L.LightningModule, images: torch.Tensor | None
    ) -> None:
        if images is None or not trainer.is_global_zero:
            return
        found = self.activations(trainer, pl_module, images)
        run_dir = run_folder(trainer)
        writer = figure_writer(trainer)
        for layer in self.layers:
            if layer not in found:
                rank_zero_warn(f"ActivationMaps: layer {layer!r} was not called by forward()")
                continue
            if not 2 <= found[layer].ndim <= 4:
                rank_zero_warn(
                    f"ActivationMaps: layer {layer!r} gives shape {tuple(found[layer].shape)}, "
                    "not 2 to 4 dimensions; no figure"
                )
                continue
            figure = plot_activations(images, found[layer], layer, self.max_channels)
            with closing_figure(figure):
                publish_figure(
                    figure,
                    run_dir / f"activations_{layer}.png" if run_dir is not None else None,
                    writer,
                    f"{self.stage}/activations/{layer}",
                    trainer.global_step,
                )
        if run_dir is not None:
            rank_zero_info(f"activation maps of {len(self.layers)} layer(s) in {run_dir}")
