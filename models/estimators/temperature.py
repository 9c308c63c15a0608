"""``temperature``: temperature scaling (Guo et al. 2017), one scalar T fitted on held-out data by NLL."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import require
from bench.guard import preserved_modes
from models.estimators import ESTIMATORS
from models.estimators.base import Estimator, LogPredictive


@ESTIMATORS.register("temperature", description="temperature scaling fitted on a held-out split (Guo et al. 2017)")
@dataclass(frozen=True)
class Temperature(Estimator):
    temperature: float | None = None  # None until fitted
    max_iter: int = 100  # L-BFGS iterations fitting the temperature on held-out data

    def __post_init__(self) -> None:
        require(self.temperature is None or self.temperature > 0, "temperature", f"must be > 0, got {self.temperature}")
        require(isinstance(self.max_iter, int) and self.max_iter >= 1, "max_iter", f"must be an integer >= 1, got {self.max_iter!r}")

    def fit(self, members: Sequence[nn.Module], x: torch.Tensor, y: torch.Tensor) -> Temperature:
        """The T minimizing the NLL of softmax(logits / T) on (x, y), by L-BFGS on log T."""
        with torch.no_grad(), preserved_modes(members[0]):
            logits = torch.cat([members[0].eval()(batch) for batch in x.split(512)]).double()
        log_t = torch.zeros(1, dtype=torch.float64, device=logits.device, requires_grad=True)
        optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=self.max_iter, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = F.cross_entropy(logits / log_t.exp(), y)
            loss.backward()
            return loss

        with torch.enable_grad():
            optimizer.step(closure)
        return replace(self, temperature=float(log_t.detach().exp()))

    @torch.no_grad()
    def stacked(self, members: Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor:
        with preserved_modes(members[0]):
            return torch.softmax(members[0].eval()(x) / self._fitted(), dim=1).unsqueeze(0)

    def attack_model(self, members: Sequence[nn.Module]) -> nn.Module:
        return LogPredictive(members[:1], self._fitted())

    def _fitted(self) -> float:
        if self.temperature is None:
            raise RuntimeError("temperature: call fit() on held-out data first (or give temperature = T)")
        return self.temperature
