"""P x K batches on the device-resident path, and its host memory when loading a split.

With ``data.device_data`` and ``pk_classes``/``pk_samples`` the training loader must give
exactly the batches of the DataLoader path (``PKBatchSampler``, same seed): P classes x K
images each, the same images, epoch after epoch; shards of a distributed run are that
sampler's disjoint shares. Loading a split onto the device writes it chunk by chunk into
one tensor, so the host never holds a second full-size copy (measured in a subprocess by
its peak resident memory).
"""

import subprocess
import sys
import textwrap
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch.utils.data import TensorDataset

from lab.data.base import LabDataModule
from lab.data.device_loader import DeviceBatchLoader
from lab.data.images import ImageDataModule
from lab.data.samplers import PKBatchSampler
from tests.conftest import REPO


class Numbered(ImageDataModule):
    """Images whose every pixel is the image's own index (uneven classes of 6 to 13)."""

    dataset_name = "cifar10"

    def __init__(self, **kwargs) -> None:
        super().__init__(val_fraction=0.2, normalization="none", **kwargs)
        self.labels = np.repeat(np.arange(6), [6, 8, 10, 13, 9, 12])
        self.num_classes = 6
        self.class_names = [str(c) for c in range(6)]

    def load_split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.labels)
        images = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 4, 4, 3))
        return np.ascontiguousarray(images), self.labels


def batches(loader) -> list[tuple[list[int], list[int]]]:
    """(image indices, labels) of every batch of one pass."""
    return [(torch.round(x[:, 0, 0, 0] * 255).long().tolist(), y.tolist()) for x, y in loader]


def fake_trainer(rank: int, world_size: int, distributed: bool = True) -> SimpleNamespace:
    return SimpleNamespace(
        world_size=world_size,
        global_rank=rank,
        state=SimpleNamespace(fn=TrainerFn.FITTING),
        strategy=SimpleNamespace(root_device=torch.device("cpu")),
        _accelerator_connector=SimpleNamespace(use_distributed_sampler=distributed),
    )


@pytest.mark.parametrize("p,k", [(3, 2), (4, 3), (2, 4)])
def test_device_pk_batches_are_the_dataloader_paths_batches(p, k):
    options = {"pk_classes": p, "pk_samples": k, "seed": 3}
    ordinary, device = Numbered(**options), Numbered(device_data=True, **options)
    ordinary.setup("fit")
    device.setup("fit")
    loader = device.train_dataloader()
    assert isinstance(loader, DeviceBatchLoader)
    labels_of = device.labels
    seen = []
    for epoch in range(3):
        ordinary_loader = ordinary.train_dataloader()
        ordinary_loader.batch_sampler.set_epoch(epoch)
        loader.sampler.set_epoch(epoch)  # what Lightning calls every epoch
        got = batches(loader)
        assert got == batches(ordinary_loader)
        assert len(got) == len(loader) > 0
        for indices, labels in got:
            counts = Counter(labels)
            assert len(counts) == p and set(counts.values()) == {k}
            assert [int(labels_of[i]) for i in indices] == labels
        seen.append(got)
    assert seen[0] != seen[1]  # a new draw every epoch
    # The evaluation loaders ignore P x K.
    assert sum(len(y) for _, y in device.val_dataloader()) == len(device.val_set)


def test_same_multiset_of_shapes_and_class_counts_as_the_sampler_on_float_data():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 300)
    images = torch.from_numpy(rng.normal(size=(300, 1, 2, 2)).astype(np.float32))
    loader = DeviceBatchLoader(images, torch.from_numpy(labels), batch_size=1, pk=(5, 3), seed=9)
    sampler = PKBatchSampler(labels, 5, 3, seed=9)

    def profile(rows):
        return Counter((len(r), tuple(sorted(Counter(r).values()))) for r in rows)

    device_rows = [y.tolist() for _, y in loader]
    assert profile(device_rows) == profile([labels[b].tolist() for b in sampler])
    assert profile(device_rows) == Counter({(15, (3, 3, 3, 3, 3)): len(sampler)})


def test_two_ranks_get_the_samplers_disjoint_shares():
    dm = Numbered(device_data=True, pk_classes=3, pk_samples=2, seed=1)
    dm.setup("fit")
    shares = []
    for rank in range(2):
        # Sharded whatever use_distributed_sampler says: P x K batches split themselves.
        dm.trainer = fake_trainer(rank, 2, distributed=rank == 0)
        shares.append(batches(dm.train_dataloader()))
    dm.trainer = None
    whole = batches(dm.train_dataloader())
    assert len(shares[0]) == len(shares[1]) > 0
    assert shares[0] == whole[0::2] and shares[1] == whole[1::2]
    assert not {tuple(b) for b, _ in shares[0]} & {tuple(b) for b, _ in shares[1]}


def test_a_tensor_dataset_goes_to_the_cpu_without_a_copy():
    images, labels = torch.rand(10, 1, 4, 4), torch.arange(10)
    out_images, out_labels = LabDataModule().device_tensors(TensorDataset(images, labels), "cpu")
    assert out_images.data_ptr() == images.data_ptr()
    assert out_labels.data_ptr() == labels.data_ptr()


PEAK_SCRIPT = """
import resource, numpy as np, torch
from lab.data.images import ArrayDataset, ImageDataModule

class Big(ImageDataModule):
    dataset_name = "cifar10"

def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

n = 40_000
pixels = np.full((n, 32, 32, 3), 7, np.uint8)  # 117 MiB, every page touched
dataset = ArrayDataset(pixels, np.arange(n) % 10, np.arange(n))
dm = Big(normalization="none")
torch.empty(1, dtype=torch.uint8).fill_(1)
before = peak_mib()
images, labels = dm.device_tensors(dataset, "cpu")
assert images.shape == (n, 3, 32, 32) and int(images[-1, 2, 31, 31]) == 7
print(peak_mib() - before, pixels.nbytes / 2**20)
"""


def test_loading_a_split_holds_no_second_full_size_host_copy():
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PEAK_SCRIPT)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    grown, split = map(float, out.split())
    # The device tensor itself (one split) plus a chunk or two; the old code's list of
    # chunks and their torch.cat grew the peak by two splits.
    assert grown < 1.4 * split, (grown, split)
