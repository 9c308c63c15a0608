"""``mc-dropout`` (Gal & Ghahramani 2016): T stochastic passes, dropout on and everything else in eval mode.

The T passes of a batch run as forward passes of the batch repeated T
times (for an ``nn.Sequential``, only from its first dropout layer on: the
layers before it are deterministic and run once per input), in chunks of at most ``chunk`` input values (about 256 rows of 8x8
digits, 20 of 28x28 MNIST: measured fastest on a CPU), never a Python loop over
examples; only dropout modules are switched to training mode,
so batch norm keeps its running statistics, and every module's mode is
restored on exit, even after an error.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from bench.errors import UserError, require
from bench.guard import preserved_modes
from models.estimators import ESTIMATORS
from models.estimators.base import Estimator


def dropout_layers(model: nn.Module) -> list[nn.Module]:
    """The dropout modules of ``model`` that drop anything (p > 0)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0]


def shared_trunk(model: nn.Module) -> tuple[nn.Module | None, nn.Module]:
    """Split an ``nn.Sequential`` before its first layer holding dropout: (trunk, head), trunk None if nothing to share.

    In eval mode the trunk is deterministic, so T passes need it once per input and only the head T times:
    the same distribution (the same masks, drawn on the same repeated tensor) at a fraction of the cost.
    """
    if isinstance(model, nn.Sequential):
        for i, layer in enumerate(model):
            if dropout_layers(layer):
                return (model[:i] if i else None), model[i:]
    return None, model


@contextmanager
def dropout_only(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode for every module except dropout, which samples; each module's own mode restored on exit."""
    with preserved_modes(model):
        model.eval()
        for layer in dropout_layers(model):
            layer.train()
        yield model


@ESTIMATORS.register("mc-dropout", description="MC dropout: T stochastic passes with only dropout on (Gal & Ghahramani 2016)")
@dataclass(frozen=True)
class MCDropout(Estimator):
    samples: int = 20  # stochastic forward passes averaged per prediction
    chunk: int = 16384  # most input values (inputs x passes x pixels) in one forward pass: its activations stay in the CPU's cache

    has_epistemic: ClassVar[bool] = True

    def __post_init__(self) -> None:
        for name in ("samples", "chunk"):
            value = getattr(self, name)
            require(isinstance(value, int) and not isinstance(value, bool), name, f"must be an integer, got {value!r}")
            require(value >= 1, name, f"must be >= 1, got {value}")

    def check(self, model: nn.Module, label: str) -> None:
        if not dropout_layers(model):
            raise UserError(
                f"mc-dropout: model '{label}' has no dropout layers with p > 0, so its passes would all be the same; give it dropout (e.g. dropout = 0.25)"
            )

    @torch.no_grad()
    def stacked(self, members: Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor:
        model = members[0]
        passes = self.samples
        per_chunk = max(1, self.chunk // (passes * max(1, x[0].numel())))  # inputs per forward pass
        out = []
        trunk, head = shared_trunk(model)
        with dropout_only(model):
            for batch in x.split(per_chunk):
                hidden = trunk(batch) if trunk is not None else batch
                logits = head(hidden.repeat(passes, *([1] * (hidden.dim() - 1))))  # pass-major: row t * b + i
                out.append(torch.softmax(logits, dim=1).view(passes, len(batch), -1))
        return torch.cat(out, dim=1)
