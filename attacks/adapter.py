"""What the torchattacks and ART adapters share: names, threat models, parameters, the contract.

A library attack is made usable under our attack contract: inputs stay on
their device, the model's modes are restored whatever the library does, the
library's random seeding does not leak into ours, and the threat model is
declared per attack class (``THREAT_MODELS``): ``bounded`` attacks must stay
in the eps-ball by themselves (the harness verifies it), ``minimum-norm``
attacks (CW, DeepFool, ...) are projected onto the ball, as evaluating them
at a budget means. Attacks of other threat models (L0, L1, patches, ...) are
refused with the reason.

Step sizes scale with eps (``STEP_RULES``): a library's absolute default
(torchattacks' ``alpha=2/255``, ART's ``eps_step=0.1``) is right at one eps
only, so a class listed there gets ``factor * eps / steps`` (as our ``pgd``
does), unless the spec sets the step itself.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from attacks.base import Attack
from attacks.threat_model import project
from bench.errors import ParamError, UserError, did_you_mean
from bench.guard import preserved_modes


@dataclass(frozen=True)
class ThreatModel:
    norms: tuple[str, ...]
    kind: str = "bounded"  # bounded | minimum-norm | unsupported
    reason: str = ""


def unsupported(reason: str) -> ThreatModel:
    return ThreatModel((), "unsupported", reason)


@dataclass(frozen=True)
class StepRule:
    """A step size derived from eps: ``factor * eps / <steps>``, or ``factor * eps`` where ``steps`` is None."""

    param: str  # the library's step-size argument (alpha, eps_step)
    steps: str | None = None  # the argument holding the number of steps (steps, max_iter)
    factor: float = 2.5  # 2.5 * eps / steps: Madry et al.'s rule, our pgd's

    def formula(self) -> str:
        return f"{self.factor:g} * eps" + (f" / {self.steps}" if self.steps else "")


@dataclass(frozen=True, kw_only=True)
class LibraryAttack(Attack):
    """Base of adapters: ``name`` is the library's class, ``params`` its keyword arguments."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    library: ClassVar[str] = ""
    THREAT_MODELS: ClassVar[dict[str, ThreatModel]] = {}
    BLACK_BOX: ClassVar[frozenset[str]] = frozenset()  # classes that use only the model's outputs
    SINGLE_STEP: ClassVar[frozenset[str]] = frozenset()
    RESERVED: ClassVar[tuple[str, ...]] = ()  # constructor arguments the adapter fills itself
    STEP_RULES: ClassVar[dict[str, StepRule]] = {}  # class: how its step size follows eps
    FILLED: ClassVar[dict[str, tuple[Any, str]]] = {}  # arguments the adapter fills unless given: (value, or None where the inputs decide; how)

    def __post_init__(self) -> None:
        classes = self.classes()
        if self.name not in classes:
            raise UserError(f"{self.library} has no attack '{self.name}'{did_you_mean(self.name, classes)}")
        threat = self.threat_model()
        if threat.kind == "unsupported":
            raise UserError(f"{self.describe()} is not usable here: {threat.reason}")
        accepted = self.accepted() - set(self.RESERVED)
        for key in self.params:
            if key not in accepted:
                hint = did_you_mean(key, accepted).removeprefix("; ")
                raise ParamError(key, f"{self.describe()} does not take '{key}'{f' ({hint})' if hint else ''}; it takes: {', '.join(sorted(accepted))}")
        rule = self.step_rule()
        if rule is not None and rule.steps in self.params:
            steps = self.params[rule.steps]
            if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
                raise ParamError(rule.steps, f"must be an integer >= 1, got {steps!r}")
        super().__post_init__()

    # -- what subclasses provide --------------------------------------------
    def classes(self) -> dict[str, type]:
        raise NotImplementedError

    def build(self, model: nn.Module, x: torch.Tensor, kwargs: dict[str, Any]) -> Any:
        raise NotImplementedError

    def generate(self, attack: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------
    @property
    def white_box(self) -> bool:  # type: ignore[override]
        return self.name not in self.BLACK_BOX

    @property
    def iterative(self) -> bool:  # type: ignore[override]
        return self.name not in self.SINGLE_STEP

    def describe(self) -> str:
        return f"{self.library}:{self.name}"

    def threat_model(self) -> ThreatModel:
        return self.THREAT_MODELS.get(self.name) or unsupported(
            f"its threat model is not declared (known: {', '.join(n for n, t in self.THREAT_MODELS.items() if t.kind != 'unsupported')})"
        )

    def norms(self) -> tuple[str, ...]:
        return self.threat_model().norms

    def accepted(self) -> set[str]:
        return {p for p in inspect.signature(self.classes()[self.name].__init__).parameters if p not in ("self", "args", "kwargs")}

    def step_rule(self) -> StepRule | None:
        return self.STEP_RULES.get(self.name)

    def derived_params(self) -> dict[str, Any]:
        """The step size this attack takes from eps (empty where its class has no rule or the spec sets the step)."""
        rule = self.step_rule()
        if rule is None or rule.param in self.params:
            return {}
        steps = 1 if rule.steps is None else self.params.get(rule.steps, self._default(rule.steps))
        return {rule.param: rule.factor * self.eps / steps}

    def settings(self) -> list[tuple[str, Any, str]]:
        rows: list[tuple[str, Any, str]] = [("eps", self.eps, ""), ("norm", self.norm, "")]
        derived = self.derived_params()
        rule = self.step_rule()
        for key in sorted(self.accepted() - set(self.RESERVED)):
            if key in self.params:
                rows.append((key, self.params[key], "given"))
            elif key in derived and rule is not None:
                rows.append((key, derived[key], f"derived: {rule.formula()}"))
            elif key in self.FILLED:
                value, how = self.FILLED[key]
                rows.append((key, value, f"set by the adapter{f': {how}' if how else ''}"))
            else:
                rows.append((key, self._default(key), "library default"))
        return rows

    def stronger(self) -> Attack | None:
        rule = self.step_rule()
        for key in ("steps", "max_iter", "n_queries", "nb_iter"):
            value = self.params.get(key, self._default(key))
            if isinstance(value, int):
                params = {**self.params, key: 2 * value}
                if rule is not None and rule.steps == key and rule.param in self.params:  # a given step halves, as pgd's does
                    params[rule.param] = self.params[rule.param] / 2
                return type(self)(eps=self.eps, norm=self.norm, name=self.name, params=params)
        return None

    def _default(self, key: str) -> Any:
        parameter = inspect.signature(self.classes()[self.name].__init__).parameters.get(key)
        return None if parameter is None else parameter.default

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        kwargs = {**self.derived_params(), **self.params}
        with preserved_modes(model), preserved_gradients(model), torch.random.fork_rng(devices=[x.device] if x.is_cuda else []):
            attack = self.build(model, x, kwargs)
            x_adv = self.generate(attack, x, y).detach().to(device=x.device, dtype=x.dtype)
        if self.threat_model().kind == "minimum-norm":
            x_adv = project(x_adv, x, norm=self.norm, eps=self.eps)
        return x_adv


@contextmanager
def preserved_gradients(model: nn.Module) -> Iterator[None]:
    """Libraries call ``loss.backward()``: keep the parameters' ``.grad`` and ``requires_grad`` as they were."""
    saved = [(p, p.grad, p.requires_grad) for p in model.parameters()]
    for p, _, _ in saved:
        p.grad = None
    try:
        yield
    finally:
        for p, grad, requires_grad in saved:
            p.grad = grad
            p.requires_grad_(requires_grad)


def number_of_classes(model: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad():
        return int(model(x[:1]).shape[1])
