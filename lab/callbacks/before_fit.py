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

from typing import Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from lab.callbacks.evaluation import write_evaluation
from lab.callbacks.figures import figure_writer, task_class_names
from lab.callbacks.figures import run_dir as run_folder
from lab.errors import LabError


def _embed(pl_module: L.LightningModule, loader, logits: bool) -> tuple[np.ndarray, np.ndarray]:
    """Features (or logits) and targets of every batch of ``loader``, in eval mode."""
    outputs, targets = [], []
    for x, y in loader:
        x = x.to(pl_module.device)
        features = pl_module.features(x)
        out = pl_module.logits(features) if logits else features
        outputs.append(out.float().cpu())
        targets.append(torch.as_tensor(y).cpu())
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
        train_x, train_y = _embed(pl_module, datamodule.reference_dataloader(), logits=False)
        if self.max_train_samples is not None:
            train_x = train_x[: self.max_train_samples]
            train_y = train_y[: self.max_train_samples]
        test_x, test_y = _embed(pl_module, datamodule.test_dataloader(), logits=False)
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
