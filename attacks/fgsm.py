"""FGSM (Goodfellow et al. 2015): one signed-gradient step of size eps.

With ``norm="l2"`` it is the fast gradient method: one step of L2 length eps
along the gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from attacks import ATTACKS
from attacks.base import Attack, loss_gradient
from attacks.threat_model import normalized


@ATTACKS.register(
    "fgsm", norms=("linf", "l2"), iterative=False, white_box=True, description="one signed-gradient step of size eps (Goodfellow et al. 2015); norm linf or l2"
)
@dataclass(frozen=True, kw_only=True)
class FGSM(Attack):
    iterative: ClassVar[bool] = False

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        grad, _, _ = loss_gradient(model, x, y)
        return (x + self.eps * normalized(grad, self.norm)).clamp(0.0, 1.0).detach()


ATTACKS.register(
    "fgm-l2",
    FGSM,
    defaults={"norm": "l2"},
    norms=("l2",),
    iterative=False,
    white_box=True,
    description="fast gradient method: one L2 step of length eps (fgsm with norm l2)",
)
