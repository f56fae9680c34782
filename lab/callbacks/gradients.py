"""Gradient norms, per parameter group and in total, logged as ``grad_norm/<group>`` and
``grad_norm/total`` every few optimizer steps.

Lightning's ``lightning.pytorch.utilities.grad_norm`` gives one norm per parameter tensor
under its own key names and cannot group parameters by layer; the few lines here do the
grouping (the norm of a group is the norm of its gradients viewed as one vector).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import lightning as L
import torch

from lab.errors import LabError


def group_of(name: str, depth: int | None) -> str:
    """The group of a parameter: the first ``depth`` dot-separated parts of its name
    (``backbone.layer1.0.conv1.weight`` -> ``backbone.layer1`` for depth 2), the whole
    name for ``None`` (or a name with no more than ``depth`` parts)."""
    return name if depth is None else ".".join(name.split(".")[:depth])


def gradient_norms(
    named_parameters: Iterable[tuple[str, torch.nn.Parameter]],
    norm_type: float = 2.0,
    depth: int | None = None,
    per_layer: bool = True,
) -> dict[str, torch.Tensor]:
    """``{group: norm}`` (with ``per_layer``) and ``{"total": norm}`` of the gradients of
    the parameters that have one, each the ``norm_type``-norm of the gradients concatenated
    into one vector; empty if no parameter has a gradient."""
    groups: dict[str, list[torch.Tensor]] = {}
    for name, parameter in named_parameters:
        if parameter.grad is not None:
            groups.setdefault(group_of(name, depth), []).append(
                torch.linalg.vector_norm(parameter.grad.detach().float(), ord=norm_type)
            )
    if not groups:
        return {}
    # The p-norm of a concatenation is the p-norm of the parts' p-norms (max for inf).
    norms = {
        group: torch.linalg.vector_norm(torch.stack(parts), ord=norm_type)
        for group, parts in groups.items()
    }
    total = torch.linalg.vector_norm(torch.stack(list(norms.values())), ord=norm_type)
    return {**(norms if per_layer else {}), "total": total}


class GradientNorms(L.Callback):
    """Writes gradient norms to the loggers before every ``every_n_steps``-th optimizer
    step (after AMP has unscaled them): ``grad_norm/<group>`` per group of parameters
    (with ``per_layer``) and ``grad_norm/total``, at step ``trainer.global_step``.

    The values go straight to every logger (``logger.log_metrics``, as Lightning's
    ``LearningRateMonitor`` does), not through ``pl_module.log``: Lightning writes the last
    value of a step metric again at every later logging step of the epoch, so values
    logged every n steps would show up, stale, at the steps in between; and
    ``trainer.log_every_n_steps`` would thin them out further. They are therefore not in
    ``trainer.callback_metrics``. Only the parameters of the optimizer that is stepping
    count.

    Args:
        every_n_steps: log at global steps 0, n, 2n, ...
        norm_type: the p of the p-norm (``inf`` for the largest absolute value).
        per_layer: log each group's norm, not only the total.
        depth: group parameters by the first this many parts of their names
            (``backbone.layer1`` for 2); None: one group per parameter tensor.
    """

    def __init__(
        self,
        every_n_steps: int = 1,
        norm_type: float = 2.0,
        per_layer: bool = True,
        depth: int | None = None,
    ) -> None:
        if every_n_steps < 1:
            raise LabError(f"GradientNorms.every_n_steps must be at least 1, got {every_n_steps}")
        norm_type = float(norm_type)
        if math.isnan(norm_type) or norm_type <= 0:
            raise LabError(f"GradientNorms.norm_type must be > 0 or inf, got {norm_type}")
        if depth is not None and depth < 1:
            raise LabError(f"GradientNorms.depth must be at least 1 or null, got {depth}")
        self.every_n_steps = every_n_steps
        self.norm_type = norm_type
        self.per_layer = per_layer
        self.depth = depth

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        step = trainer.global_step
        if step % self.every_n_steps != 0 or not trainer.loggers or not trainer.is_global_zero:
            return  # (the gradients are the same on every process after backward)
        stepped = {id(p) for group in optimizer.param_groups for p in group["params"]}
        named = ((n, p) for n, p in pl_module.named_parameters() if id(p) in stepped)
        norms = gradient_norms(named, self.norm_type, self.depth, self.per_layer)
        if not norms:
            return
        values = torch.stack(list(norms.values())).tolist()  # one device sync
        metrics = {f"grad_norm/{name}": v for name, v in zip(norms, values, strict=True)}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
