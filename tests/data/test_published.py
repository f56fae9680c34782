"""The data sets torchvision downloads as one checksummed archive (CIFAR-10, STL-10): a
missing folder says how to get it, and ``verify`` names the first file that is not the
published one (the fixtures never are)."""

import re

import pytest

from lab.data import CIFAR10DataModule, STL10DataModule
from lab.data.fakes.cifar10 import write_cifar10
from lab.data.fakes.stl10 import write_stl10
from lab.errors import LabError

PUBLISHED = {
    "cifar10": (CIFAR10DataModule, write_cifar10, r"cifar-10-batches-py[/\\]data_batch_1"),
    "stl10": (STL10DataModule, write_stl10, r"stl10_binary[/\\]train_X.bin"),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_a_missing_folder_names_the_path_and_how_to_get_it(tmp_path, name):
    module, _, first_file = PUBLISHED[name]
    folder = first_file.split("[")[0]
    with pytest.raises(LabError, match=rf"{folder}.*download=true.*unpack .*tar.gz"):
        module(root=str(tmp_path / "empty")).setup()


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_verify_names_the_first_mismatching_file(tmp_path, name):
    module, write, first_file = PUBLISHED[name]
    write(tmp_path)
    with pytest.raises(LabError) as error:
        module(root=str(tmp_path), verify=True).setup()
    message = str(error.value)
    assert re.search(rf"{first_file} does not match the md5", message)
    assert "\n" not in message and "data.verify=false" in message
