"""``ActivationMaps``: the maps of the named layers, equal to the layers' outputs."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

from lab.callbacks.activations import ActivationMaps, as_maps, plot_activations
from lab.errors import LabError
from tests.callbacks import PNG, Data, classifier, quiet_trainer

# -- activation maps -----------------------------------------------------------------------


def test_activation_maps_written_for_each_layer_and_equal_to_the_layers_outputs(tmp_path: Path):
    layers = ["backbone.conv1", "backbone.layer1", "backbone.fc"]
    callback = ActivationMaps(layers, num_images=3, max_channels=5)
    trainer = quiet_trainer(tmp_path, [callback])
    model = classifier(num_classes=3)
    data = Data()
    trainer.test(model, datamodule=data, verbose=False)
    run = Path(trainer.log_dir)
    for layer in layers:
        assert (run / f"activations_{layer}.png").read_bytes()[:8] == PNG
    assert not list(run.glob(".*.tmp"))

    # The hooks see what the layers give, for the first images of the first batch.
    images = data.x[:3]
    model.train()
    found = callback.activations(trainer, model, images)
    assert all(m.training for m in model.modules())  # modes restored
    model.eval()
    with torch.no_grad():
        conv1 = model.backbone.conv1(images)
        layer1 = model.backbone.layer1(model.backbone.relu(model.backbone.bn1(conv1)))
        logits = model(images)
    assert torch.allclose(found["backbone.conv1"], conv1)
    assert torch.allclose(found["backbone.layer1"], layer1, atol=1e-6)
    assert torch.allclose(found["backbone.fc"], logits, atol=1e-6)


def test_activation_figure_has_a_row_per_image_and_input_plus_max_channels_columns():
    images = torch.randn(2, 3, 8, 8)
    maps = torch.randn(2, 40, 4, 4)
    figure = plot_activations(images, maps, "x", max_channels=6)
    (mosaic,) = (np.asarray(image.get_array()) for image in figure.axes[0].images)
    step = 32 + 2  # tiles of 32 pixels, 2 apart
    assert mosaic.shape == (2 * step - 2, 7 * step - 2, 3)  # a row per image, input + 6 maps
    labels = [text.get_text() for text in figure.axes[0].texts]
    assert labels == ["input", *(f"ch {k}" for k in range(6))]
    # the second row's third map, each map rescaled to [0, 1] on its own, in viridis
    tile = mosaic[step : step + 32, 3 * step : 3 * step + 32]
    expected = maps[1, 2].numpy()
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    viridis = matplotlib.colormaps["viridis"](expected)[..., :3]
    assert np.allclose(tile[::8, ::8], viridis)  # 4x4 maps drawn 8 pixels a cell
    first = mosaic[:32, :32]  # the RGB input, rescaled to [0, 1]
    assert first.min() == 0.0 and first.max() == pytest.approx(1.0)
    assert as_maps(torch.zeros(2, 5)).shape == (2, 1, 1, 5)
    assert as_maps(torch.zeros(2, 4, 7)).shape == (2, 4, 1, 7)


def test_unknown_layer_is_refused_before_training(tmp_path: Path):
    model = classifier(num_classes=3)
    before = [p.detach().clone() for p in model.parameters()]
    callback = ActivationMaps(["backbone.layer9"])
    trainer = quiet_trainer(tmp_path, [callback], max_epochs=1, limit_train_batches=2)
    with pytest.raises(LabError, match=r"'backbone.layer9'.*backbone\.layer1"):
        trainer.fit(model, datamodule=Data())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_activation_maps_at_the_end_of_fit(tmp_path: Path):
    callback = ActivationMaps(["backbone.layer2"], num_images=2, stage="fit")
    trainer = quiet_trainer(
        tmp_path, [callback], max_epochs=1, limit_train_batches=2, limit_val_batches=1
    )
    trainer.fit(classifier(num_classes=3), datamodule=Data())
    assert (Path(trainer.log_dir) / "activations_backbone.layer2.png").read_bytes()[:8] == PNG


@pytest.mark.parametrize(
    "kwargs",
    [{"layers": []}, {"num_images": 0}, {"max_channels": 0}, {"stage": "val"}],
)
def test_bad_activation_settings_are_refused(kwargs):
    with pytest.raises(LabError, match="ActivationMaps"):
        ActivationMaps(**{"layers": ["backbone.conv1"], **kwargs})
