"""The linear model of softmax and logistic regression (``lab.models.LinearModel``)."""

import pytest
import torch

from lab.errors import LabError
from lab.models import LinearModel


def test_linear_model_sizes_and_errors():
    model = LinearModel(in_channels=3, image_size=32, num_classes=10)
    assert model.num_features == 3072 and model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert sum(p.numel() for p in model.parameters()) == 3072 * 10 + 10
    model.reset_classifier(0)
    assert model(torch.ones(2, 3, 32, 32)).shape == (2, 3072)
    with pytest.raises(LabError, match="in_features=100 but"):
        LinearModel(in_features=100, in_channels=1, image_size=8)
    with pytest.raises(LabError, match="needs in_features"):
        LinearModel()
    with pytest.raises(LabError, match="expects inputs of 3072 values"):
        LinearModel(in_features=3072)(torch.zeros(1, 1, 8, 8))
