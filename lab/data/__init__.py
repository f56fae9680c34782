"""One LightningDataModule per dataset, sharing ``LabDataModule``."""

from lab.data.base import LabDataModule, data_root, stratified_split
from lab.data.digits import DigitsDataModule

__all__ = ["DigitsDataModule", "LabDataModule", "data_root", "stratified_split"]
