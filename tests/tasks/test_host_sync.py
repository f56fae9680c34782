"""No host-device synchronisation from lab's own code during a training step.

``Tensor.item``, ``__float__``, ``__bool__``, ``tolist`` and ``cpu`` each wait for the
device (on a GPU: the queue stalls every step). They are counted here, on the CPU, when
the calling frame's file is in ``lab/tasks``, ``lab/losses`` or ``lab/callbacks``,
between the start and the end of each training batch (forward, backward, the optimizer
steps, center loss's own), in a short digits fit: the default configuration, the triplet
loss alone (nearest class centre) and cross-entropy + center loss, with the divergence
guard every fit gets (it looks at the loss only every ``check_every_n_steps``; between
those steps it makes no sync). Lightning's own calls, e.g. its progress bar, are not
lab's.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import lightning as L
import pytest
import torch

import lab
from lab.callbacks.reliability import DivergenceGuard
from lab.data import DigitsDataModule
from lab.losses import BatchHardTripletLoss, CenterLoss, CrossEntropy
from lab.models import MLP
from lab.tasks import Classifier

PACKAGE = Path(lab.__file__).resolve().parent
WATCHED = tuple(str(PACKAGE / part) for part in ("tasks", "losses", "callbacks"))
SYNCING = ("item", "__float__", "__bool__", "tolist", "cpu")


class SyncCounter(L.Callback):
    """Counts the syncing calls made from lab's files during training batches."""

    def __init__(self) -> None:
        self.active = False
        self.calls: Counter[str] = Counter()
        self.steps = 0

    def on_train_batch_start(self, *args) -> None:
        self.active = True

    def on_train_batch_end(self, *args) -> None:
        self.active = False
        self.steps += 1

    def wrap(self, name: str, original):
        counter = self

        def counted(tensor, *args, **kwargs):
            if counter.active:
                caller = sys._getframe(1).f_code
                if caller.co_filename.startswith(WATCHED):
                    counter.calls[f"{name} in {caller.co_filename}:{caller.co_name}"] += 1
            return original(tensor, *args, **kwargs)

        return counted


CONFIGS = {
    "default": (None, {}),
    "triplet-alone": ([BatchHardTripletLoss()], {"pk_classes": 4, "pk_samples": 4}),
    "ce-center": ([CrossEntropy(), CenterLoss(weight=0.1, lr=0.5)], {}),
}


@pytest.mark.parametrize("config", CONFIGS)
def test_a_training_step_makes_no_host_sync(config, monkeypatch, tmp_path):
    losses, data_kwargs = CONFIGS[config]
    torch.manual_seed(0)
    model = Classifier(MLP(hidden=[32], in_channels=1, image_size=8), num_classes=10, losses=losses)
    counter = SyncCounter()
    for name in SYNCING:
        monkeypatch.setattr(torch.Tensor, name, counter.wrap(name, getattr(torch.Tensor, name)))
    trainer = L.Trainer(
        max_epochs=2,  # the second epoch has centres: nearest-centre logits in the step
        limit_train_batches=3,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        # The guard first, so that its batch-end hook runs while the counter counts.
        callbacks=[DivergenceGuard(), counter],
    )
    trainer.fit(model, datamodule=DigitsDataModule(batch_size=32, **data_kwargs))
    assert counter.steps == 6
    assert counter.calls == Counter(), dict(counter.calls)


def test_the_counter_sees_a_sync_in_lab_code(monkeypatch):
    # The counter itself works: a bool() on a tensor inside lab/tasks is counted.
    from lab.tasks.centres import ClassMeans

    counter = SyncCounter()
    monkeypatch.setattr(torch.Tensor, "__bool__", counter.wrap("__bool__", torch.Tensor.__bool__))
    counter.active = True
    means = ClassMeans(3, 2)
    means.load_state_dict(means.state_dict())  # its load makes one bool() on purpose
    assert sum(counter.calls.values()) == 1
