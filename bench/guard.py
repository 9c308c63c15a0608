"""The harness owns the model's mode: eval for evaluation, restored afterwards, even on error.

``ModelWatch`` also notices an attack that switched modes or changed weights
in place, so a broken attack is flagged instead of trusted. A leaf of the
harness (torch only): attacks and models use ``preserved_modes`` too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def preserved_modes(model: nn.Module) -> Iterator[nn.Module]:
    """Restore every module's own train/eval mode on exit, whatever ran inside (a library that switches modes)."""
    modes = [(module, module.training) for module in model.modules()]
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every module in eval mode; restore each one's own mode on exit."""
    with preserved_modes(model):
        yield model.eval()


class ModelWatch:
    """A snapshot of modes and tensor versions; ``changes()`` names what moved since."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.modes = [module.training for module in model.modules()]
        self.versions = self._versions()

    def _versions(self) -> list[int]:
        tensors = [*self.model.parameters(), *self.model.buffers()]
        return [t._version for t in tensors]

    def changes(self) -> list[str]:
        found = []
        if [m.training for m in self.model.modules()] != self.modes:
            found.append("changed-model-mode")
            for module, training in zip(self.model.modules(), self.modes, strict=True):
                module.training = training
        if self._versions() != self.versions:
            found.append("modified-model")
        return found


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Predicted labels, batched, without gradients."""
    if x.shape[0] == 0:
        return torch.empty(0, dtype=torch.long, device=x.device)
    return torch.cat([model(batch).argmax(dim=1) for batch in x.split(batch_size)])
