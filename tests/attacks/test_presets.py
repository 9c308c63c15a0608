"""The ``autoattack-standard`` preset: AutoAttack's four attacks as members of our cascade."""

from __future__ import annotations

import pytest
import torch
import torchattacks
from torch import nn

import bench
from attacks import ATTACKS
from attacks.presets import PRESETS, Preset, expand
from bench.cli import main
from bench.errors import UserError
from bench.fields import attacks_field
from bench.guard import predict

LABELS = ["aa-apgd-ce", "aa-apgd-t", "aa-fab-t", "aa-square"]


def test_expand_gives_the_members_with_the_entry_parameters_passed_on():
    members = expand("autoattack-standard", {"norm": "l2"})
    assert [label for _, _, label in members] == LABELS
    assert [name for name, _, _ in members] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert all(params["norm"] == "l2" and params["seed"] == 0 and params["n_restarts"] == 1 for _, params, _ in members)
    assert expand("autoattack-standard", {"seed": 3})[0][1]["seed"] == 3
    assert expand("pgd", {"steps": 3}) is None  # not a preset
    with pytest.raises(UserError, match=r"^steps: attack preset 'autoattack-standard' does not take 'steps'; it takes: norm, seed$"):
        expand("autoattack-standard", {"steps": 20})


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("classes", [10, 3])
def test_members_take_the_arguments_torchattacks_autoattack_gives_its_attacks(norm, classes):
    """Attack by attack, the library objects we build equal those inside torchattacks' AutoAttack(version="standard", seed=0)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, classes))
    x = torch.rand(4, 1, 8, 8)
    eps = 0.1 if norm == "linf" else 0.5
    reference = torchattacks.AutoAttack(model, norm={"linf": "Linf", "l2": "L2"}[norm], eps=eps, version="standard", n_classes=min(classes, 10), seed=0)
    members = expand("autoattack-standard", {"norm": norm})
    assert len(members) == len(reference._autoattack.attacks)
    for (name, params, label), theirs in zip(members, reference._autoattack.attacks, strict=True):
        attack = ATTACKS.create(name, eps=eps, **params)
        ours = attack.build(model, x, {**attack.derived_params(), **attack.params})
        assert type(ours) is type(theirs), label
        assert _arguments(ours) == _arguments(theirs), label
    assert _arguments(ours)["n_queries"] == 5000
    targeted = [_arguments(a)["n_target_classes"] for a in reference._autoattack.attacks[1:3]]
    assert targeted == [min(classes, 10) - 1] * 2


def _arguments(attack) -> dict:
    return {k: v for k, v in vars(attack).items() if isinstance(v, (int, float, str, bool, type(None)))}


@pytest.mark.slow
def test_preset_cascade_matches_torchattacks_autoattack(trained_cnn, digits):
    """Same robust accuracy as torchattacks' AutoAttack within 0.5 points.

    64 points keep this near 50 s on one thread (Square's 5,000 queries are
    most of it, in both runs); on 64 points 0.5 points allows no difference,
    so the two must agree exactly. (On all 360 test points they agree too:
    56.9 % and 56.9 %, in about 2 minutes each.)
    """
    x, y = digits.x_test[:64], digits.y_test[:64]
    reference = torchattacks.AutoAttack(trained_cnn, norm="Linf", eps=0.1, version="standard", n_classes=10, seed=0)
    expected = (predict(trained_cnn, reference(x, y)) == y).float().mean().item()
    result = bench.evaluate(trained_cnn, x, y, eps=0.1, attacks=["autoattack-standard"], checks=False)
    assert list(result.per_attack) in (LABELS, ["autoattack-standard"])  # four columns once evaluate expands presets, else one
    allowed = int(0.005 * len(y))
    assert abs(result.robust_accuracy - expected) * len(y) <= allowed + 1e-6, (result.robust_accuracy, expected)
    assert 0 < expected < result.clean_accuracy  # a comparison that means something: some points fall, some hold


def test_preset_as_one_attack_equals_its_members_run_as_a_cascade(trained_cnn, digits, monkeypatch):
    """The one-attack form and the harness's cascade over the expanded members break the same points (cheap members here)."""
    monkeypatch.setitem(
        PRESETS,
        "autoattack-standard",
        (("fgsm", {}, "a"), ("pgd", {"steps": 5, "random_start": False}, "b"), ("square", {"n_queries": 30, "seed": 0}, "c")),
    )
    x, y = digits.x_test[:120], digits.y_test[:120]
    members = [(name, params) for name, params, _ in expand("autoattack-standard", {})]
    cascade = bench.evaluate(trained_cnn, x, y, eps=0.08, attacks=members, checks=False)
    preset = ATTACKS.create("autoattack-standard", eps=0.08)
    assert isinstance(preset, Preset) and [label for label, _ in preset.members()] == ["a", "b", "c"]
    alone = predict(trained_cnn, preset(trained_cnn, x, y)) == y
    assert torch.equal(alone, cascade.robust)
    assert list(cascade.per_attack.values()) == sorted(cascade.per_attack.values(), reverse=True)
    by_name = bench.evaluate(trained_cnn, x, y, eps=0.08, attacks=["autoattack-standard"], checks=False)
    assert torch.equal(by_name.robust, cascade.robust)


def test_a_spec_entry_naming_the_preset_becomes_its_members():
    specs = attacks_field(
        [
            {"name": "autoattack-standard", "eps": [0.1, 0.2]},
            {"name": "autoattack-standard", "eps": 0.5, "norm": "l2"},
            {"name": "apgd-ce", "eps": [0.1]},
        ]
    )
    assert [s.label for s in specs] == LABELS * 2 + ["apgd-ce"]
    assert [s.eps for s in specs] == [(0.1, 0.2)] * 4 + [(0.5,)] * 4 + [(0.1,)]
    assert all(s.params["norm"] == "l2" for s in specs[4:8]) and all("norm" not in s.params for s in specs[:4])
    assert specs[1].name == "apgd-t" and specs[1].params["n_target_classes"] == 9 and specs[3].params["n_queries"] == 5000


def test_a_bad_preset_entry_fails_in_one_line():
    with pytest.raises(UserError, match=r"^spec\.attacks\[1\]\.steps: attack preset 'autoattack-standard' does not take 'steps'; it takes: norm, seed$"):
        attacks_field([{"name": "pgd", "eps": 0.1}, {"name": "autoattack-standard", "eps": 0.1, "steps": 20}])
    with pytest.raises(UserError, match=r"^spec\.attacks\[0\]\.norm: 'l1' is not supported"):
        attacks_field([{"name": "autoattack-standard", "eps": 0.1, "norm": "l1"}])
    with pytest.raises(UserError, match=r"^spec\.attacks\[1\]: repeats attack 'aa-apgd-ce'"):
        attacks_field([{"name": "autoattack-standard", "eps": 0.1}, {"name": "autoattack-standard", "eps": 0.2}])


def test_list_shows_the_preset_and_its_members(capsys):
    assert main(["list", "attacks"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("autoattack-standard "))
    assert "APGD-CE" in line and "Square" in line
    assert main(["list", "attacks", "autoattack-standard", "--eps", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "parameters of autoattack-standard at eps 0.1 (linf), a cascade of 4 attacks:" in out
    assert all(f"{label} (torchattacks:" in out for label in LABELS)
    assert main(["list", "attacks", "fab-t"]) == 0
    assert "9 most likely" in capsys.readouterr().out
