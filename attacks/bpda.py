"""BPDA (Athalye, Carlini, Wagner, ICML 2018, "Obfuscated Gradients").

A non-differentiable input transformation (quantization, JPEG, median
filtering) zeroes or shatters the input gradient, so gradient attacks fail
against it without the model being robust. BPDA keeps the transformation on
the forward pass and replaces its backward pass by that of a differentiable
approximation: the identity (straight-through) by default, or one the user
gives.

* ``Preprocessing`` / ``straight_through(fn)`` wrap a transformation as a
  module; it behaves exactly like ``fn`` except inside ``bpda_mode()``.
* The ``bpda`` attack runs any attack (``pgd`` by default, ``eot`` for a
  randomized defense) inside ``bpda_mode()``. Submodules of a user's model
  that are not ``Preprocessing`` can be named with ``modules = [...]``: their
  output gets the straight-through backward pass for the duration of the attack.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from attacks import ATTACKS
from attacks.base import Attack, AttackResult
from bench.errors import UserError

_ACTIVE: contextvars.ContextVar[bool] = contextvars.ContextVar("bpda_active", default=False)


@contextmanager
def bpda_mode() -> Iterator[None]:
    """Inside: every ``Preprocessing`` module back-propagates through its approximation."""
    token = _ACTIVE.set(True)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def _through(approximation: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """``exact`` on the forward pass, the gradient of ``approximation`` on the backward pass."""
    return approximation + (exact - approximation).detach()


class Preprocessing(nn.Module):
    """An input transformation inside a model that may not be differentiable.

    Subclasses implement ``transform``; ``approximate`` is the differentiable
    stand-in used under BPDA (the identity unless overridden).
    """

    differentiable = False
    randomized = False

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def approximate(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        exact = self.transform(x)
        if _ACTIVE.get():
            return _through(self.approximate(x), exact)
        if x.requires_grad and not exact.requires_grad:  # computed outside autograd (numpy, JPEG codec): a zero gradient, not a broken graph
            return exact + 0 * x
        return exact


class _Function(Preprocessing):
    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], backward: Callable[[torch.Tensor], torch.Tensor] | None) -> None:
        super().__init__()
        self.fn, self.backward = fn, backward

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def approximate(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.backward is None else self.backward(x)


def straight_through(fn: Callable[[torch.Tensor], torch.Tensor], backward: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Preprocessing:
    """Wrap ``fn`` as a module whose backward pass under BPDA is the identity (or ``backward``'s)."""
    return _Function(fn, backward)


@contextmanager
def _hooked(model: nn.Module, names: Sequence[str]) -> Iterator[None]:
    modules = dict(model.named_modules())
    handles = []
    for name in names:
        if name not in modules:
            raise UserError(f"bpda: the model has no submodule '{name}'; it has: {', '.join(n for n in modules if n)[:300]}")

        def hook(module: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor, name: str = name) -> torch.Tensor:
            if output.shape != inputs[0].shape:
                raise UserError(f"bpda: submodule '{name}' changes the shape of its input; wrap it with straight_through(fn, backward=...)")
            return _through(inputs[0], output)

        handles.append(modules[name].register_forward_hook(hook))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@dataclass(frozen=True, kw_only=True)
class BPDAAttack(Attack):
    inner: Attack
    modules: tuple[str, ...] = field(default=())

    def norms(self) -> tuple[str, ...]:
        return self.inner.norms()

    @property
    def white_box(self) -> bool:  # type: ignore[override]
        return self.inner.white_box

    @property
    def iterative(self) -> bool:  # type: ignore[override]
        return self.inner.iterative

    def describe(self) -> str:
        return f"bpda({self.inner.describe()})"

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> AttackResult:
        with bpda_mode(), _hooked(model, self.modules):
            return self.inner.run(model, x, y)

    def stronger(self) -> Attack | None:
        inner = self.inner.stronger()
        return None if inner is None else BPDAAttack(eps=self.eps, norm=self.norm, inner=inner, modules=self.modules)

    def example_metrics(self, model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.inner.example_metrics(model, x_adv, y)


@ATTACKS.register(
    "bpda",
    norms=("linf", "l2"),
    iterative=True,
    white_box=True,
    adaptive=True,
    description="backward-pass differentiable approximation: any attack (default pgd) through non-differentiable preprocessing",
)
def bpda(*, eps: float, norm: str = "linf", attack: str = "pgd", modules: Sequence[str] = (), **params: Any) -> BPDAAttack:
    if attack == "bpda":
        raise UserError("bpda: attack must be another attack, not 'bpda'")
    inner = ATTACKS.create(attack, eps=eps, norm=norm, **params)
    return BPDAAttack(eps=eps, norm=norm, inner=inner, modules=tuple(modules))
