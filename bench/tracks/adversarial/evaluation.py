"""Robust accuracy as the worst case over a cascade of attacks, with sanity checks.

Each attack runs only on the points every earlier attack failed on, cheap
ones first; an example counts as robust only if it survives them all. That is
the per-example minimum over attacks ("every attack on every point, then the
minimum") at a fraction of its cost, as long as each attack's outcome on a
point does not depend on the other points of its batch (true for the attacks
here in eval mode, up to their random draws).

``attack_step`` is one attack of the cascade (the harness runs it as one
job); ``evaluate`` runs a whole cascade in process, for notebooks and tools:

    from bench import evaluate
    result = evaluate(model, x, y, eps=8/255, norm="linf")   # the default cascade
    result.robust_accuracy, result.per_attack, result.robust, result.flags
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from attacks import ATTACKS
from attacks.base import Attack
from attacks.threat_model import violations
from bench.guard import ModelWatch, eval_mode, predict
from bench.tracks.adversarial import sanity

# cheap to strong; the black-box attack last, on what survives every gradient attack
DEFAULT_CASCADE: tuple[tuple[str, Mapping[str, Any]], ...] = (
    ("fgsm", {}),
    ("pgd", {"steps": 20}),
    ("apgd-ce", {}),
    ("apgd-dlr", {}),
    ("square", {"n_queries": 250}),
)
INVALIDATING = frozenset({"outside-threat-model", "outside-unit-range", "non-finite-adversarial", "wrong-shape-dtype-or-device", "modified-model"})


@dataclass(frozen=True)
class History:
    """What an earlier attack of the cascade did: which points it broke."""

    attack: Attack
    broken: torch.Tensor  # bool per example


@dataclass
class StepResult:
    """One attack of the cascade: cumulative robustness after it, and what it showed."""

    robust: torch.Tensor  # bool per example, after this attack and every earlier one
    attacked: torch.Tensor  # bool per example: the points it ran on
    status: str = "ok"  # ok | invalid (then ``robust`` is the state before it)
    flags: list[str] = field(default_factory=list)
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    x_adv: torch.Tensor | None = None  # the returned points (clean inputs where not attacked)

    @property
    def broken(self) -> torch.Tensor:
        return self.attacked & ~self.robust


def attack_step(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: Attack,
    *,
    robust: torch.Tensor,
    history: Sequence[History] = (),
    batch_size: int = 256,
    checks: bool = True,
    convergence_check: bool = True,
    surrogate: nn.Module | None = None,
) -> StepResult:
    """Run ``attack`` on the points still ``robust``, verify every batch, re-predict, and check.

    The model must already be in eval mode (the caller owns its mode). ``surrogate`` (another model, e.g.
    the undefended one) feeds the transfer check of the last gradient attack (``convergence_check``).
    """
    n = len(y)
    index = robust.nonzero().squeeze(1)
    x_adv = x.clone()
    fooled = torch.zeros(len(index), dtype=torch.bool, device=x.device)
    flags: list[str] = []
    per_example: dict[str, torch.Tensor] = {}
    results = []
    start = time.perf_counter()
    for batch in index.split(batch_size):
        watch = ModelWatch(model)
        result = attack.run(model, x[batch], y[batch])
        flags += watch.changes() + violations(x[batch], result.x_adv, norm=attack.norm, eps=attack.eps)
        if set(flags) & INVALIDATING:
            return StepResult(robust.clone(), robust.clone(), "invalid", sorted(set(flags)), time.perf_counter() - start)
        x_adv[batch] = result.x_adv.detach()
        results.append(result)
    seconds = time.perf_counter() - start
    if len(index):
        fooled = predict(model, x_adv[index], batch_size) != y[index]
        for key, values in attack.example_metrics(model, x_adv[index], y[index]).items():
            per_example[key] = values
    after = robust.clone()
    after[index[fooled]] = False
    step = StepResult(after, robust.clone(), flags=flags, seconds=seconds, x_adv=x_adv)
    for key, values in per_example.items():  # points not attacked (already broken or misclassified) count as 0
        step.metrics[key] = float(values.sum()) / n if n else 0.0
    if checks and len(index):
        step.flags += _attack_checks(model, x, y, attack, index, fooled, results, history, n, convergence_check, surrogate)
    step.flags = sorted(set(step.flags))
    return step


def _attack_checks(model, x, y, attack, index, fooled, results, history, n, convergence_check, surrogate) -> list[str]:
    flags = []
    offset = 0
    for result in results:
        size = len(result.x_adv)
        flags += sanity.run_checks(result, fooled[offset : offset + size])
        offset += size
    survivors = index[~fooled]
    if convergence_check:
        flags += sanity.convergence_check(model, attack, x, y, survivors, n)
        flags += sanity.transfer_check(model, surrogate, attack, x, y, survivors, n)
    flags += sanity.noise_check(model, attack, x, y, survivors, n)
    single_step_broken = [h.broken for h in history if not h.attack.iterative]
    first_iterative = not any(h.attack.iterative and h.attack.white_box for h in history)
    if single_step_broken and first_iterative:  # the classic comparison: FGSM, then the first iterative attack
        broken = torch.stack(single_step_broken).any(dim=0).nonzero().squeeze(1)
        flags += sanity.weaker_attack_check(model, attack, x, y, broken, n)
    flags += sanity.black_box_check(attack, int(fooled.sum()), n, all(h.attack.white_box for h in history))
    return flags


@dataclass(frozen=True)
class Evaluation:
    """The worst case over a cascade of attacks."""

    robust_accuracy: float
    clean_accuracy: float
    per_attack: dict[str, float]  # attack -> robust accuracy after it and every attack before it
    robust: torch.Tensor  # bool per example
    flags: list[str]
    seconds: dict[str, float]


def build_cascade(attacks: Sequence[Any] | None, *, eps: float, norm: str) -> list[tuple[str, Attack]]:
    """Attack objects from names, ``(name, params)`` pairs or ready attacks; None: the default cascade."""
    cascade = []
    for item in DEFAULT_CASCADE if attacks is None else attacks:
        if isinstance(item, Attack):
            cascade.append((getattr(item, "label", None) or type(item).__name__.lower(), item))
            continue
        name, params = (item, {}) if isinstance(item, str) else item
        cascade.append((name, ATTACKS.create(name, eps=eps, norm=norm, **params)))
    return cascade


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    norm: str = "linf",
    attacks: Sequence[Any] | None = None,
    batch_size: int = 256,
    seed: int = 0,
    checks: bool = True,
    surrogate: nn.Module | None = None,
) -> Evaluation:
    """Robust accuracy of ``model`` on ``(x, y)``: the worst case over ``attacks`` (None: the default cascade).

    ``surrogate``: another model (e.g. the undefended one) whose PGD examples are replayed on ``model`` after the
    last gradient attack; breaking more than a point of what survived flags ``transfer-beats-white-box``.
    """
    cascade = build_cascade(attacks, eps=eps, norm=norm)
    n = len(y)
    with eval_mode(model):
        clean = predict(model, x, batch_size) == y
        robust = clean.clone()
        flags: list[str] = []
        if checks:
            flags += sanity.model_checks(model, x, y, norm=norm)[0]
        per_attack: dict[str, float] = {}
        seconds: dict[str, float] = {}
        history: list[History] = []
        gradient_attacks = [i for i, (_, attack) in enumerate(cascade) if attack.white_box and attack.iterative]
        for i, (label, attack) in enumerate(cascade):
            torch.manual_seed(seed + i)
            last = bool(gradient_attacks) and i == gradient_attacks[-1]  # later attacks make up for an earlier one stopping short
            step = attack_step(
                model, x, y, attack, robust=robust, history=history, batch_size=batch_size, checks=checks, convergence_check=last, surrogate=surrogate
            )
            flags += step.flags
            if step.status == "ok":
                robust = step.robust
                history.append(History(attack, step.broken))
            per_attack[label] = robust.float().mean().item() if n else 0.0
            seconds[label] = step.seconds
    accuracy = robust.float().mean().item() if n else 0.0
    return Evaluation(accuracy, clean.float().mean().item() if n else 0.0, per_attack, robust, sorted(set(flags)), seconds)
