"""Plain ``nn.Module`` backbones and heads; no training logic lives here."""

from lab.models.resnet import ResNet, resnet18, resnet50

__all__ = ["ResNet", "resnet18", "resnet50"]
