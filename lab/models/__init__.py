"""Plain ``nn.Module`` backbones and heads; no training logic lives here."""

from lab.models.cnn import SmallCNN
from lab.models.linear import LinearModel
from lab.models.resnet import ResNet, resnet18, resnet50

__all__ = ["LinearModel", "ResNet", "SmallCNN", "resnet18", "resnet50"]
