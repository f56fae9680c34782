"""The base of every loss term the classification task combines (``model.losses``).

A term is a plain ``nn.Module`` called as ``term(inputs, targets) -> scalar``, where the
inputs are the logits (``uses_logits``) or the features / embedding. It declares what it
needs and the task provides it:

- ``weight``: its factor in the total loss (>= 0); ``name``: it is logged as
  ``train/<name>`` (and ``val/``, ``test/``) beside ``train/loss``, the weighted sum.
- ``needs_pk_batches``: the training batches must be P x K (``data.pk_classes``,
  ``data.pk_samples``); the task stops with a one-line error at fit start otherwise.
- ``build(num_classes, feature_dim)``: called once by the task before training, for
  terms with parameters (center loss's centres).
- ``configure_optimizer()`` / ``before_optimizer_step(task)``: a term that trains its
  own parameters with an optimizer of its own (their parameters are then kept out of
  the task's optimizer: ``own_parameters()``).
- ``stats()``: extra values of the last call to log (e.g. the active triplet share), as
  detached device tensors, so logging them does not synchronise with the host.
- ``eval_batch(batch_idx)``: called before each validation / test batch (a sampled loss
  seeds its draws with it, so ``val/loss`` compares from epoch to epoch).
"""

from __future__ import annotations

import torch
from torch import nn

from lab.errors import LabError


class LossTerm(nn.Module):
    """A weighted, named loss term: subclass it, set the class attributes, write
    ``forward(inputs, targets)`` (decorated with ``lab.losses.float32_loss``).

    Args:
        weight: the term's factor in the total loss (>= 0).
        name: its name in the logs (``train/<name>``); the class's ``default_name`` if None.
    """

    default_name = "loss"
    needs_pk_batches = False
    uses_logits = False

    def __init__(self, weight: float = 1.0, name: str | None = None) -> None:
        super().__init__()
        if weight < 0:
            raise LabError(f"{type(self).__name__}: weight must be >= 0, got {weight}")
        if name is not None and not name.isidentifier():
            raise LabError(f"{type(self).__name__}: name must be a word like 'ce', got {name!r}")
        self.weight = float(weight)
        self.name = name or self.default_name

    def build(self, num_classes: int, feature_dim: int) -> None:
        """Create parameters that depend on the task (a no-op unless a term has some)."""

    def own_parameters(self) -> list[nn.Parameter]:
        """Parameters this term trains with its own optimizer (none by default)."""
        return []

    def configure_optimizer(self) -> torch.optim.Optimizer | None:
        """The optimizer of ``own_parameters()``; None if the term has none."""
        return None

    def before_optimizer_step(self, task: object) -> None:
        """Step the term's own optimizer; called once per step of the task's optimizer."""

    def stats(self) -> dict[str, torch.Tensor]:
        """Extra values of the last call, detached device tensors, logged by name."""
        return {}

    def eval_batch(self, batch_idx: int) -> None:
        """Called before each validation or test batch with its index."""
