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

from bench.accel import batched


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


class NonFiniteLogits(RuntimeError):
    """The model returned inf or nan: its predictions mean nothing. The job is stored as invalid with ``flag``."""

    flag = "non-finite-logits"


def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)``, refused when any value is inf or nan (an argmax of nan would read as a prediction)."""
    out = model(x)
    if not torch.isfinite(out).all():
        raise NonFiniteLogits(f"the model returned non-finite logits (inf or nan) on {int((~torch.isfinite(out)).any(dim=-1).sum())} of {len(x)} inputs")
    return out


PREDICTION_SEED = 20190208  # the draws of a randomized model's majority vote (common random numbers across evaluations)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024, *, draws: int = 1) -> torch.Tensor:
    """Predicted labels, batched (halved on out-of-memory: ``bench.accel``), without gradients.

    A model with its own ``predict_labels`` (randomized smoothing's PREDICT, which abstains with -1) decides for
    itself; otherwise ``draws > 1`` counts the majority over that many forward passes (a randomized model), so one
    lucky draw neither breaks nor saves a point. Those passes draw from a fixed seed (common random numbers):
    an evaluation repeated with other attack seeds predicts the same points the same way.
    """
    if x.shape[0] == 0:
        return torch.empty(0, dtype=torch.long, device=x.device)
    own = getattr(model, "predict_labels", None)
    if callable(own):
        return torch.cat(batched("predict", len(x), x.device, lambda index: own(x[index]), batch_size=batch_size))
    if draws <= 1:
        return torch.cat(batched("predict", len(x), x.device, lambda index: logits(model, x[index]).argmax(dim=1), batch_size=batch_size))

    def vote(index: torch.Tensor) -> torch.Tensor:
        first = logits(model, x[index])
        votes = torch.nn.functional.one_hot(first.argmax(dim=1), first.shape[1])
        for _ in range(draws - 1):
            votes += torch.nn.functional.one_hot(logits(model, x[index]).argmax(dim=1), first.shape[1])
        return votes.argmax(dim=1)

    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # the same draws whatever ran before: repeated evaluations agree; the caller's stream is untouched
        torch.manual_seed(PREDICTION_SEED)
        return torch.cat(batched("predict", len(x), x.device, vote, batch_size=batch_size))
