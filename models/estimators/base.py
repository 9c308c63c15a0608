"""What every estimator shares: the predictive distribution, its entropy decomposition, batched prediction.

An estimator gets the trained ``members`` (one model, or an ensemble's M)
and produces S probability vectors per input, stacked (S, N, C): S = 1 for a
plain softmax, T stochastic passes for MC dropout, M members for an ensemble.
From them (Depeweg et al. 2018):

* total = H(mean_s p_s), the entropy of the predictive distribution;
* aleatoric = mean_s H(p_s), the expected entropy;
* epistemic = total - aleatoric, the mutual information (clamped at 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from bench.guard import preserved_modes


@dataclass(frozen=True, eq=False)
class Predictive:
    """Per input: the predictive probabilities (N, C) and the entropy split, in nats (N,)."""

    probs: torch.Tensor
    total: torch.Tensor
    aleatoric: torch.Tensor
    epistemic: torch.Tensor


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy over the last dimension, in nats (0 log 0 = 0)."""
    return -torch.special.xlogy(probs, probs).sum(dim=-1)


def decompose(samples: torch.Tensor) -> Predictive:
    """The predictive distribution of stacked probabilities (S, N, C) and its total/aleatoric/epistemic entropy."""
    probs = samples.mean(dim=0)
    total = entropy(probs)
    aleatoric = entropy(samples).mean(dim=0)
    return Predictive(probs, total, aleatoric, (total - aleatoric).clamp_min(0))


class LogPredictive(nn.Module):
    """log of the mean softmax of ``members``: a differentiable model of the predictive distribution, for attacks."""

    def __init__(self, members: Sequence[nn.Module], temperature: float = 1.0) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.members) == 1:
            return self.members[0](x) / self.temperature
        logs = torch.stack([torch.log_softmax(m(x) / self.temperature, dim=1) for m in self.members])
        return torch.logsumexp(logs, dim=0) - torch.log(torch.tensor(float(len(self.members)), device=x.device))


@dataclass(frozen=True)
class Estimator:
    """Base of estimators: a frozen value; ``fit`` returns a fitted copy, ``stacked`` the stacked probabilities."""

    has_epistemic: ClassVar[bool] = False  # False: one deterministic sample, so epistemic is identically 0

    def members(self) -> int:
        """How many independently trained models (different seeds) it needs."""
        return 1

    def check(self, model: nn.Module, label: str) -> None:
        """Raise ``UserError`` when ``model`` (named ``label``) cannot serve this estimator; before any training."""

    def fit(self, members: Sequence[nn.Module], x: torch.Tensor, y: torch.Tensor) -> Estimator:
        """Fit on held-out data (temperature scaling does); the others return themselves."""
        return self

    @torch.no_grad()
    def stacked(self, members: Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor:
        """Stacked probabilities (S, N, C) of one batch; the default: each member's softmax in eval mode."""
        out = []
        for model in members:
            with preserved_modes(model):
                out.append(torch.softmax(model.eval()(x), dim=1))
        return torch.stack(out)

    def predict(self, members: Sequence[nn.Module], x: torch.Tensor, batch_size: int = 512) -> Predictive:
        """The predictive distribution of ``x``, in batches of ``batch_size`` inputs."""
        parts = [decompose(self.stacked(members, batch)) for batch in x.split(batch_size)]
        return Predictive(*(torch.cat([getattr(p, f) for p in parts]) for f in ("probs", "total", "aleatoric", "epistemic")))

    def attack_model(self, members: Sequence[nn.Module]) -> nn.Module:
        """The differentiable model an attack on this estimator targets (log predictive probabilities or logits)."""
        return LogPredictive(members)
