"""Threat models: the Lp balls attacks must stay in, projections onto them, and the check.

Shared by the attacks (to project) and by the harness (to verify every
adversarial batch independently of the attack that made it).
"""

from __future__ import annotations

import torch
from torch import nn

from bench.errors import require

NORMS = ("linf", "l2")
TOLERANCE = 1e-6


def per_example_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """The Lp norm of each example's perturbation (shape: batch)."""
    flat = delta.reshape(delta.shape[0], -1)
    if norm == "linf":
        return flat.abs().amax(dim=1) if flat.shape[1] else flat.new_zeros(flat.shape[0])
    if norm == "l2":
        return flat.norm(p=2, dim=1)
    raise ValueError(f"unknown norm '{norm}'; known: {', '.join(NORMS)}")


def _expand(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.reshape(-1, *([1] * (like.dim() - 1)))


def project(x_adv: torch.Tensor, x: torch.Tensor, *, norm: str, eps: float) -> torch.Tensor:
    """Nearest point to ``x_adv`` (for L2 along the ray) inside the eps-ball around ``x`` and [0, 1]."""
    delta = x_adv - x
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    elif norm == "l2":
        lengths = per_example_norm(delta, "l2")
        delta = delta * _expand((eps / (lengths + 1e-12)).clamp(max=1.0), delta)
    else:
        raise ValueError(f"unknown norm '{norm}'; known: {', '.join(NORMS)}")
    return (x + delta).clamp(0.0, 1.0)


def normalized(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """The steepest-ascent direction of unit Lp norm (sign for Linf)."""
    if norm == "linf":
        return grad.sign()
    if norm == "l2":
        return grad / _expand(per_example_norm(grad, "l2") + 1e-12, grad)
    raise ValueError(f"unknown norm '{norm}'; known: {', '.join(NORMS)}")


def random_start(x: torch.Tensor, *, norm: str, eps: float) -> torch.Tensor:
    """A random point in the ball (uniform per coordinate for Linf; random direction and radius for L2)."""
    if norm == "linf":
        delta = torch.empty_like(x).uniform_(-eps, eps)
    else:
        direction = normalized(torch.randn_like(x), "l2")
        delta = direction * _expand(torch.rand(x.shape[0], device=x.device, dtype=x.dtype) * eps, x)
    return (x + delta).clamp(0.0, 1.0)


def violations(x: torch.Tensor, x_adv: torch.Tensor, *, norm: str, eps: float, tol: float = TOLERANCE) -> list[str]:
    """Flags for every way ``x_adv`` breaks the threat model; empty when it holds."""
    if not isinstance(x_adv, torch.Tensor):
        return ["not-a-tensor"]
    found = []
    if x_adv.shape != x.shape or x_adv.dtype != x.dtype or x_adv.device != x.device:
        return ["wrong-shape-dtype-or-device"]
    if not torch.isfinite(x_adv).all():
        return ["non-finite-adversarial"]
    if x_adv.numel() and (x_adv.min() < -tol or x_adv.max() > 1 + tol):
        found.append("outside-unit-range")
    if x.numel() and bool((per_example_norm(x_adv.detach() - x, norm) > eps + tol).any()):
        found.append("outside-threat-model")
    return found


def check_inputs(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """What every attack requires of its inputs: [0, 1] images, labels, one device."""
    require(x.is_floating_point(), "x", f"must be a floating-point tensor, got {x.dtype}")
    require(y.shape[:1] == x.shape[:1], "y", f"must have one label per input, got {tuple(y.shape)} for {tuple(x.shape)}")
    require(x.device == y.device, "y", f"is on {y.device} but x is on {x.device}")
    parameter = next(iter(model.parameters()), None)
    if parameter is not None:
        require(parameter.device == x.device, "x", f"is on {x.device} but the model is on {parameter.device}")
    if x.numel():
        require(bool(x.min() >= 0) and bool(x.max() <= 1), "x", "must lie in [0, 1] (normalization belongs inside the model)")
