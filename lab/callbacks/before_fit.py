"""The test split before fine-tuning, so a run shows what training changed.

At the start of a fit (not a resumed one) :class:`BeforeFitEvaluation` evaluates the
model as it starts, on the test split, and writes into ``<run>/before/`` the same files
as :class:`lab.callbacks.TestEvaluation` writes after testing (confusion matrix, per-class
accuracy, ROC and AUC); ``lab report`` shows them beside the after-training ones. It logs
``before/acc`` and ``before/auc_macro``.

Two ways to judge a pretrained backbone before training:

- ``probe: linear`` (default): a linear probe. The frozen backbone's features of the
  (unaugmented) training split fit a scikit-learn logistic regression (features
  standardised on the training split only), which then classifies the test split: what
  the pretrained features are worth with no fine-tuning.
- ``probe: as_is``: the model exactly as it starts, pretrained backbone and untrained head
  (near chance for a fresh head; the honest "before" of the source's fine-tuning study).
"""

from __future__ import annotations

import contextlib
from typing import Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info

from lab.callbacks.evaluation import write_evaluation
from lab.callbacks.figures import figure_writer, task_class_names
from lab.callbacks.figures import run_dir as run_folder
from lab.errors import LabError


def _prepare(pl_module: L.LightningModule, x: torch.Tensor) -> torch.Tensor:
    """A batch in the memory format the task's backbone uses (channels-last when the
    task keeps its weights so: its own ``prepare``, else its ``channels_last`` flag)."""
    prepare = getattr(pl_module, "prepare", None)
    if callable(prepare):
        return prepare(x)
    if getattr(pl_module, "channels_last", False) and x.ndim == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def _embed(
    pl_module: L.LightningModule, loader, logits: bool, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Features (or logits) and targets of the batches of ``loader``, in eval mode, under
    the run's precision (its autocast) and the backbone's memory format; only the first
    ``limit`` items (the loader stops being read once it has given them)."""
    outputs, targets, count = [], [], 0
    trainer = pl_module._trainer  # None outside a Trainer (then full precision)
    plugin = trainer.precision_plugin if trainer is not None else None
    for x, y in loader:
        if limit is not None:
            x, y = x[: limit - count], y[: limit - count]
        x = _prepare(pl_module, x.to(pl_module.device))
        with plugin.forward_context() if plugin is not None else contextlib.nullcontext():
            features = pl_module.features(x)
            out = pl_module.logits(features) if logits else features
        outputs.append(out.float().cpu())
        targets.append(torch.as_tensor(y).cpu())
        count += len(x)
        if limit is not None and count >= limit:
            break  # the rest of the loader is never read
    return torch.cat(outputs).numpy(), torch.cat(targets).numpy()


class BeforeFitEvaluation(L.Callback):
    """Evaluates the test split at the start of training (see the module docstring).

    Args:
        probe: ``linear`` (a logistic-regression probe on the frozen features) or
            ``as_is`` (the model's own head, untrained).
        max_train_samples: fit the linear probe on at most this many training images
            (the first ones of the training split; None: all).
        C: inverse L2 strength of the probe's logistic regression.
    """

    def __init__(
        self,
        probe: Literal["linear", "as_is"] = "linear",
        max_train_samples: int | None = None,
        C: float = 1.0,
    ) -> None:
        if probe not in ("linear", "as_is"):
            raise LabError(f"BeforeFitEvaluation.probe must be 'linear' or 'as_is', got {probe!r}")
        if max_train_samples is not None and max_train_samples < 2:
            raise LabError(
                f"BeforeFitEvaluation.max_train_samples must be at least 2, got {max_train_samples}"
            )
        if C <= 0:
            raise LabError(f"BeforeFitEvaluation.C must be > 0, got {C}")
        self.probe = probe
        self.max_train_samples = max_train_samples
        self.C = C

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.ckpt_path is not None or trainer.global_step > 0:
            return  # a resumed run: its "before" was written when it started
        if trainer.is_global_zero:
            datamodule = trainer.datamodule
            if datamodule is None:
                raise LabError("BeforeFitEvaluation needs a data module with a test split")
            datamodule.setup("test")
            was_training = pl_module.training
            pl_module.eval()
            try:
                with torch.inference_mode():
                    scores, targets = self._scores(pl_module, datamodule)
            finally:
                pl_module.train(was_training)
            self._write(trainer, pl_module, scores, targets)
        trainer.strategy.barrier("before_fit_evaluation")

    def _scores(self, pl_module: L.LightningModule, datamodule) -> tuple[np.ndarray, np.ndarray]:
        """``(scores (N, C), targets (N,))`` on the test split; probabilities for the
        linear probe, logits for ``as_is``."""
        if self.probe == "as_is":
            return _embed(pl_module, datamodule.test_dataloader(), logits=True)
        reference = datamodule.reference_dataloader()
        train_x, train_y = _embed(pl_module, reference, logits=False, limit=self.max_train_samples)
        test_x, test_y = _embed(pl_module, datamodule.test_dataloader(), logits=False)
        # scikit-learn here, not at the top: it is 0.5 s of every `lab fit`'s start-up, and
        # only a run with this probe needs it.
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        probe = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=1000))
        probe.fit(train_x, train_y)
        num_classes = pl_module.num_classes
        probabilities = np.zeros((len(test_x), num_classes), dtype=np.float64)
        # classes_ are those seen in training: put their columns in place
        probabilities[:, probe.classes_] = probe.predict_proba(test_x)
        return probabilities, test_y

    def _write(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        scores: np.ndarray,
        targets: np.ndarray,
    ) -> None:
        names = task_class_names(pl_module, scores.shape[1])[: scores.shape[1]]
        run_dir = run_folder(trainer)
        out_dir = run_dir / "before" if run_dir is not None else None
        auc = write_evaluation(
            out_dir,
            torch.as_tensor(scores),
            torch.as_tensor(targets),
            names,
            softmax=self.probe == "as_is",
            writer=figure_writer(trainer),
            tag_prefix="before",
            global_step=trainer.global_step,
        )
        accuracy = float((scores.argmax(axis=1) == targets).mean())
        metrics = {"before/acc": accuracy}
        if auc is not None and np.isfinite(auc["auc"].iloc[-1]):
            metrics["before/auc_macro"] = float(auc["auc"].iloc[-1])
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        rank_zero_info(
            f"before fit ({self.probe} probe): test accuracy {accuracy:.4f} on {len(targets)} "
            f"images{f', files in {out_dir}' if out_dir is not None else ''}"
        )
