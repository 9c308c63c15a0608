"""TRADES (Zhang et al. 2019): cross-entropy on clean inputs plus beta x KL(f(x) || f(x')) at the worst x'."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from attacks.threat_model import normalized, project
from bench.errors import require
from defenses import DEFENSES
from defenses.base import Defense


@DEFENSES.register("trades", description="TRADES: clean loss + beta x KL to the adversarial point (Zhang et al. 2019)")
@dataclass(frozen=True, kw_only=True)
class TRADES(Defense):
    beta: float = 6.0  # weight of the KL term (robustness vs clean accuracy)
    eps: float = 0.1  # training-time budget of the inner maximization
    norm: str = "linf"  # its norm: linf or l2
    steps: int = 7  # PGD steps of the inner maximization
    step_size: float | None = None  # None: 2.5 * eps / steps

    def __post_init__(self) -> None:
        require(self.beta >= 0, "beta", f"must be >= 0, got {self.beta}")
        require(self.eps > 0, "eps", f"must be > 0, got {self.eps}")
        require(isinstance(self.steps, int) and self.steps >= 1, "steps", f"must be an integer >= 1, got {self.steps!r}")
        require(self.norm in ("linf", "l2"), "norm", f"must be linf or l2, got {self.norm!r}")

    def training_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = model(x)
        target = F.softmax(logits.detach(), dim=1)
        alpha = self.step_size if self.step_size is not None else 2.5 * self.eps / self.steps
        x_adv = (x + 0.001 * torch.randn_like(x)).clamp(0, 1)
        for _ in range(self.steps):  # maximize the KL divergence from the clean prediction
            with torch.enable_grad():
                x_adv = x_adv.detach().requires_grad_(True)
                divergence = F.kl_div(F.log_softmax(model(x_adv), dim=1), target, reduction="sum")
                (grad,) = torch.autograd.grad(divergence, x_adv)
            x_adv = project(x_adv.detach() + alpha * normalized(grad, self.norm), x, norm=self.norm, eps=self.eps)
        robust = F.kl_div(F.log_softmax(model(x_adv.detach()), dim=1), F.softmax(logits, dim=1), reduction="batchmean")
        return F.cross_entropy(logits, y) + self.beta * robust
