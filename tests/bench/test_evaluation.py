"""bench.evaluate: the cascade, adaptive attacks (BPDA, EOT) and the sanity flags that catch broken evaluations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import bench
from attacks import ATTACKS
from attacks.base import AttackResult
from bench.data import DATASETS
from bench.spec import ModelSpec, TrainingSpec
from bench.tracks.adversarial import sanity
from bench.training import build_model, train_classifier
from defenses import DEFENSES


def trained(name: str, digits, **params) -> nn.Module:
    model = build_model(ModelSpec(name, params), digits, seed=0)
    return train_classifier(model, digits, TrainingSpec(epochs=5), seed=0, device=torch.device("cpu")).eval()


@pytest.fixture(scope="module")
def data():
    digits = DATASETS.create("digits")
    return digits, digits.x_test[:120], digits.y_test[:120]


def test_evaluate_returns_the_worst_case_with_cumulative_per_attack_numbers(trained_cnn, data):
    _, x, y = data
    result = bench.evaluate(trained_cnn, x, y, eps=0.1, attacks=["fgsm", ("pgd", {"steps": 10}), ("square", {"n_queries": 50})])
    assert list(result.per_attack) == ["fgsm", "pgd", "square"]
    values = list(result.per_attack.values())
    assert values == sorted(values, reverse=True)  # each attack only removes points
    assert result.robust_accuracy == values[-1] == pytest.approx(result.robust.float().mean().item())
    assert result.robust.dtype == torch.bool and result.robust.shape == y.shape
    assert result.robust_accuracy <= result.clean_accuracy
    assert isinstance(result.flags, list)


def test_cascade_equals_the_per_example_minimum_of_standalone_attacks(trained_cnn, data):
    _, x, y = data
    attacks = ["fgsm", ("pgd", {"steps": 5, "random_start": False}), ("fgsm", {})]
    cascade = bench.evaluate(trained_cnn, x, y, eps=0.08, attacks=attacks, checks=False)
    alone = [bench.evaluate(trained_cnn, x, y, eps=0.08, attacks=[a], checks=False).robust for a in attacks]
    assert torch.equal(cascade.robust, torch.stack(alone).all(dim=0))


def test_the_default_cascade_ends_with_a_black_box_attack(trained_cnn, data):
    from bench.tracks.adversarial.evaluation import build_cascade

    cascade = build_cascade(None, eps=0.1, norm="linf")
    assert not cascade[-1][1].white_box and all(a.white_box for _, a in cascade[:-1])


def test_quantization_looks_robust_to_pgd_and_falls_to_bpda(digits, data):
    _, x, y = data
    model = trained("tests.helpers:quantized_cnn", digits)
    plain = bench.evaluate(model, x, y, eps=0.2, attacks=[("pgd", {"steps": 20})], adaptive=False, checks=False)
    adaptive = bench.evaluate(model, x, y, eps=0.2, attacks=[("bpda", {"steps": 20, "modules": ["0"]})])
    assert plain.robust_accuracy >= plain.clean_accuracy - 0.1  # gradients are zero: PGD barely moves
    assert adaptive.robust_accuracy <= plain.robust_accuracy - 0.3
    checked = bench.evaluate(model, x, y, eps=0.2, attacks=[("pgd", {"steps": 20})])
    assert "masked-gradients" in checked.flags and "large-eps-not-zero" in checked.flags
    assert "bpda" in checked.added  # the rule adds BPDA by itself
    assert checked.robust_accuracy < plain.robust_accuracy  # what the noise check broke counts


def test_bpda_finds_our_preprocessing_modules_by_itself(trained_cnn, data):
    from attacks.bpda import straight_through

    _, x, y = data
    model = nn.Sequential(straight_through(lambda t: torch.round(t * 4) / 4), trained_cnn).eval()
    plain = bench.evaluate(model, x, y, eps=0.2, attacks=[("pgd", {"steps": 10})], checks=False, adaptive=False)
    adaptive = bench.evaluate(model, x, y, eps=0.2, attacks=[("bpda", {"steps": 10})], checks=False)
    assert adaptive.robust_accuracy <= plain.robust_accuracy - 0.3 and adaptive.added == ()  # listed: not added twice
    declared = bench.evaluate(model, x, y, eps=0.2, attacks=[("pgd", {"steps": 10})], checks=False)
    assert declared.added == ("bpda",) and declared.robust_accuracy <= plain.robust_accuracy - 0.3  # the module declares it
    with torch.no_grad():
        assert torch.equal(model(x), trained_cnn(torch.round(x * 4) / 4))  # outside BPDA, the exact transformation


def test_a_randomized_model_is_flagged_and_eot_beats_pgd(digits, data):
    _, x, y = data
    model = trained("tests.helpers:noisy_cnn", digits, sigma=0.3)
    assert "randomized" in bench.evaluate(model, x, y, eps=0.1, attacks=[("pgd", {"steps": 10})]).flags

    def expected_accuracy(x_adv, draws=20):
        with torch.no_grad():
            return torch.stack([(model(x_adv).argmax(1) == y).float() for _ in range(draws)]).mean().item()

    torch.manual_seed(0)
    pgd = expected_accuracy(ATTACKS.create("pgd", eps=0.1, steps=20)(model, x, y))
    torch.manual_seed(0)
    eot = expected_accuracy(ATTACKS.create("eot", eps=0.1, steps=20, samples=16, distribution="none")(model, x, y))
    assert eot <= pgd - 0.05


def test_eot_reports_transform_averaged_accuracy(trained_cnn, data):
    from bench.tracks.adversarial.evaluation import attack_step

    _, x, y = data
    attack = ATTACKS.create("eot", eps=0.1, steps=5, samples=4, eval_draws=8)
    step = attack_step(trained_cnn, x, y, attack, robust=torch.ones(len(y), dtype=torch.bool), checks=False)
    value = step.metrics["transform_averaged_accuracy"]
    assert 0.0 <= value <= 1.0
    assert attack.transforms.rotation == 15.0 and ATTACKS.create("eot", eps=0.1, rotation=30).transforms.rotation == 30


def test_a_model_returning_probabilities_is_flagged(trained_cnn, data):
    _, x, y = data
    model = nn.Sequential(trained_cnn, nn.Softmax(dim=1)).eval()
    flags, _ = sanity.model_checks(model, x, y, norm="linf")
    assert "outputs-probabilities" in flags
    assert "outputs-probabilities" not in sanity.model_checks(trained_cnn, x, y, norm="linf")[0]


def test_a_healthy_model_and_cascade_raise_no_flags(trained_cnn, data):
    _, x, y = data
    result = bench.evaluate(trained_cnn, x, y, eps=0.1, attacks=["fgsm", ("pgd", {"steps": 20}), ("square", {"n_queries": 100})])
    assert result.flags == []


def test_black_box_beating_white_box_is_flagged(digits, data):
    _, x, y = data
    model = trained("tests.helpers:quantized_cnn", digits)
    result = bench.evaluate(model, x, y, eps=0.25, attacks=[("pgd", {"steps": 10}), ("square", {"n_queries": 300})])
    assert "black-box-beats-white-box" in result.flags


def test_a_transfer_attack_beating_white_box_is_flagged(digits, data, trained_cnn):
    _, x, y = data
    masked = trained("tests.helpers:quantized_cnn", digits)  # its own inner network, without the quantizer, is the surrogate
    result = bench.evaluate(masked, x, y, eps=0.25, attacks=[("pgd", {"steps": 10})], surrogate=masked[1])
    assert "transfer-beats-white-box" in result.flags
    assert "transfer-beats-white-box" not in bench.evaluate(masked, x, y, eps=0.25, attacks=[("pgd", {"steps": 10})]).flags
    healthy = bench.evaluate(trained_cnn, x, y, eps=0.1, attacks=["fgsm", ("pgd", {"steps": 20})], surrogate=trained("mlp", digits))
    assert "transfer-beats-white-box" not in healthy.flags


def test_attack_run_checks():
    fooled = torch.tensor([False] * 6)
    flat = AttackResult(torch.zeros(6), loss_start=torch.ones(6), loss_end=torch.ones(6))
    assert sanity.run_checks(flat, fooled) == ["loss-not-increasing"]
    rising = AttackResult(torch.zeros(6), loss_start=torch.ones(6), loss_end=torch.full((6,), 2.0))
    assert sanity.run_checks(rising, fooled) == []
    dropped = AttackResult(torch.zeros(6), found=torch.tensor([True] + [False] * 5))
    assert sanity.run_checks(dropped, fooled) == ["silent-success"]


def test_art_fgm_equals_our_fgsm(trained_cnn, data):
    _, x, y = data
    ours = ATTACKS.create("fgsm", eps=0.1)(trained_cnn, x, y)
    theirs = ATTACKS.create("art:FastGradientMethod", eps=0.1)(trained_cnn, x, y)
    assert (ours - theirs).abs().max().item() <= 1e-6


def test_points_a_check_breaks_count_as_broken(digits, data):
    """The issue's example: the transfer check's own examples break what the cascade missed; the worst case counts them."""
    from bench.guard import predict

    _, x, y = data
    model = trained("small-cnn", digits)
    jpeg = DEFENSES.create("jpeg").wrap(model).eval()
    result = bench.evaluate(jpeg, x, y, eps=0.1, attacks=["fgsm", ("pgd", {"steps": 20})], surrogate=model, adaptive=False)
    transferred = ATTACKS.create("pgd", eps=0.1, steps=20, random_start=False)(model, x, y)
    left = (predict(jpeg, transferred) == y).float().mean().item()
    assert result.robust_accuracy <= left  # at most what the surrogate's examples leave
    assert "transfer-beats-white-box" in result.flags and result.broken_by["transfer check"] >= 5
    assert result.robust_accuracy < result.per_attack["fgsm"] - 0.05


def test_a_randomized_model_is_predicted_by_majority_and_repeats_within_a_point(digits):
    """Randomized smoothing evaluated twice with different seeds: the same clean predictions, worst cases within a point, no draw-noise flags."""
    x, y = digits.x_test[:200], digits.y_test[:200]
    smoothed = DEFENSES.create("randomized-smoothing").wrap(trained("small-cnn", digits)).eval()
    first, second = (bench.evaluate(smoothed, x, y, eps=0.1, seed=seed) for seed in (0, 1))
    assert first.draws == second.draws == 25 and "eot" in first.added  # declared randomized: EOT up front
    assert first.clean_accuracy == second.clean_accuracy
    assert abs(first.robust_accuracy - second.robust_accuracy) <= 0.01
    for result in (first, second):
        assert not {"silent-success", "single-step-beats-iterative", "large-eps-not-zero"} & set(result.flags)


def test_an_implausible_budget_is_refused_before_any_attack(trained_cnn, data):
    from bench.errors import UserError

    _, x, y = data
    with pytest.raises(UserError, match=r"8/255 = 0\.03137"):
        bench.evaluate(trained_cnn, x, y, eps=8)
    with pytest.raises(UserError, match="L2 diameter"):
        bench.evaluate(trained_cnn, x, y, eps=9.0, norm="l2")  # digits: 8 x 8 pixels, diameter 8
    assert bench.evaluate(trained_cnn, x[:8], y[:8], eps=0.5, attacks=["fgsm"], checks=False).n == 8
