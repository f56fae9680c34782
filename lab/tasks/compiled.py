"""``compile: true``: the backbone's feature path under ``torch.compile``.

The task calls ``backbone.forward_features``, not ``backbone(x)``, so compiling the
backbone's ``__call__`` would not reach it. :class:`CompiledFeatures` is a small module
whose ``forward`` is the backbone's ``forward_features``, compiled in place with
``nn.Module.compile()`` (the way Lightning documents compiling in ``configure_model``).
The task keeps it as a plain attribute, not a submodule, so:

- the state dict and the checkpoints keep their keys (the backbone is not registered
  twice);
- a deep copy (EMA, SWA) or a pickle (``ddp_spawn``) of the task drops the compiled
  function (``nn.Module.__getstate__``) and the copy runs its own weights, uncompiled
  until it is compiled again.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class CompiledFeatures(nn.Module):
    """``forward(x) = backbone.forward_features(x)``, compiled with ``options``."""

    def __init__(self, backbone: nn.Module, **options: Any) -> None:
        super().__init__()
        self.backbone = backbone
        self.compile(**options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)
