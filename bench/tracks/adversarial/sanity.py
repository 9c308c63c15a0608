"""Automated checks from "On Evaluating Adversarial Robustness" (Carlini et al. 2019) and
"Indicators of Attack Failure" (Pintor et al. 2022).

Each check returns flag names (explained in ``bench.tracks.adversarial.flags``). Model checks look
at the model alone (randomized outputs, masked gradients, probabilities
instead of logits, an unbounded attack that does not reach ~0 %); attack
checks look at one attack's run (its loss, silent success, convergence, and
whether something weaker beat it). Checks that need extra attack runs use a
small subsample, so they cost a fraction of the evaluation they guard.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from attacks import ATTACKS
from attacks.base import Attack, AttackResult, loss_gradient
from bench.accel import attack_points, batched
from bench.guard import eval_mode, predict

SUBSAMPLE = 64  # points used by checks that run extra attacks
POINT = 0.01  # "more than a point" of robust accuracy
EVIDENCE = 2  # a subsample check needs at least this many points against the attack, not one unlucky draw
TRANSFER_STEPS = 20  # PGD steps on the surrogate of the transfer check


def randomized(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether the model's outputs differ on the same input (two passes over up to ``SUBSAMPLE`` points)."""
    with torch.no_grad():
        return not torch.equal(model(x[:SUBSAMPLE]), model(x[:SUBSAMPLE]))


def declared(model: nn.Module) -> tuple[bool, bool]:
    """(randomized, differentiable) as the model's modules declare them (a defense's wrapper, a ``Preprocessing``)."""
    modules = list(model.modules())
    return any(getattr(m, "randomized", False) is True for m in modules), all(getattr(m, "differentiable", True) is not False for m in modules)


def prediction_draws(model: nn.Module, x: torch.Tensor, draws: int) -> int:
    """How many forward passes one prediction takes: the model's own PREDICT's, ``draws`` for a randomized model, else 1."""
    if callable(getattr(model, "predict_labels", None)):
        return int(getattr(model, "predict_draws", 1))
    return draws if randomized(model, x) else 1


def model_checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, norm: str, draws: int = 1) -> tuple[list[str], dict[str, float]]:
    """Checks of the model itself on up to ``SUBSAMPLE`` points; the model is in eval mode."""
    x, y = x[:SUBSAMPLE], y[:SUBSAMPLE]
    flags: list[str] = []
    with torch.no_grad():
        first, second = model(x), model(x)
    if not torch.equal(first, second):
        flags.append("randomized")
    if first.numel() and bool((first >= 0).all() and (first <= 1).all()) and torch.allclose(first.sum(dim=1), first.new_ones(len(first)), atol=1e-4):
        flags.append("outputs-probabilities")
    grad = torch.cat(batched("gradient", len(x), x.device, lambda index: loss_gradient(model, x[index], y[index])[0])) if len(x) else x.clone()
    flat = grad.reshape(len(grad), -1)
    dead = (flat == 0).all(dim=1) | ~torch.isfinite(flat).all(dim=1)
    dead_fraction = dead.float().mean().item() if len(dead) else 0.0
    if dead_fraction > 0.5:
        flags.append("masked-gradients")
    correct = predict(model, x, draws=draws) == y
    unbounded_accuracy = 0.0
    if correct.any():
        eps = 1.0 if norm == "linf" else math.sqrt(x[0].numel())
        attack = ATTACKS.create("pgd", eps=eps, norm=norm, steps=50, step_size=eps / 10)
        if draws > 1:  # a randomized model: the expected gradient (EOT), or noise alone keeps points correct
            attack = ATTACKS.create("eot", eps=eps, norm=norm, steps=20, step_size=eps / 10, samples=2, distribution="none")
        x_adv = attack_points(attack, model, x[correct], y[correct])
        unbounded_accuracy = (predict(model, x_adv, draws=draws) == y[correct]).float().mean().item()
        if unbounded_accuracy > 0.03:
            flags.append("large-eps-not-zero")
    return flags, {"dead_gradient_fraction": dead_fraction, "unbounded_eps_accuracy": unbounded_accuracy}


def run_checks(result: AttackResult, fooled: torch.Tensor, *, draws: int = 1) -> list[str]:
    """What the attack's own run shows: a loss that never rose, an adversarial point found and dropped.

    For a randomized model (``draws > 1``) a point the attack "found" under one draw is no finding, so silent
    success is not checked there.
    """
    flags = []
    if draws == 1 and result.found is not None and bool((result.found & ~fooled).any()):
        flags.append("silent-success")
    if result.loss_start is not None and result.loss_end is not None:
        survived = ~fooled
        if int(survived.sum()) >= 5:
            rose = (result.loss_end[survived] > result.loss_start[survived] + 1e-6).float().mean().item()
            if rose < 0.5:
                flags.append("loss-not-increasing")
    return flags


@dataclass(frozen=True)
class Found:
    """What a check that runs an extra attack found: the points its examples broke, and its flag if that is evidence.

    The harness verifies ``x_adv`` against the threat model and counts ``broken`` as broken in the worst case:
    an adversarial example is one, whichever part of the harness found it.
    """

    name: str
    flags: list[str]
    broken: torch.Tensor  # example indices (into the evaluation set) its examples broke
    x_adv: torch.Tensor  # their adversarial examples, aligned with ``broken``

    @staticmethod
    def nothing(name: str, x: torch.Tensor) -> Found:
        return Found(name, [], torch.zeros(0, dtype=torch.long, device=x.device), x[:0])


def _found(name: str, flag: str, points: torch.Tensor, x_adv: torch.Tensor, broken: torch.Tensor, population: int, n: int) -> Found:
    return Found(name, [flag] if _exceeds(broken, population, n) else [], points[broken], x_adv[broken].detach())


def _sample(indices: torch.Tensor) -> torch.Tensor:
    return indices[:SUBSAMPLE]


def _exceeds(hits: torch.Tensor, population: int, n: int) -> bool:
    """``hits`` on a subsample of ``population`` points, scaled to all ``n``: more than a point, on real evidence."""
    return int(hits.sum()) >= EVIDENCE and hits.float().mean().item() * population / n > POINT


def convergence_check(model: nn.Module, attack: Attack, x: torch.Tensor, y: torch.Tensor, survivors: torch.Tensor, n: int, *, draws: int = 1) -> Found:
    """Twice the iterations on a subsample of the survivors: breaking more than a point more means not converged.

    Gradient attacks only: doubling a black-box attack's queries costs more than the evaluation it checks.
    """
    stronger = attack.stronger() if attack.iterative and attack.white_box else None
    sample = _sample(survivors)
    if stronger is None or sample.numel() == 0:
        return Found.nothing("doubled iterations", x)
    x_adv = attack_points(stronger, model, x[sample], y[sample])
    broken = predict(model, x_adv, draws=draws) != y[sample]
    return _found("doubled iterations", "not-converged", sample, x_adv, broken, survivors.numel(), n)


def weaker_attack_check(
    model: nn.Module, attack: Attack, x: torch.Tensor, y: torch.Tensor, broken_by_single_step: torch.Tensor, n: int, *, draws: int = 1
) -> list[str]:
    """An iterative gradient attack must also break what a single-step one broke (on a subsample).

    Not for a randomized model (``draws > 1``): there both follow one noisy gradient draw each, and EOT is the
    attack that counts.
    """
    sample = _sample(broken_by_single_step)
    if not attack.iterative or not attack.white_box or sample.numel() == 0 or draws > 1:
        return []
    missed = predict(model, attack_points(attack, model, x[sample], y[sample]), draws=draws) == y[sample]
    return ["single-step-beats-iterative"] if _exceeds(missed, broken_by_single_step.numel(), n) else []


def noise_check(model: nn.Module, attack: Attack, x: torch.Tensor, y: torch.Tensor, survivors: torch.Tensor, n: int, *, draws: int = 1) -> Found:
    """Random noise of the same budget must not break what a white-box attack left robust."""
    if not attack.white_box or survivors.numel() == 0:
        return Found.nothing("noise", x)
    noise = ATTACKS.create("noise", eps=attack.eps, norm=attack.norm)
    x_adv = attack_points(noise, model, x[survivors], y[survivors])
    broken = predict(model, x_adv, draws=draws) != y[survivors]
    return _found("noise", "noise-beats-white-box", survivors, x_adv, broken, survivors.numel(), n)


def transfer_check(
    model: nn.Module, surrogate: nn.Module | None, attack: Attack, x: torch.Tensor, y: torch.Tensor, survivors: torch.Tensor, n: int, *, draws: int = 1
) -> Found:
    """PGD on ``surrogate`` (another model: the undefended one), replayed on ``model``, must not break what the white-box attacks left robust.

    Every survivor is tried (PGD on the surrogate costs a fraction of the cascade). The surrogate's PGD starts
    at the clean point, so its examples are what the user gets from ``pgd`` with ``random_start = false``.
    """
    if surrogate is None or not attack.white_box or survivors.numel() == 0:
        return Found.nothing("transfer", x)
    pgd = ATTACKS.create("pgd", eps=attack.eps, norm=attack.norm, steps=TRANSFER_STEPS, random_start=False)
    with eval_mode(surrogate):
        x_adv = attack_points(pgd, surrogate, x[survivors], y[survivors])
    broken = predict(model, x_adv, draws=draws) != y[survivors]
    return _found("transfer", "transfer-beats-white-box", survivors, x_adv, broken, survivors.numel(), n)


def black_box_check(attack: Attack, broken: int, n: int, only_white_box_before: bool) -> list[str]:
    """A black-box attack breaking more than a point after the white-box ones: gradient masking."""
    return ["black-box-beats-white-box"] if not attack.white_box and only_white_box_before and broken >= EVIDENCE and broken / n > POINT else []


def monotone_check(accuracy_by_eps: list[tuple[float, float]]) -> list[float]:
    """The eps values at which robust accuracy rose by more than a point over the previous eps."""
    ordered = sorted(accuracy_by_eps)
    return [eps for (_, before), (eps, after) in zip(ordered, ordered[1:], strict=False) if after > before + POINT]
