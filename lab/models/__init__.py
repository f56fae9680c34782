"""Plain ``nn.Module`` backbones and heads; no training logic lives here."""

from lab.models.cnn import SmallCNN
from lab.models.linear import LinearModel
from lab.models.mlp import MLP
from lab.models.resnet import ResNet, resnet18, resnet50
from lab.models.vgg import VGG, vgg16_bn

__all__ = ["MLP", "VGG", "LinearModel", "ResNet", "SmallCNN", "resnet18", "resnet50", "vgg16_bn"]
