"""What every attack shares: its threat model fields, its result, and the input gradient.

An attack is close to a pure function of ``(model, x, y)``: it uses the device
the tensors are on, never changes the model (no mode switch, no parameter
gradients), and returns a tensor of the input's shape, dtype and device.
Where the harness needs more than the tensor (the loss before and after, which
examples were found adversarial on the way), ``run`` returns an
``AttackResult`` carrying it; ``attack(model, x, y)`` is ``run(...).x_adv``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from attacks.threat_model import NORMS, check_inputs
from bench.errors import require


@dataclass(frozen=True)
class AttackResult:
    """An attack's output and what it saw on the way (``None`` where the attack cannot tell)."""

    x_adv: torch.Tensor
    loss_start: torch.Tensor | None = None  # per example: the loss at the first iterate
    loss_end: torch.Tensor | None = None  # per example: the loss at the last iterate evaluated
    found: torch.Tensor | None = None  # per example: misclassified at some iterate


@dataclass(frozen=True, kw_only=True)
class Attack:
    """Base of attacks: an eps-ball in ``norm`` around each input."""

    eps: float
    norm: str = "linf"

    white_box: ClassVar[bool] = True  # uses the model's gradients
    iterative: ClassVar[bool] = True  # more than one step

    def __post_init__(self) -> None:
        require(isinstance(self.eps, (int, float)) and not isinstance(self.eps, bool), "eps", f"must be a number, got {self.eps!r}")
        require(self.eps > 0, "eps", f"must be > 0, got {self.eps}")
        supported = self.norms()
        require(self.norm in supported, "norm", f"'{self.norm}' is not supported by {self.describe()}; supported: {', '.join(supported) or 'none'}")

    def norms(self) -> tuple[str, ...]:
        return NORMS

    def describe(self) -> str:
        return type(self).__name__

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.run(model, x, y).x_adv

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> AttackResult:
        check_inputs(model, x, y)
        if x.shape[0] == 0:
            return AttackResult(x.clone())
        out = self.perturb(model, x, y)
        return out if isinstance(out, AttackResult) else AttackResult(out)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | AttackResult:
        raise NotImplementedError

    def settings(self) -> list[tuple[str, Any, str]]:
        """The parameters it runs with, as ``(name, value, where the value comes from)`` (``bench list attacks NAME``)."""
        return [(f.name, getattr(self, f.name), "") for f in dataclasses.fields(self)]

    def stronger(self) -> Attack | None:
        """The same attack with twice the iterations (for the convergence check), or None if it has none."""
        return None

    def example_metrics(self, model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Extra per-example measurements of the returned points (EOT's transform-averaged accuracy)."""
        return {}


def loss_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input gradient of the summed cross-entropy, the logits and the per-example loss at ``x``.

    Only the input gradient is computed: the model's parameter ``.grad``
    fields are left as they were.
    """
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        logits = model(x)
        losses = F.cross_entropy(logits, y, reduction="none")
        grad = input_gradient(losses.sum(), x)
    return grad, logits.detach(), losses.detach()


def input_gradient(total: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """d total / d x; zero where the model cuts the graph (numpy, a codec) instead of an autograd error."""
    if not total.requires_grad:
        return torch.zeros_like(x)
    (grad,) = torch.autograd.grad(total, x, allow_unused=True)
    return torch.zeros_like(x) if grad is None else grad


def misclassified(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per example: the logits put another class first. In float32 (and float64) the argmax decides, as a prediction
    does; in a reduced precision (bf16 autocast) another class must lead by more than one unit of that precision,
    so that a rounding tie, which the float32 model breaks either way, does not pass for a fooled example (and
    stop its attack)."""
    if logits.dtype in (torch.float32, torch.float64):
        return logits.argmax(dim=1) != y
    unit = torch.finfo(logits.dtype).eps
    logits = logits.float()
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], -float("inf")).amax(dim=1)
    return other > true + unit * torch.maximum(true.abs(), other.abs())
