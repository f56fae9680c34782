"""``BeforeFitEvaluation``'s embedding: cut to ``max_train_samples`` before embedding,
under the run's precision and the backbone's memory format."""

from types import SimpleNamespace

import lightning as L
import torch
from lightning.pytorch.plugins.precision import MixedPrecision

from lab.callbacks.before_fit import _embed


class Recorder(L.LightningModule):
    """Features = the mean pixel; records the autocast dtype and memory format it saw."""

    def __init__(self, channels_last: bool = False) -> None:
        super().__init__()
        self.channels_last = channels_last
        self.seen: list[tuple[torch.dtype | None, bool]] = []

    def features(self, x: torch.Tensor) -> torch.Tensor:
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
        self.seen.append((dtype, x.is_contiguous(memory_format=torch.channels_last)))
        return x.mean(dim=(2, 3))

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return features


def counting_loader(batches: int, size: int, read: list[int]):
    for i in range(batches):
        read.append(i)
        yield torch.rand(size, 3, 4, 4), torch.arange(size)


def test_the_probe_embeds_only_max_train_samples():
    module, read = Recorder(), []
    x, y = _embed(module, counting_loader(10, 64, read), logits=False, limit=100)
    assert x.shape == (100, 3) and y.shape == (100,)
    assert read == [0, 1]  # two batches of 64 give the 100: the other eight are not read
    x, _ = _embed(module, counting_loader(3, 64, []), logits=False)
    assert len(x) == 192


def test_embedding_uses_the_runs_precision_and_channels_last():
    module = Recorder(channels_last=True)
    module._trainer = SimpleNamespace(precision_plugin=MixedPrecision("bf16-mixed", "cpu"))
    x, _ = _embed(module, counting_loader(2, 8, []), logits=True)
    assert module.seen == [(torch.bfloat16, True)] * 2
    assert x.dtype == "float32"
    plain = Recorder()
    _embed(plain, counting_loader(1, 8, []), logits=False)
    assert plain.seen == [(None, False)]
