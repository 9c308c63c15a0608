"""Presets: one name for a fixed list of attacks that run as a cascade, each on what the earlier ones left robust.

``autoattack-standard`` is AutoAttack's standard protocol (Croce & Hein 2020)
with the arguments torchattacks' ``AutoAttack(version="standard", seed=0)``
gives its four attacks: APGD-CE, APGD-T over 9 target classes, FAB-T over 9
target classes (fewer when the model has fewer than 10 classes), Square with
5,000 queries; one restart each, 10 iterations for the three white-box ones
(torchattacks' default; the authors' code uses 100) and seed 0.

A spec's ``[[attacks]]`` entry or ``bench.evaluate(attacks=[...])`` naming a
preset becomes its members, one column each (``expand``)::

    expand("autoattack-standard", {"norm": "l2"})
    # [("apgd-ce", {"steps": 10, ..., "norm": "l2"}, "aa-apgd-ce"), ("apgd-t", ...), ("fab-t", ...), ("square", ...)]

``ATTACKS.create("autoattack-standard", eps=...)`` is the same cascade as one
attack (one column), for callers that take a single attack.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from attacks import ATTACKS
from attacks.base import Attack, AttackResult, misclassified
from attacks.threat_model import NORMS
from bench.errors import ParamError, did_you_mean

Member = tuple[str, Mapping[str, Any], str]  # (registered attack name, its parameters, column label)

_SEED = {"n_restarts": 1, "seed": 0}
PRESETS: dict[str, tuple[Member, ...]] = {
    "autoattack-standard": (
        ("apgd-ce", {"steps": 10, **_SEED}, "aa-apgd-ce"),
        ("apgd-t", {"steps": 10, "n_target_classes": 9, **_SEED}, "aa-apgd-t"),
        ("fab-t", {"steps": 10, "n_target_classes": 9, **_SEED}, "aa-fab-t"),
        ("square", {"n_queries": 5000, **_SEED}, "aa-square"),
    ),
}
DESCRIPTIONS = {
    "autoattack-standard": "AutoAttack standard as a cascade of 4 columns: APGD-CE, APGD-T (9 targets), FAB-T (9 targets), Square (5,000 queries)",
}
PASSED_ON = ("norm", "seed")  # a preset's own parameters, given to every member


def expand(name: str, params: Mapping[str, Any] | None = None) -> list[tuple[str, dict[str, Any], str]] | None:
    """The members of preset ``name`` as ``(attack name, parameters, label)``, in cascade order; None if it is no preset.

    ``params`` (``norm``, ``seed``) go to every member; eps does not (the
    caller passes it to ``ATTACKS.create``). Any other key is a ``ParamError``.
    """
    members = PRESETS.get(name)
    if members is None:
        return None
    for key in params or {}:
        if key not in PASSED_ON:
            hint = did_you_mean(key, PASSED_ON).removeprefix("; ")
            raise ParamError(key, f"attack preset '{name}' does not take '{key}'{f' ({hint})' if hint else ''}; it takes: {', '.join(PASSED_ON)}")
    return [(attack, {**fixed, **(params or {})}, label) for attack, fixed, label in members]


@dataclass(frozen=True, kw_only=True)
class Preset(Attack):
    """A preset as one attack: its members in turn, each on the points still classified correctly."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.members()  # a bad parameter fails now, not in the middle of a run

    def norms(self) -> tuple[str, ...]:
        supported = [set(ATTACKS.meta(attack).get("norms", NORMS)) for attack, _, _ in PRESETS[self.name]]
        return tuple(n for n in NORMS if all(n in s for s in supported))

    def describe(self) -> str:
        return self.name

    def members(self) -> list[tuple[str, Attack]]:
        """``(label, attack)`` per member, at this eps and norm."""
        expanded = expand(self.name, {"norm": self.norm, **self.params}) or []
        return [(label, ATTACKS.create(attack, eps=self.eps, **params)) for attack, params, label in expanded]

    @property
    def white_box(self) -> bool:  # type: ignore[override]
        return any(attack.white_box for _, attack in self.members())

    def settings(self) -> list[tuple[str, Any, str]]:
        return [("eps", self.eps, ""), ("norm", self.norm, "")] + [(label, attack.describe(), "member") for label, attack in self.members()]

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> AttackResult:
        x_adv = x.clone()
        with torch.no_grad():
            robust = ~misclassified(model(x), y)
        for _, attack in self.members():
            index = robust.nonzero().squeeze(1)
            if index.numel() == 0:
                break
            candidate = attack(model, x[index], y[index])
            with torch.no_grad():
                fooled = misclassified(model(candidate), y[index])
            x_adv[index[fooled]] = candidate[fooled]
            robust[index[fooled]] = False
        return AttackResult(x_adv.detach())


def _factory(preset: str):
    def factory(*, eps: float, norm: str = "linf", **params: Any) -> Preset:
        return Preset(eps=eps, norm=norm, name=preset, params=params)

    factory.__name__ = preset.replace("-", "_")
    return factory


for _name in PRESETS:
    ATTACKS.register(_name, _factory(_name), norms=("linf", "l2"), preset=True, description=DESCRIPTIONS[_name])
