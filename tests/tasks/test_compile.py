"""``compile: true``: the feature path is compiled without storing a compiled function
that a deep copy (EMA, SWA) or a pickle would carry along with the original's weights."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

from lab.models import MLP
from lab.tasks import Classifier


@pytest.fixture
def compiled(monkeypatch) -> Classifier:
    monkeypatch.setattr(Classifier, "compile_options", {"backend": "eager"})
    torch.manual_seed(0)
    model = Classifier(MLP(hidden=[16], in_channels=1, image_size=8), num_classes=3, compile=True)
    model.configure_model()
    return model.eval()


def test_the_features_go_through_the_compiled_module(compiled):
    assert compiled.__dict__["_compiled_features"]._compiled_call_impl is not None
    x = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(compiled.features(x), compiled.backbone.forward_features(x))


def test_a_deep_copy_runs_its_own_weights(compiled):
    x = torch.randn(4, 1, 8, 8)
    before = compiled(x).detach()
    twin = copy.deepcopy(compiled)
    with torch.no_grad():
        for p in twin.backbone.parameters():
            p.mul_(2.0)
    torch.testing.assert_close(twin.features(x), twin.backbone.forward_features(x))
    assert not torch.allclose(twin(x), before)
    torch.testing.assert_close(compiled(x), before)  # the original is untouched


def test_the_task_pickles_and_keeps_its_checkpoint_keys(compiled):
    restored = pickle.loads(pickle.dumps(compiled))
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(restored(x), compiled(x))
    torch.manual_seed(0)
    plain = Classifier(MLP(hidden=[16], in_channels=1, image_size=8), num_classes=3)
    assert list(compiled.state_dict()) == list(plain.state_dict())
