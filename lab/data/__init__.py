"""One LightningDataModule per dataset, sharing ``LabDataModule`` / ``ImageDataModule``."""

from lab.data.base import LabDataModule, data_root, stratified_split
from lab.data.cifar10 import CIFAR10DataModule
from lab.data.digits import DigitsDataModule
from lab.data.dogs_cats import DogsCatsDataModule
from lab.data.fashion_mnist import FashionMNISTDataModule, MNISTDataModule
from lab.data.image_folder import ImageFolderDataModule
from lab.data.images import ArrayDataset, ImageDataModule
from lab.data.stl10 import STL10DataModule
from lab.data.tiny_imagenet import TinyImageNetDataModule

__all__ = [
    "ArrayDataset",
    "CIFAR10DataModule",
    "DigitsDataModule",
    "DogsCatsDataModule",
    "FashionMNISTDataModule",
    "ImageDataModule",
    "ImageFolderDataModule",
    "LabDataModule",
    "MNISTDataModule",
    "STL10DataModule",
    "TinyImageNetDataModule",
    "data_root",
    "stratified_split",
]
