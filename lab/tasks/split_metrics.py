"""The split-level metrics of ``lab.tasks.Classifier``: what its validation and test
steps keep, gathered over the whole split at the epoch's end (under DDP too), the
retrieval metrics on the validation features, and on the test split the accuracy, top-5,
macro F1 and per-class accuracy plus the embedding metrics against the reference
(training) split, embedded by :meth:`SplitMetrics.embed`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import nullcontext
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

from lab.distributed import gather_split
from lab.metrics import embedding_metrics, retrieval_metrics


class SplitMetrics:
    """A mixin of :class:`lab.tasks.Classifier` (put before ``LightningModule`` in the
    bases so its hooks are the ones called). What it reads of the task is declared below."""

    # Set by the host task (lab.tasks.Classifier).
    _collected: dict[str, list[dict[str, torch.Tensor]]]  # stage -> kept tensors
    _reference: tuple[torch.Tensor, torch.Tensor] | None  # the embedded reference split
    embedding_metrics: bool
    means: Any  # the class centres (lab.tasks.centres) or None
    num_classes: int
    knn_k: int
    class_names: Any
    features: Callable[[torch.Tensor], torch.Tensor]  # the task's embedding of a batch
    prepare: Callable[[torch.Tensor], torch.Tensor]  # the task's input preparation

    def _collect(
        self,
        stage: str,
        features: torch.Tensor,
        logits: torch.Tensor | None,
        targets: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Keep what the epoch-end metrics need (test: the logits; with embedding metrics:
        the features); return the step's output, ``{"features", "targets"}`` and
        ``"logits"`` when there are any, which callbacks (t-SNE, confusion matrix, ROC)
        read."""
        out = {"features": features.detach().float(), "targets": targets}
        if logits is not None:
            out["logits"] = logits.detach().float()
        kept = {"targets": targets}
        if self.embedding_metrics:
            kept["features"] = out["features"]
        if stage == "test" and logits is not None:
            kept["logits"] = out["logits"]
        if len(kept) > 1:
            self._collected.setdefault(stage, []).append(kept)
        return out

    def _gathered(self, stage: str) -> dict[str, torch.Tensor]:
        """The stage's kept tensors, under DDP the whole split: in order and without
        DistributedSampler's repeated samples (``lab.distributed.gather_split``)."""
        parts = self._collected.pop(stage, [])
        if not parts:
            return {}
        return {
            key: gather_split(self.trainer, torch.cat([p[key] for p in parts]), stage)
            for key in parts[0]
        }

    def on_validation_epoch_start(self) -> None:
        self._collected.pop("val", None)
        if self.means is not None and not self.trainer.sanity_checking:
            # No training batch yet: the centres that were loaded, if any, stay.
            self.means.publish(self.trainer.strategy)

    def on_validation_epoch_end(self) -> None:
        gathered = self._gathered("val")
        if "features" not in gathered or self.trainer.sanity_checking:
            return
        if len(gathered["targets"]) < 2:
            return
        metrics = retrieval_metrics(gathered["features"], gathered["targets"])
        self.log("val/precision_at_1", metrics["precision_at_1"])
        self.log("val/map_at_r", metrics["map_at_r"])

    @torch.no_grad()
    def embed(self, batches: Iterable[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (float32) and targets of every ``(x, y)`` batch, on this device, under
        the run's precision (autocast for ``*-mixed``) and memory format."""
        context = (
            self.trainer.precision_plugin.forward_context() if self._trainer else nullcontext()
        )
        features, targets = [], []
        with context:
            for x, y in batches:
                x = self.prepare(torch.as_tensor(x).to(self.device))
                features.append(self.features(x).float())
                targets.append(torch.as_tensor(y).to(self.device))
        return torch.cat(features), torch.cat(targets)

    def on_test_epoch_start(self) -> None:
        self._collected.pop("test", None)
        self._reference = None
        datamodule = getattr(self.trainer, "datamodule", None)
        if not self.embedding_metrics and self.means is None:
            return
        if datamodule is None or getattr(datamodule, "reference_set", None) is None:
            rank_zero_warn("no reference (training) split to embed: no embedding metrics")
            return
        self._reference = self.embed(datamodule.reference_dataloader())
        if self.means is not None:
            self.means.fit(*self._reference)

    def on_test_epoch_end(self) -> None:
        gathered = self._gathered("test")
        if "logits" in gathered:
            self._log_test_accuracy(gathered["logits"], gathered["targets"])
        if "features" not in gathered or self._reference is None or not self.embedding_metrics:
            return
        metrics = embedding_metrics(
            gathered["features"],
            gathered["targets"],
            *self._reference,
            self.num_classes,
            self.knn_k,
        )
        for name, value in metrics.items():
            self.log(f"test/{name}", value)
        self._reference = None

    def _log_test_accuracy(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """test/acc, top-5, macro F1 and per-class accuracy of the whole test split."""
        kwargs = {"num_classes": self.num_classes, "validate_args": False}
        self.log("test/acc", multiclass_accuracy(logits, targets, average="micro", **kwargs))
        if self.num_classes > 5:
            top5 = multiclass_accuracy(logits, targets, average="micro", top_k=5, **kwargs)
            self.log("test/acc_top5", top5)
        self.log("test/macro_f1", multiclass_f1_score(logits, targets, average="macro", **kwargs))
        per_class = multiclass_accuracy(logits, targets, average=None, **kwargs)
        for name, value in zip(self.class_names(), per_class, strict=True):
            self.log(f"test/class_acc/{name}", value)
