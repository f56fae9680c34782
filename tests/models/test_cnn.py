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
