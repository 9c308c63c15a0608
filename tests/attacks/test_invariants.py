"""Invariants every registered attack keeps, checked the moment it is registered (as timm tests its zoo)."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from attacks import ATTACKS
from attacks.threat_model import per_example_norm, violations
from bench.errors import UserError

EPS = {"linf": 0.1, "l2": 1.0}
# cheap settings, so every registered attack is checked in seconds (the invariants do not depend on them)
CHEAP = {
    "pgd": {"steps": 3},
    "pgd-l2": {"steps": 3},
    "eot": {"steps": 3, "samples": 2, "eval_draws": 2},
    "bpda": {"steps": 3},
    "apgd-ce": {"steps": 3},
    "apgd-dlr": {"steps": 3},
    "apgd-t": {"steps": 3, "n_classes": 3},
    "fab": {"steps": 3, "n_classes": 3},
    "fab-t": {"steps": 3, "n_target_classes": 2},
    "cw": {"steps": 3},
    "deepfool": {"steps": 3},
    "square": {"n_queries": 10},
    "noise": {"draws": 2},
}


def cases():
    for name in ATTACKS.list():
        for norm in ATTACKS.meta(name).get("norms", ("linf",)):
            yield pytest.param(name, norm, id=f"{name}-{norm}")


def make(name: str, norm: str, **params):
    eps = EPS[norm] * (3 if name.startswith("autoattack") else 1)  # AutoAttack is cheap only once nothing survives
    return ATTACKS.create(name, eps=eps, norm=norm, **{**CHEAP.get(name, {}), **params})


@pytest.mark.parametrize(("name", "norm"), list(cases()))
def test_stays_inside_its_threat_model_and_the_unit_box(name, norm, trained_cnn, batch):
    x, y = batch
    attack = make(name, norm)
    x_adv = attack(trained_cnn, x, y)
    assert violations(x, x_adv, norm=norm, eps=attack.eps) == []
    assert float(per_example_norm(x_adv - x, norm).max()) <= attack.eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1


@pytest.mark.parametrize(("name", "norm"), list(cases()))
def test_keeps_shape_dtype_device_and_handles_any_batch_size(name, norm, trained_cnn, batch):
    x, y = batch
    attack = make(name, norm)
    for size in (0, 1, 7):
        x_adv = attack(trained_cnn, x[:size], y[:size])
        assert x_adv.shape == x[:size].shape and x_adv.dtype == x.dtype and x_adv.device == x.device


@pytest.mark.parametrize(("name", "norm"), list(cases()))
def test_never_changes_the_model(name, norm, trained_cnn, batch):
    x, y = batch
    before = {k: v.clone() for k, v in trained_cnn.state_dict().items()}
    trained_cnn[1].weight.grad = torch.ones_like(trained_cnn[1].weight)  # a caller's own gradient stays as it was
    for training in (False, True):
        trained_cnn.train(training)
        make(name, norm)(trained_cnn, x, y)
        assert trained_cnn.training is training
        assert all(m.training is training for m in trained_cnn.modules())
    trained_cnn.eval()
    assert all(torch.equal(before[k], v) for k, v in trained_cnn.state_dict().items())
    assert torch.equal(trained_cnn[1].weight.grad, torch.ones_like(trained_cnn[1].weight))
    assert all(p.grad is None for name, p in trained_cnn.named_parameters() if name != "1.weight")
    trained_cnn[1].weight.grad = None


@pytest.mark.parametrize(("name", "norm"), list(cases()))
def test_model_mode_is_untouched_when_the_attack_raises(name, norm, trained_cnn, batch):
    class Exploding(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = trained_cnn
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            if self.calls > 1:
                raise RuntimeError("boom")
            return self.net(x)

    model = Exploding().train()
    x, y = batch
    with contextlib.suppress(RuntimeError):
        make(name, norm)(model, x, y)
    assert all(m.training for m in model.modules())


@pytest.mark.parametrize(("name", "norm"), list(cases()))
def test_repeatable_with_a_seed(name, norm, trained_cnn, batch):
    x, y = batch
    attack = make(name, norm)
    torch.manual_seed(3)
    first = attack(trained_cnn, x, y)
    torch.manual_seed(3)
    assert torch.equal(first, attack(trained_cnn, x, y))


@pytest.mark.parametrize(("name", "norm"), list(cases()))
def test_rejects_inputs_outside_the_unit_box_and_bad_eps(name, norm, trained_cnn, batch):
    x, y = batch
    with pytest.raises(UserError, match=r"x: must lie in \[0, 1\]"):
        make(name, norm)(trained_cnn, x * 2 - 0.5, y)
    with pytest.raises(UserError, match="eps: must be > 0"):
        ATTACKS.create(name, eps=-0.1, norm=norm)


def test_l2_projection_holds_on_large_colour_images():
    """Rounding on 3x32x32 inputs must not push L2 attacks past eps + 1e-6."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    x, y = torch.rand(32, 3, 32, 32), torch.randint(0, 10, (32,))
    for name in ("pgd-l2", "fgm-l2"):
        for eps in (0.01, 0.5, 3.0):
            x_adv = ATTACKS.create(name, eps=eps)(model, x, y)
            assert violations(x, x_adv, norm="l2", eps=eps) == []


def test_unsupported_norm_is_refused():
    with pytest.raises(UserError, match="norm: 'l1' is not supported"):
        ATTACKS.create("pgd", eps=0.1, norm="l1")
