"""The pooled backbones (ResNet, VGG): shapes, the head, torchvision parity, weights."""

import pytest
import torch
import torchvision
from torchvision.models._api import WeightsEnum

from lab.errors import LabError
from lab.models import VGG, ResNet, resnet18, resnet50


@pytest.mark.parametrize("size", [8, 32, 64, 96])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("depth,width", [(18, 512), (50, 2048)])
def test_shapes_for_every_input_size_and_channel_count(size, channels, depth, width):
    model = ResNet(depth=depth, num_classes=7, in_channels=channels, small_input=size <= 64)
    model.eval()
    x = torch.randn(2, channels, size, size)
    with torch.no_grad():
        assert model.forward_features(x).shape == (2, width)
        assert model(x).shape == (2, 7)
    assert model.num_features == width


def test_standard_stem_downsamples_and_small_stem_does_not():
    x = torch.randn(1, 3, 64, 64)
    standard, small = ResNet(depth=18), ResNet(depth=18, small_input=True)
    assert standard.forward_trunk(x).shape[-1] == 2  # /32
    assert small.forward_trunk(x).shape[-1] == 8  # /8


@pytest.mark.parametrize("depth", [18, 50])
def test_logits_equal_torchvisions_resnet_with_the_same_weights(depth):
    """Our trunk, pooling and classifier compute what torchvision's ResNet computes."""
    torch.manual_seed(0)
    model = ResNet(depth=depth, num_classes=5).eval()
    reference = getattr(torchvision.models, f"resnet{depth}")(num_classes=5).eval()
    reference.load_state_dict(model.state_dict())  # the same names: conv1 ... layer4, fc
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))


def test_embedding_layer_sets_feature_size_and_can_normalise():
    model = resnet50(embedding_dim=64, normalize_embedding=True, small_input=True).eval()
    with torch.no_grad():
        features = model.forward_features(torch.randn(4, 3, 32, 32))
    assert features.shape == (4, 64)
    torch.testing.assert_close(features.norm(dim=1), torch.ones(4))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 64)  # no classifier: features


def test_reset_classifier_replaces_the_head():
    model = resnet18(num_classes=10)
    model.reset_classifier(3)
    assert model.fc.out_features == 3 and model.num_classes == 3
    model.reset_classifier(0)
    assert isinstance(model.fc, torch.nn.Identity)


def test_torchvision_module_names_are_kept():
    names = {name for name, _ in resnet18().named_children()}
    assert {"conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"} <= names


def test_parameter_count_matches_torchvision():
    ours = sum(p.numel() for p in resnet50(num_classes=1000).parameters())
    theirs = sum(p.numel() for p in torchvision.models.resnet50().parameters())
    assert ours == theirs


@pytest.mark.parametrize("kwargs", [{"depth": 101}, {"in_channels": 2}], ids=str)
def test_bad_arguments_are_rejected(kwargs):
    with pytest.raises(ValueError):
        ResNet(**kwargs)


@pytest.mark.parametrize("backbone", [ResNet, VGG])
@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"num_classes": -1}, "num_classes must be >= 0"),
        ({"embedding_dim": 0}, "embedding_dim must be >= 1 or null"),
        ({"dropout": 1.0}, "dropout must be in"),
        ({"head_hidden": [64, 0]}, "head_hidden must be positive"),
    ],
    ids=str,
)
def test_bad_head_settings_are_one_line_errors_for_every_pooled_backbone(backbone, kwargs, message):
    with pytest.raises(LabError, match=message):
        backbone(**kwargs)


@pytest.mark.parametrize("backbone", [ResNet, VGG])
def test_every_pooled_backbone_has_the_same_head(backbone):
    """Embedding, normalisation, MLP head with dropout: the layers and the feature API."""
    model = backbone(
        num_classes=5, embedding_dim=16, normalize_embedding=True, head_hidden=[8], dropout=0.5
    ).eval()
    x = torch.randn(3, 3, 32, 32)
    features = model.forward_features(x)
    assert features.shape == (3, 16) and model.num_features == 16
    assert torch.allclose(features.norm(dim=1), torch.ones(3))
    pooled = model.forward_trunk(x).mean(dim=(2, 3))
    expected = torch.nn.functional.normalize(model.embedding(pooled), dim=1)
    assert torch.allclose(features, expected)
    assert [type(m).__name__ for m in model.fc] == ["Linear", "ReLU", "Dropout", "Linear"]
    first, last = model.fc[0], model.fc[3]  # dropout is off in eval mode
    torch.testing.assert_close(model(x), last(first(features).relu()))
    model.reset_classifier(0)
    assert torch.equal(model(x), features)


def _torchvision_state(depth: int = 18) -> dict[str, torch.Tensor]:
    torch.manual_seed(123)
    return getattr(torchvision.models, f"resnet{depth}")(weights=None).state_dict()


def test_pretrained_weights_are_loaded_into_the_trunk(monkeypatch):
    state = _torchvision_state()
    monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda self, **kw: state)
    rgb = ResNet(depth=18, weights="IMAGENET1K_V1", num_classes=7)
    torch.testing.assert_close(rgb.conv1.weight, state["conv1.weight"])
    torch.testing.assert_close(rgb.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    torch.testing.assert_close(rgb.bn1.running_mean, state["bn1.running_mean"])
    assert rgb.fc.out_features == 7  # the 1000-way ImageNet classifier is not taken

    grey = ResNet(depth=18, in_channels=1, weights="DEFAULT")
    torch.testing.assert_close(grey.conv1.weight, state["conv1.weight"].sum(1, keepdim=True))

    small = ResNet(depth=18, small_input=True, weights="IMAGENET1K_V1")
    assert small.conv1.weight.shape == (64, 3, 3, 3)  # a fresh stem, the rest pretrained
    torch.testing.assert_close(small.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])


def test_unknown_weights_are_a_clear_error():
    with pytest.raises(LabError, match="IMAGENET1K_V2.*expected one of"):
        ResNet(depth=18, weights="IMAGENET1K_V2")


def test_a_corrupt_cached_weight_file_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    cached = tmp_path / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not a checkpoint")
    with pytest.raises(LabError, match="could not load ResNet18_Weights.IMAGENET1K_V1"):
        ResNet(depth=18, weights="IMAGENET1K_V1")


@pytest.mark.parametrize("weights", [None, "None", "null", ""])
def test_no_weights_in_any_spelling_loads_nothing(weights, monkeypatch):
    def refuse(self, **kwargs):
        raise AssertionError("no weights should be loaded")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", refuse)
    assert ResNet(depth=18, weights=weights).weights is None
