"""The task's objective: a list of weighted loss terms (``lab.losses.LossTerm``).

``model.losses`` in YAML is a list of ``class_path`` / ``init_args`` entries that
LightningCLI instantiates; :class:`Objective` holds them (an ``nn.ModuleList``, so a
term's parameters, e.g. center loss's centres, are in the checkpoint), hands each its
inputs (the logits or the features, as the term declares), sums them with their
weights, and forwards their needs: ``build`` once with the task's sizes, their own
optimizers and steps, and the P x K check at fit start.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from lab.errors import LabError
from lab.losses import CrossEntropy, LossTerm


class Objective(nn.ModuleList):
    """Weighted sum of loss terms, with every term's value and stats for the logs.

    Args:
        terms: the loss terms, in order (at least one; distinct names).
        label_smoothing: given to every ``CrossEntropy`` term that sets none of its own.
    """

    def __init__(self, terms: Sequence[LossTerm], label_smoothing: float = 0.0) -> None:
        for term in terms:
            if not isinstance(term, LossTerm):
                raise LabError(
                    f"model.losses: {type(term).__name__} is not a loss term; give classes "
                    "of lab.losses (e.g. class_path: lab.losses.CrossEntropy)"
                )
        if not terms:
            raise LabError("model.losses is empty: give at least one loss term")
        names = [term.name for term in terms]
        if len(set(names)) != len(names):
            raise LabError(
                f"model.losses: two terms share a name ({names}); set init_args.name on one"
            )
        super().__init__(terms)
        for term in self.terms:
            if isinstance(term, CrossEntropy) and term.label_smoothing is None:
                term.label_smoothing = label_smoothing

    @property
    def terms(self) -> list[LossTerm]:
        return list(self)  # type: ignore[arg-type]

    @property
    def uses_logits(self) -> bool:
        return any(term.uses_logits for term in self.terms)

    @property
    def needs_pk_batches(self) -> bool:
        return any(term.needs_pk_batches for term in self.terms)

    def build(self, num_classes: int, feature_dim: int) -> None:
        for term in self.terms:
            term.build(num_classes, feature_dim)

    def forward(  # type: ignore[override]
        self, features: torch.Tensor, logits: torch.Tensor | None, targets: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """``{"loss": weighted sum, <name>: each term (with more than one), <stat>: ...}``."""
        parts: dict[str, torch.Tensor] = {}
        total: torch.Tensor | None = None
        for term in self.terms:
            inputs = logits if term.uses_logits else features
            if inputs is None:
                raise LabError(f"{type(term).__name__} needs logits, but the task has no head")
            value = term(inputs, targets)
            weighted = value if term.weight == 1.0 else term.weight * value
            total = weighted if total is None else total + weighted
            parts[term.name] = value
            parts.update(term.stats())
        assert total is not None
        if len(self) == 1:
            parts.pop(self.terms[0].name)
        return {"loss": total, **parts}

    def own_parameters(self) -> list[nn.Parameter]:
        return [p for term in self.terms for p in term.own_parameters()]

    def configure_optimizers(self) -> None:
        for term in self.terms:
            term.configure_optimizer()

    def before_optimizer_step(self, task: Any) -> None:
        for term in self.terms:
            term.before_optimizer_step(task)

    def eval_batch(self, batch_idx: int) -> None:
        for term in self.terms:
            term.eval_batch(batch_idx)
