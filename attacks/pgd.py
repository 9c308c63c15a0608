"""PGD (Madry et al. 2018): projected steepest ascent on the cross-entropy, with restarts.

Each step's forward pass also tells which iterates are already
misclassified: such an example keeps that iterate and leaves the batch (at
the next check: every step on the CPU; on CUDA, where a check waits for the
device, every ``CUDA_CHECK_EVERY`` steps, frozen in the batch meanwhile). So an
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
from attacks.base import Attack, AttackResult, loss_gradient, misclassified
from attacks.threat_model import normalized, project, random_start
from bench.errors import require

CUDA_CHECK_EVERY = 5  # on CUDA a removal waits for the device: fooled examples stay frozen in the batch until the next check


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
    check_every: int | None = None  # steps between removals of fooled examples (a host sync); None: 1 on the CPU, 5 on CUDA. Same numbers

    def __post_init__(self) -> None:
        super().__post_init__()
        require(isinstance(self.steps, int) and self.steps >= 1, "steps", f"must be an integer >= 1, got {self.steps!r}")
        require(isinstance(self.restarts, int) and self.restarts >= 1, "restarts", f"must be an integer >= 1, got {self.restarts!r}")
        require(self.step_size is None or self.step_size > 0, "step_size", f"must be > 0, got {self.step_size}")
        require(self.check_every is None or (isinstance(self.check_every, int) and self.check_every >= 1), "check_every", "must be an integer >= 1")

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
        return grad, ~misclassified(logits, y), losses

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> AttackResult:
        first = self._run(model, x, y)
        best = first.x_adv
        for _ in range(self.restarts - 1):
            with torch.no_grad():
                robust = ~misclassified(model(best), y)
            if not robust.any():
                break
            best[robust] = self._run(model, x[robust], y[robust]).x_adv
        return dataclasses.replace(first, x_adv=best)

    def _run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> AttackResult:
        x_adv = random_start(x, norm=self.norm, eps=self.eps) if self.random_start else x.clone()
        every = self.check_every or (CUDA_CHECK_EVERY if x.is_cuda else 1)
        rows = torch.arange(x.shape[0], device=x.device)  # the examples still in the batch (indices into x)
        current, clean, labels = x_adv, x, y
        frozen = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)  # per row of the batch: fooled, keeps that iterate
        loss_start = loss_end = None
        for step in range(self.steps):
            grad, robust, losses = self.gradient(model, current, labels)
            if loss_start is None:
                loss_start, loss_end = losses.clone(), losses.clone()
            else:
                loss_end[rows] = torch.where(frozen, loss_end[rows], losses)
            stepped = project(current + self.alpha * normalized(grad, self.norm), clean, norm=self.norm, eps=self.eps)
            if not self.early_stop:
                current = stepped
                continue
            frozen = frozen | ~robust  # a fooled example keeps this iterate (no host sync: decided on the device)
            current = torch.where(frozen.view(-1, *([1] * (x.dim() - 1))), current, stepped)
            if (step + 1) % every == 0 and step + 1 < self.steps:  # the frozen leave the batch: one host sync per check
                keep = (~frozen).nonzero().squeeze(1)
                if len(keep) < len(frozen):
                    x_adv[rows] = current
                    rows, current, clean, labels, frozen = rows[keep], current[keep], clean[keep], labels[keep], frozen[keep]
                    if not len(rows):
                        break
        x_adv[rows] = current
        found = None
        if self.early_stop:  # seen misclassified: left the batch, or frozen in it
            found = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
            found[rows] = frozen
        return AttackResult(x_adv.detach(), loss_start, loss_end, found)


ATTACKS.register("pgd-l2", PGD, defaults={"norm": "l2"}, norms=("l2",), iterative=True, white_box=True, description="pgd with norm l2")
