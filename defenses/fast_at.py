"""Fast adversarial training (Wong et al. 2020, "Fast is better than free"): FGSM from a random start."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from attacks.base import loss_gradient
from attacks.threat_model import normalized, project, random_start
from bench.errors import require
from defenses import DEFENSES
from defenses.base import Defense


@DEFENSES.register("fast-at", description="FGSM adversarial training with a random start (Wong et al. 2020)")
@dataclass(frozen=True, kw_only=True)
class FastAdversarialTraining(Defense):
    eps: float = 0.1  # training-time budget of the FGSM step
    norm: str = "linf"  # its norm: linf or l2
    step_size: float | None = None  # None: 1.25 * eps, as the paper

    def __post_init__(self) -> None:
        require(self.eps > 0, "eps", f"must be > 0, got {self.eps}")
        require(self.norm in ("linf", "l2"), "norm", f"must be linf or l2, got {self.norm!r}")

    def training_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        start = random_start(x, norm=self.norm, eps=self.eps)
        grad, _, _ = loss_gradient(model, start, y)
        alpha = self.step_size if self.step_size is not None else 1.25 * self.eps
        x_adv = project(start + alpha * normalized(grad, self.norm), x, norm=self.norm, eps=self.eps)
        return F.cross_entropy(model(x_adv), y)
