"""One LightningDataModule per dataset, sharing ``LabDataModule`` / ``ImageDataModule``."""

from lab.data.base import LabDataModule, data_root, stratified_split
from lab.data.digits import DigitsDataModule
from lab.data.dogs_cats import DogsCatsDataModule
from lab.data.images import ArrayDataset, ImageDataModule

__all__ = [
    "ArrayDataset",
    "DigitsDataModule",
    "DogsCatsDataModule",
    "ImageDataModule",
    "LabDataModule",
    "data_root",
    "stratified_split",
]
