"""The three-layer CNN of the optimizer studies (``lab.models.SmallCNN``)."""

import pytest
import torch

from lab.errors import LabError
from lab.models import SmallCNN


def test_small_cnn_shapes_and_parameter_count():
    model = SmallCNN(num_classes=2)
    x = torch.randn(3, 3, 64, 64)
    assert model.forward_trunk(x).shape == (3, 64, 8, 8)  # three 2x2 poolings
    assert model.forward_features(x).shape == (3, 64) and model.num_features == 64
    assert model(x).shape == (3, 2)
    # conv 3->16, 16->32, 32->64 (3x3, bias) and a 64->2 classifier
    expected = (3 * 16 * 9 + 16) + (16 * 32 * 9 + 32) + (32 * 64 * 9 + 64) + (64 * 2 + 2)
    assert sum(p.numel() for p in model.parameters()) == expected
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    # Any input size (global average pooling); batch size 1 works, as vanilla SGD needs.
    assert model(torch.randn(1, 3, 40, 40)).shape == (1, 2)


def test_small_cnn_options_and_errors():
    model = SmallCNN(in_channels=1, channels=[8, 8, 8, 12], batch_norm=True, kernel_size=5)
    assert model.num_features == 12 and model.num_classes == 0
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 4
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 12)  # no classifier: features
    model.reset_classifier(7)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 7)
    with pytest.raises(LabError, match="odd"):
        SmallCNN(kernel_size=4)
    with pytest.raises(LabError, match="positive"):
        SmallCNN(channels=[])


def test_small_cnn_blocks_of_several_convolutions():
    model = SmallCNN(in_channels=1, channels=[4, [6, 8]], batch_norm=True, num_classes=3)
    convs = [m for m in model.body if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(1, 4), (4, 6), (6, 8)]
    assert all(c.bias is None for c in convs)  # BatchNorm follows: no bias
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in model.body) == 2  # one per block
    assert model.forward_trunk(torch.randn(2, 1, 28, 28)).shape == (2, 8, 7, 7)
    with pytest.raises(LabError, match="positive widths"):
        SmallCNN(channels=[8, []])


def test_small_cnn_embedding_and_weights_from_a_checkpoint(tmp_path):
    trained = SmallCNN(in_channels=1, channels=[4, [6, 8]], batch_norm=True, num_classes=10)
    torch.nn.init.normal_(trained.body[0].weight)
    # A lab checkpoint holds the task's state dict: the backbone's weights under backbone.
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in trained.state_dict().items()}},
               tmp_path / "last.ckpt")  # fmt: skip
    model = SmallCNN(
        in_channels=1, channels=[4, [6, 8]], batch_norm=True, num_classes=3,
        embedding_dim=5, normalize_embedding=True, weights=str(tmp_path / "last.ckpt"),
    )  # fmt: skip
    assert torch.equal(model.body[0].weight, trained.body[0].weight)
    assert model.num_features == 5 and model.fc.out_features == 3  # new head, not loaded
    features = model.forward_features(torch.randn(4, 1, 16, 16))
    assert torch.allclose(features.norm(dim=1), torch.ones(4))
    with pytest.raises(LabError, match="same channels"):
        SmallCNN(in_channels=1, channels=[4, [6, 9]], batch_norm=True,
                 weights=str(tmp_path / "last.ckpt"))  # fmt: skip
