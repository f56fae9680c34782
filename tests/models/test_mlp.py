"""The MLP built for layer-wise pretraining (``lab.models.MLP``): codes of every layer
and the backbone API."""

import pytest
import torch

from lab.errors import LabError
from lab.models import MLP


def test_mlp_codes_and_the_backbone_api():
    torch.manual_seed(0)
    model = MLP([6, 5, 4], in_channels=1, image_size=3, num_classes=2, batch_norm=True)
    model.eval()
    x = torch.randn(7, 1, 3, 3)
    assert model.widths == [9, 6, 5, 4] and model.num_features == 4 and model.depth == 3
    assert [model.code(x, k).shape[1] for k in range(4)] == [9, 6, 5, 4]
    torch.testing.assert_close(model.code(x, 0), x.flatten(1))
    manual = x.flatten(1)
    for block in model.encoder_layers:
        manual = block(manual)
    for k in range(4):
        torch.testing.assert_close(model.forward_from(model.code(x, k), k), manual)
    torch.testing.assert_close(model(x), model.fc(manual))
    model.reset_classifier(0)
    assert model(x).shape == (7, 4)
    with pytest.raises(LabError, match="expects inputs of 9 values"):
        model(torch.randn(2, 3, 3, 3))
    with pytest.raises(LabError, match=r"layers 0\.\.3"):
        model.code(x, 4)
    with pytest.raises(LabError, match="in_features=10 but"):
        MLP([4], in_features=10, in_channels=1, image_size=3)
