"""Our attacks against torchattacks on the same model and batch."""

from __future__ import annotations

import torch
import torchattacks

from attacks import ATTACKS


def robust_accuracy(model, x_adv, y) -> float:
    with torch.no_grad():
        return (model(x_adv).argmax(1) == y).float().mean().item()


def test_fgsm_equals_torchattacks_fgsm(trained_cnn, digits):
    x, y = digits.x_test, digits.y_test
    ours = ATTACKS.create("fgsm", eps=0.1)(trained_cnn, x, y)
    theirs = torchattacks.FGSM(trained_cnn, eps=0.1)(x, y)
    assert (ours - theirs).abs().max().item() <= 1e-6


def test_pgd_matches_torchattacks_pgd_within_one_point(trained_cnn, digits):
    x, y = digits.x_test, digits.y_test
    for eps in (0.05, 0.1):
        torch.manual_seed(0)
        ours = robust_accuracy(trained_cnn, ATTACKS.create("pgd", eps=eps, steps=20, step_size=eps / 8)(trained_cnn, x, y), y)
        torch.manual_seed(0)
        theirs = robust_accuracy(trained_cnn, torchattacks.PGD(trained_cnn, eps=eps, alpha=eps / 8, steps=20, random_start=True)(x, y), y)
        assert abs(ours - theirs) <= 0.01, (eps, ours, theirs)


def test_pgd_l2_matches_torchattacks_pgdl2_within_one_point(trained_cnn, digits):
    x, y = digits.x_test, digits.y_test
    torch.manual_seed(0)
    ours = robust_accuracy(trained_cnn, ATTACKS.create("pgd-l2", eps=0.75, steps=20, step_size=0.1)(trained_cnn, x, y), y)
    torch.manual_seed(0)
    theirs = robust_accuracy(trained_cnn, torchattacks.PGDL2(trained_cnn, eps=0.75, alpha=0.1, steps=20, random_start=True)(x, y), y)
    assert abs(ours - theirs) <= 0.01, (ours, theirs)


def test_pgd_is_at_least_as_strong_as_fgsm_and_restarts_never_hurt(trained_cnn, digits):
    x, y = digits.x_test, digits.y_test
    torch.manual_seed(0)
    fgsm = robust_accuracy(trained_cnn, ATTACKS.create("fgsm", eps=0.1)(trained_cnn, x, y), y)
    pgd = robust_accuracy(trained_cnn, ATTACKS.create("pgd", eps=0.1, steps=20)(trained_cnn, x, y), y)
    torch.manual_seed(0)
    restarted = robust_accuracy(trained_cnn, ATTACKS.create("pgd", eps=0.1, steps=20, restarts=3)(trained_cnn, x, y), y)
    assert pgd <= fgsm
    assert restarted <= pgd


def test_pgd_never_returns_a_non_adversarial_point_after_finding_one(trained_cnn, digits):
    """Silent success: with a huge step size the last iterate may bounce back; the found point is kept."""
    x, y = digits.x_test[:200], digits.y_test[:200]
    torch.manual_seed(0)
    attack = ATTACKS.create("pgd", eps=0.3, steps=5, step_size=0.3)
    x_adv = attack(trained_cnn, x, y)
    torch.manual_seed(0)
    # the same iterates, followed by hand: an example fooled at any iterate must come back fooled
    from attacks.base import loss_gradient
    from attacks.threat_model import normalized, project, random_start

    current = random_start(x, norm="linf", eps=0.3)
    fooled_ever = torch.zeros(len(y), dtype=torch.bool)
    for _ in range(5):
        grad, logits, _ = loss_gradient(trained_cnn, current, y)
        fooled_ever |= logits.argmax(1) != y
        current = project(current + 0.3 * normalized(grad, "linf"), x, norm="linf", eps=0.3)
    with torch.no_grad():
        fooled_now = trained_cnn(x_adv).argmax(1) != y
    assert bool(fooled_now[fooled_ever].all())
