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

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from attacks import ATTACKS
from attacks.base import Attack, AttackResult
from attacks.threat_model import violations
from bench import accel
from bench.errors import UserError
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
DEFAULT_DRAWS = 25  # forward passes whose majority is one prediction of a randomized model
# signs that gradient attacks are blocked rather than the model robust: each calls for BPDA
MASKING = frozenset({"masked-gradients", "noise-beats-white-box", "transfer-beats-white-box", "black-box-beats-white-box"})
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
    checks_broke: dict[str, int] = field(default_factory=dict)  # check -> points its own examples broke (counted in ``robust``)

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
    draws: int = 1,
) -> StepResult:
    """Run ``attack`` on the points still ``robust``, verify every batch, re-predict, and check.

    The model must already be in eval mode (the caller owns its mode). ``surrogate`` (another model, e.g.
    the undefended one) feeds the transfer check of the last gradient attack (``convergence_check``).
    ``draws``: forward passes whose majority is one prediction (a randomized model). Points the checks'
    own adversarial examples break (doubled iterations, noise, transfer) count as broken, once those
    examples pass the same threat-model verification as the attack's.
    """
    n = len(y)
    index = robust.nonzero().squeeze(1)
    x_adv = x.clone()
    fooled = torch.zeros(len(index), dtype=torch.bool, device=x.device)
    flags: list[str] = []
    per_example: dict[str, torch.Tensor] = {}
    results = []
    start = time.perf_counter()
    precision = accel.current().precision

    def run(chunk: torch.Tensor) -> tuple[torch.Tensor, AttackResult] | None:
        if set(flags) & INVALIDATING:  # an earlier batch left the threat model: the step is invalid, the rest need not run
            return None
        batch = index[chunk]
        watch = ModelWatch(model)
        with accel.autocast(precision, x.device):
            result = attack.run(model, x[batch], y[batch])
        flags.extend(watch.changes() + violations(x[batch], result.x_adv, norm=attack.norm, eps=attack.eps))
        return batch, result

    for item in accel.batched(attack.describe(), len(index), x.device, run, batch_size=batch_size):  # halved on out-of-memory
        if item is None or set(flags) & INVALIDATING:
            return StepResult(robust.clone(), robust.clone(), "invalid", sorted(set(flags)), time.perf_counter() - start)
        batch, result = item
        x_adv[batch] = result.x_adv.detach()
        results.append(result)
    seconds = time.perf_counter() - start
    if len(index):
        fooled = predict(model, x_adv[index], batch_size, draws=draws) != y[index]
        for key, values in attack.example_metrics(model, x_adv[index], y[index]).items():
            per_example[key] = values
    after = robust.clone()
    after[index[fooled]] = False
    step = StepResult(after, robust.clone(), flags=flags, seconds=seconds, x_adv=x_adv)
    for key, values in per_example.items():  # points not attacked (already broken or misclassified) count as 0
        step.metrics[key] = float(values.sum()) / n if n else 0.0
    if checks and len(index):
        flags, found = _attack_checks(model, x, y, attack, index, fooled, results, history, n, convergence_check, surrogate, draws)
        step.flags += flags
        for check in found:
            _count(step, check, x, attack)
    step.flags = sorted(set(step.flags))
    return step


def _count(step: StepResult, check: sanity.Found, x: torch.Tensor, attack: Attack) -> None:
    """Count a check's adversarial examples as broken points, once verified against the attack's threat model."""
    if not len(check.broken):
        return
    if violations(x[check.broken], check.x_adv, norm=attack.norm, eps=attack.eps):
        step.flags.append("check-outside-threat-model")
        return
    new = check.broken[step.robust[check.broken]]
    step.robust[check.broken] = False
    assert step.x_adv is not None
    step.x_adv[check.broken] = check.x_adv
    if len(new):
        step.checks_broke[check.name] = step.checks_broke.get(check.name, 0) + len(new)


def _attack_checks(model, x, y, attack, index, fooled, results, history, n, convergence_check, surrogate, draws) -> tuple[list[str], list[sanity.Found]]:
    flags = []
    offset = 0
    for result in results:
        size = len(result.x_adv)
        flags += sanity.run_checks(result, fooled[offset : offset + size], draws=draws)
        offset += size
    survivors = index[~fooled]
    found = [sanity.noise_check(model, attack, x, y, survivors, n, draws=draws)]
    if convergence_check:
        found.append(sanity.convergence_check(model, attack, x, y, survivors, n, draws=draws))
        found.append(sanity.transfer_check(model, surrogate, attack, x, y, survivors, n, draws=draws))
    single_step_broken = [h.broken for h in history if not h.attack.iterative]
    first_iterative = not any(h.attack.iterative and h.attack.white_box for h in history)
    if single_step_broken and first_iterative:  # the classic comparison: FGSM, then the first iterative attack
        broken = torch.stack(single_step_broken).any(dim=0).nonzero().squeeze(1)
        flags += sanity.weaker_attack_check(model, attack, x, y, broken, n, draws=draws)
    flags += sanity.black_box_check(attack, int(fooled.sum()), n, all(h.attack.white_box for h in history))
    return flags + [flag for check in found for flag in check.flags], found


def implausible(eps: float, norm: str, input_shape: Sequence[int]) -> str | None:
    """Why ``eps`` is no budget for data in [0, 1] (a Linf eps above 0.5 reaches mid-gray from any image; an L2 eps
    beyond the cube's diameter allows any image), or None. A Linf eps above 1 is almost always meant as eps/255."""
    if norm == "linf" and eps > 0.5:
        hint = f"did you mean {eps:g}/255 = {eps / 255:.4g}?"
        return f"{eps:g} is not a plausible Linf budget for data in [0, 1] (above 0.5 any image can become any other); {hint}"
    diameter = math.sqrt(math.prod(input_shape))
    if norm == "l2" and eps > diameter:
        return f"{eps:g} exceeds the L2 diameter of the data's [0, 1] cube (sqrt({math.prod(input_shape)}) = {diameter:.3g}): every image is within reach"
    return None


def adaptive_attack(*, randomized: bool, masked: bool) -> tuple[str, dict[str, Any], str] | None:
    """The adaptive attack a model calls for, as (attack name, params, label): the one rule of ``bench run`` and ``evaluate``.

    Randomized (outputs differ on the same input, or declared): EOT over the model's own randomness; masked
    gradients (zero or not finite, noise / transfer / black-box beating white-box, or declared not
    differentiable): BPDA; both: BPDA around EOT.
    """
    if not randomized and not masked:
        return None
    eot = {"distribution": "none", "samples": 4, "steps": 20}
    if randomized and masked:
        return "bpda", {"attack": "eot", **eot}, "bpda+eot"
    return ("eot", eot, "eot") if randomized else ("bpda", {"steps": 20}, "bpda")


def adaptive_position(attacks: Sequence[Attack]) -> int:
    """Where the adaptive attack goes: after the last white-box attack (before the black-box ones), else first."""
    white_box = [i for i, attack in enumerate(attacks) if attack.white_box]
    return white_box[-1] + 1 if white_box else 0


@dataclass(frozen=True)
class Evaluation:
    """The worst case over a cascade of attacks."""

    robust_accuracy: float
    clean_accuracy: float
    per_attack: dict[str, float]  # attack -> robust accuracy after it and every attack before it
    robust: torch.Tensor  # bool per example
    flags: list[str]
    seconds: dict[str, float]
    draws: int = 1  # forward passes per prediction (the majority of draws of a randomized model)
    broken_by: dict[str, int] = field(default_factory=dict)  # attack or check -> points it broke first
    added: tuple[str, ...] = ()  # adaptive attacks the rule added

    @property
    def n(self) -> int:
        return len(self.robust)


def build_cascade(attacks: Sequence[Any] | None, *, eps: float, norm: str) -> list[tuple[str, Attack]]:
    """Attack objects from names, ``(name, params)`` pairs, presets or ready attacks; None: the default cascade."""
    from attacks import presets

    cascade = []
    for item in DEFAULT_CASCADE if attacks is None else attacks:
        if isinstance(item, Attack):
            cascade.append((getattr(item, "label", None) or type(item).__name__.lower(), item))
            continue
        name, params = (item, {}) if isinstance(item, str) else item
        members = presets.expand(name, dict(params))
        for member, member_params, label in members if members is not None else [(name, dict(params), name)]:
            cascade.append((label, ATTACKS.create(member, eps=eps, **{"norm": norm, **member_params})))
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
    adaptive: bool = True,
    draws: int = DEFAULT_DRAWS,
    precision: str = "float32",
) -> Evaluation:
    """Robust accuracy of ``model`` on ``(x, y)``: the worst case over ``attacks`` (None: the default cascade).

    The evaluation ``bench run`` does, in process. ``adaptive``: the rule of ``adaptive_attack`` adds EOT for a
    randomized model and BPDA for masked gradients (declared by the model's modules or detected by the
    checks), after the last white-box attack; signs of masking that only the cascade shows (noise, transfer
    or black-box breaking what gradient attacks missed) add BPDA at the end, on what survived. ``surrogate``:
    another model (e.g. the undefended one) whose PGD examples are replayed after the last gradient attack;
    the points they break count as broken. ``draws``: the majority over that many forward passes is one
    prediction of a randomized model (a model with its own ``predict_labels`` uses that instead). ``precision``:
    ``"bf16"`` runs the attacks under bf16 autocast (``bench.accel``); predictions stay float32.
    """
    why = implausible(eps, norm, x.shape[1:])
    if why is not None:
        raise UserError(f"eps: {why}")
    cascade = build_cascade(attacks, eps=eps, norm=norm)
    n = len(y)
    flags: list[str] = []
    per_attack: dict[str, float] = {}
    seconds: dict[str, float] = {}
    broken_by: dict[str, int] = {}
    history: list[History] = []
    added: list[str] = []
    with eval_mode(model), accel.policy(precision=precision, batch_size=batch_size):
        torch.manual_seed(seed)
        votes = sanity.prediction_draws(model, x, draws)
        clean = predict(model, x, batch_size, draws=votes) == y
        robust = clean.clone()
        if checks:
            flags += sanity.model_checks(model, x, y, norm=norm, draws=votes)[0]
        declared_randomized, differentiable = sanity.declared(model)
        randomized, masked = votes > 1 or declared_randomized, "masked-gradients" in flags or not differentiable
        chosen = adaptive_attack(randomized=randomized, masked=masked) if adaptive else None
        if chosen is not None and chosen[2] not in [label for label, _ in cascade]:  # unless the caller listed it
            name, params, label = chosen
            cascade.insert(adaptive_position([a for _, a in cascade]), (label, ATTACKS.create(name, eps=eps, norm=norm, **params)))
            added.append(label)

        def run(i: int, label: str, attack: Attack, last_gradient: bool) -> None:
            nonlocal robust
            torch.manual_seed(seed + i)
            step = attack_step(
                model, x, y, attack, robust=robust, history=history, batch_size=batch_size, checks=checks,
                convergence_check=last_gradient, surrogate=surrogate, draws=votes,
            )  # fmt: skip
            flags.extend(step.flags)
            if step.status == "ok":
                broken_by[label] = int((robust & ~step.robust).sum()) - sum(step.checks_broke.values())
                for check, count in step.checks_broke.items():
                    broken_by[f"{check} check"] = broken_by.get(f"{check} check", 0) + count
                robust = step.robust
                history.append(History(attack, step.broken))
            per_attack[label] = robust.float().mean().item() if n else 0.0
            seconds[label] = step.seconds

        gradient_attacks = [i for i, (_, attack) in enumerate(cascade) if attack.white_box and attack.iterative]
        for i, (label, attack) in enumerate(cascade):
            run(i, label, attack, bool(gradient_attacks) and i == gradient_attacks[-1])  # later attacks make up for an earlier one stopping short
        if adaptive and not masked and MASKING & set(flags):  # masking only the cascade showed: BPDA on what survived
            name, params, label = adaptive_attack(randomized=randomized, masked=True) or ("bpda", {}, "bpda")
            run(len(cascade), label, ATTACKS.create(name, eps=eps, norm=norm, **params), True)
            added.append(label)
    accuracy = robust.float().mean().item() if n else 0.0
    clean_accuracy = clean.float().mean().item() if n else 0.0
    return Evaluation(accuracy, clean_accuracy, per_attack, robust, sorted(set(flags)), seconds, votes, broken_by, tuple(added))
