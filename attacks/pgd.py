"""PGD (Madry et al. 2018): projected steepest ascent on the cross-entropy, with restarts.

Each step's forward pass also tells which iterates are already
misclassified: such an example keeps that iterate and leaves the batch. So an
attack that found an adversarial point never returns a non-adversarial one
(no "silent success"), and the remaining steps cost only what is still
robust. Examples are independent (the model is in eval mode), so the points
still attacked follow exactly the trajectory they would in a full batch.
Restarts, too, attack only what is still robust.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from attacks import ATTACKS
from attacks.base import Attack, AttackResult, loss_gradient
from attacks.threat_model import normalized, project, random_start
from bench.errors import require


@ATTACKS.register(
    "pgd",
    norms=("linf", "l2"),
    iterative=True,
    white_box=True,
    description="projected gradient descent with random start and restarts (Madry et al. 2018); norm linf or l2",
)
@dataclass(frozen=True, kw_only=True)
class PGD(Attack):
    steps: int = 10
    step_size: float | None = None  # None: 2.5 * eps / steps, as Madry et al.
    restarts: int = 1
    random_start: bool = True
    early_stop: bool = True  # a fooled example leaves the batch; False: every example takes every step (adversarial training)

    def __post_init__(self) -> None:
        super().__post_init__()
        require(isinstance(self.steps, int) and self.steps >= 1, "steps", f"must be an integer >= 1, got {self.steps!r}")
        require(isinstance(self.restarts, int) and self.restarts >= 1, "restarts", f"must be an integer >= 1, got {self.restarts!r}")
        require(self.step_size is None or self.step_size > 0, "step_size", f"must be > 0, got {self.step_size}")

    @property
    def alpha(self) -> float:
        return self.step_size if self.step_size is not None else 2.5 * self.eps / self.steps

    def settings(self) -> list[tuple[str, Any, str]]:
        derived = "" if self.step_size is not None else "derived: 2.5 * eps / steps"
        return [(name, self.alpha, derived) if name == "step_size" else (name, value, note) for name, value, note in super().settings()]

    def stronger(self) -> Attack:
        return dataclasses.replace(self, steps=2 * self.steps, step_size=self.alpha / 2)

    def gradient(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Ascent direction, whether each example is still classified correctly, and its loss."""
        grad, logits, losses = loss_gradient(model, x, y)
        return grad, logits.argmax(dim=1) == y, losses

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> AttackResult:
        first = self._run(model, x, y)
        best = first.x_adv
        for _ in range(self.restarts - 1):
            with torch.no_grad():
                robust = model(best).argmax(dim=1) == y
            if not robust.any():
                break
            best[robust] = self._run(model, x[robust], y[robust]).x_adv
        return dataclasses.replace(first, x_adv=best)

    def _run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> AttackResult:
        x_adv = random_start(x, norm=self.norm, eps=self.eps) if self.random_start else x.clone()
        active: torch.Tensor | None = None  # indices of examples still robust; None while all are
        loss_start = loss_end = None
        for _ in range(self.steps):
            current, clean, labels = (x_adv, x, y) if active is None else (x_adv[active], x[active], y[active])
            grad, robust, losses = self.gradient(model, current, labels)
            if loss_start is None:
                loss_start, loss_end = losses.clone(), losses.clone()
            else:
                loss_end[active if active is not None else slice(None)] = losses
            if self.early_stop and not robust.all():  # a fooled example keeps this iterate and leaves the batch
                active = (torch.arange(x.shape[0], device=x.device) if active is None else active)[robust]
                if active.numel() == 0:
                    break
                current, clean, grad = current[robust], clean[robust], grad[robust]
            stepped = project(current + self.alpha * normalized(grad, self.norm), clean, norm=self.norm, eps=self.eps)
            if active is None:
                x_adv = stepped
            else:
                x_adv[active] = stepped
        found = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)  # seen misclassified: left the batch
        found[active if active is not None else slice(None)] = False
        if not self.early_stop:
            found = None
        return AttackResult(x_adv.detach(), loss_start, loss_end, found)


ATTACKS.register("pgd-l2", PGD, defaults={"norm": "l2"}, norms=("l2",), iterative=True, white_box=True, description="pgd with norm l2")
