"""EOT (Athalye et al., ICML 2018): PGD on the expected loss over a distribution of transformations.

Each step averages the input gradient over ``samples`` draws (one batched
forward/backward over samples x batch). ``distribution="physical"`` is the
preset of small viewpoint, lighting and noise changes; any field of it can be
overridden (``rotation = 30``); ``distribution="none"`` averages over the
model's own randomness only, the attack a randomized defense needs.

Every example keeps the iterate with the highest expected loss. Besides the
usual robust accuracy, the harness reports the transform-averaged accuracy:
each returned example classified under ``eval_draws`` fresh draws of the same
distribution.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from attacks import ATTACKS
from attacks.base import AttackResult, input_gradient
from attacks.pgd import PGD
from attacks.threat_model import normalized, project, random_start
from attacks.transforms import PRESETS, Distribution
from bench.errors import require


@ATTACKS.register(
    "eot",
    norms=("linf", "l2"),
    iterative=True,
    white_box=True,
    description="expectation over transformation: PGD on the loss averaged over random transformations (Athalye et al. 2018)",
)
@dataclass(frozen=True, kw_only=True)
class EOT(PGD):
    samples: int = 8
    distribution: str = "physical"
    eval_draws: int = 16
    rotation: float | None = None
    translation: float | None = None
    scale: tuple[float, float] | list[float] | None = None
    brightness: float | None = None
    contrast: tuple[float, float] | list[float] | None = None
    noise: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.distribution in PRESETS, "distribution", f"must be one of {', '.join(PRESETS)}, got {self.distribution!r}")
        require(isinstance(self.samples, int) and self.samples >= 1, "samples", f"must be an integer >= 1, got {self.samples!r}")
        require(isinstance(self.eval_draws, int) and self.eval_draws >= 1, "eval_draws", f"must be an integer >= 1, got {self.eval_draws!r}")
        self.transforms  # noqa: B018  (validates the overrides now, not mid-run)

    @property
    def transforms(self) -> Distribution:
        overrides = {}
        for name in ("rotation", "translation", "scale", "brightness", "contrast", "noise"):
            value = getattr(self, name)
            if value is not None:
                overrides[name] = tuple(value) if isinstance(value, list) else value
        return dataclasses.replace(PRESETS[self.distribution], **overrides)

    def stronger(self) -> EOT:
        return dataclasses.replace(self, steps=2 * self.steps, step_size=self.alpha / 2)

    def expected_logits(self, model: nn.Module, x: torch.Tensor, draws: int) -> torch.Tensor:
        """Logits of every draw, shaped (draws, B, classes)."""
        return model(self.transforms.sample(x, draws)).view(draws, x.shape[0], -1)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> AttackResult:
        x_adv = random_start(x, norm=self.norm, eps=self.eps) if self.random_start else x.clone()
        best, best_loss = x_adv.clone(), torch.full((x.shape[0],), -float("inf"), device=x.device)
        loss_start = None
        for _ in range(self.steps):
            with torch.enable_grad():
                current = x_adv.detach().requires_grad_(True)
                logits = self.expected_logits(model, current, self.samples)
                losses = F.cross_entropy(logits.flatten(0, 1), y.repeat(self.samples), reduction="none").view(self.samples, -1).mean(0)
                grad = input_gradient(losses.sum(), current)
            losses = losses.detach()
            loss_start = losses.clone() if loss_start is None else loss_start
            improved = losses > best_loss  # kept on the device: no host sync per step
            best = torch.where(improved.view(-1, *([1] * (x.dim() - 1))), x_adv, best)
            best_loss = torch.where(improved, losses, best_loss)
            x_adv = project(x_adv + self.alpha * normalized(grad, self.norm), x, norm=self.norm, eps=self.eps).detach()
        return AttackResult(best, loss_start, best_loss, found=None)

    @torch.no_grad()
    def example_metrics(self, model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        correct = self.expected_logits(model, x_adv, self.eval_draws).argmax(dim=2) == y
        return {"transform_averaged_accuracy": correct.float().mean(dim=0)}
