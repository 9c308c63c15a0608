"""Random noise of the same budget: the floor any real attack must beat.

Draws ``draws`` random points in the eps-ball (uniform per coordinate for
Linf, random direction and radius for L2) and keeps, per example, the first
one that is misclassified. Forward passes only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from attacks import ATTACKS
from attacks.base import Attack
from attacks.threat_model import random_start
from bench.errors import require


@ATTACKS.register("noise", norms=("linf", "l2"), description="random points in the eps-ball (a sanity floor, forward passes only)")
@dataclass(frozen=True, kw_only=True)
class Noise(Attack):
    draws: int = 10

    white_box: ClassVar[bool] = False
    iterative: ClassVar[bool] = False

    def __post_init__(self) -> None:
        super().__post_init__()
        require(isinstance(self.draws, int) and self.draws >= 1, "draws", f"must be an integer >= 1, got {self.draws!r}")

    @torch.no_grad()
    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        best = x.clone()
        index = torch.arange(x.shape[0], device=x.device)  # the examples still robust
        for _ in range(self.draws):
            candidate = random_start(x[index], norm=self.norm, eps=self.eps)
            fooled = model(candidate).argmax(dim=1) != y[index]
            best[index] = candidate  # the last draw for the still-robust ones, a fooling draw for the others
            index = index[~fooled]  # one host sync per draw: the batch shrinks
            if not len(index):
                break
        return best
