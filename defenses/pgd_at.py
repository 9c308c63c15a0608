"""PGD adversarial training (Madry et al. 2018): train on the PGD point of each batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from attacks.pgd import PGD
from bench.errors import require
from defenses import DEFENSES
from defenses.base import Defense


@DEFENSES.register("pgd-at", description="PGD adversarial training (Madry et al. 2018)")
@dataclass(frozen=True, kw_only=True)
class PGDAdversarialTraining(Defense):
    eps: float = 0.1  # training-time budget of the PGD points
    norm: str = "linf"  # its norm: linf or l2
    steps: int = 7  # PGD steps per training batch
    step_size: float | None = None  # None: 2.5 * eps / steps

    def __post_init__(self) -> None:
        require(self.eps > 0, "eps", f"must be > 0, got {self.eps}")
        self.attack  # noqa: B018  (validates steps, norm and step size now)

    @property
    def attack(self) -> PGD:
        return PGD(eps=self.eps, norm=self.norm, steps=self.steps, step_size=self.step_size, early_stop=False)

    def training_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(self.attack(model, x, y)), y)
