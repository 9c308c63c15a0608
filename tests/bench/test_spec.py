"""Specs are validated at the edge: every problem is one line naming its place."""

from __future__ import annotations

import pytest

from bench import spec as specs
from bench.errors import UserError
from bench.tracks import TRACKS

TRACK = TRACKS.create("adversarial")


def build(user: dict, **overrides):
    return specs.build(specs.merge(TRACK.default_spec(user), user, overrides))


def test_the_default_spec_builds():
    spec = build({})
    assert spec.track == "adversarial" and spec.dataset == "digits"
    assert [a.label for a in spec.attacks] == ["fgsm", "pgd", "apgd-ce", "apgd-dlr", "square"] * 2  # the default cascade, Linf then L2
    assert [a.params.get("norm", "linf") for a in spec.attacks] == ["linf"] * 5 + ["l2"] * 5
    assert spec.cascade and spec.checks
    assert spec.defenses[0].name == "none"


def test_user_sections_replace_the_defaults_and_overrides_win():
    spec = build({"attacks": [{"name": "pgd", "eps": 0.1, "steps": 5}], "seed": 3}, seed=7, n_examples=None)
    assert [(a.name, a.eps, dict(a.params)) for a in spec.attacks] == [("pgd", (0.1,), {"steps": 5})]
    assert spec.seed == 7
    assert [m.name for m in spec.models] == ["small-cnn"]  # not given: the track's
    assert [d.name for d in spec.defenses] == ["none", "pgd-at", "trades", "fast-at", "jpeg", "bit-depth", "randomized-smoothing"]
    own_models = build({"models": [{"name": "mlp"}]})
    assert [d.name for d in own_models.defenses] == ["none"]  # naming your models compares no defenses unless you name them


def test_eps_may_be_a_scalar_or_a_grid():
    spec = build({"attacks": [{"name": "fgsm", "eps": [0.05, 0.1]}, {"name": "pgd", "eps": 0.2}]})
    assert [a.eps for a in spec.attacks] == [(0.05, 0.1), (0.2,)]


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ({"attacks": [{"name": "fgsm", "eps": 0.1}, {"name": "pgd", "eps": -0.03}]}, r"^spec\.attacks\[1\]\.eps: must be > 0, got -0\.03$"),
        ({"attacks": [{"name": "pdg", "eps": 0.1}]}, r"^spec\.attacks\[0\]: unknown attack 'pdg'; did you mean 'pgd'"),
        ({"attacks": [{"name": "pgd", "eps": 0.1, "stpes": 3}]}, r"^spec\.attacks\[0\]: attack 'pgd': unknown parameter 'stpes'; did you mean 'steps'"),
        ({"attacks": [{"name": "pgd", "eps": 0.1, "steps": 0}]}, r"^spec\.attacks\[0\]\.steps: must be an integer >= 1"),
        ({"attacks": [{"name": "fgm-l2", "eps": 0.1, "norm": "linf"}]}, r"^spec\.attacks\[0\]\.norm: attack 'fgm-l2' does not support norm 'linf'"),
        ({"attacks": [{"name": "pgd"}]}, r"^spec\.attacks\[0\]: needs 'eps'"),
        ({"attacks": []}, r"^spec\.attacks: must be a non-empty list"),
        ({"atacks": []}, r"^spec\.atacks: unknown field; did you mean 'attacks'"),
        ({"models": [{"name": "smal-cnn"}]}, r"^spec\.models\[0\]: unknown model 'smal-cnn'; did you mean 'small-cnn'"),
        ({"models": [{"name": "small-cnn", "widht": 3}]}, r"^spec\.models\[0\]: model 'small-cnn': unknown parameter 'widht'"),
        ({"models": [{"name": "small-cnn"}, {"name": "small-cnn"}]}, r"^spec\.models\[1\]: 'small-cnn' is listed twice"),
        ({"models": [{"name": "small-cnn", "checkpoint": "nowhere.pt"}]}, r"^spec\.models\[0\]\.checkpoint: checkpoint '.*nowhere\.pt' does not exist"),
        ({"dataset": "digitz"}, r"^spec\.dataset: unknown dataset 'digitz'; did you mean 'digits'"),
        ({"n_examples": 0}, r"^spec\.n_examples: must be >= 1, got 0"),
        ({"seed": "zero"}, r"^spec\.seed: must be an integer, got 'zero'"),
        ({"device": "tpu"}, r"^spec\.device: must be one of auto, cpu, cuda"),
        ({"training": {"epoch": 3}}, r"^spec\.training\.epoch: unknown field; did you mean 'epochs'"),
        ({"training": {"lr": 0}}, r"^spec\.training\.lr: must be a finite number > 0, got 0$"),
        ({"training": {"lr": float("inf")}}, r"^spec\.training\.lr: must be a finite number > 0, got inf$"),
        ({"training": {"lr": float("nan")}}, r"^spec\.training\.lr: must be a finite number > 0, got nan$"),
        ({"training": {"weight_decay": -5}}, r"^spec\.training\.weight_decay: must be a finite number >= 0, got -5$"),
        ({"attacks": [{"name": "pgd", "eps": float("inf")}]}, r"^spec\.attacks\[0\]\.eps: must be finite numbers, got inf$"),
        ({"attacks": [{"name": "pgd", "eps": [0.1, 0.1]}]}, r"^spec\.attacks\[0\]\.eps: lists a value twice: \[0\.1, 0\.1\]$"),
        ({"attacks": [{"name": "pgd", "eps": "0.1"}]}, r"^spec\.attacks\[0\]\.eps: must be a number or a list of numbers, got '0\.1'$"),
        ({"attacks": [{"name": "pgd", "eps": 0.1, "step_size": float("nan")}]}, r"^spec\.attacks\[0\]\.step_size: must be a finite number, got nan$"),
        ({"models": [{"name": "small-cnn", "dropout": float("inf")}]}, r"^spec\.models\[0\]\.dropout: must be a finite number, got inf$"),
        ({"defenses": [{"name": "jpg"}]}, r"^spec\.defenses\[0\]: unknown defense 'jpg'"),
    ],
)
def test_malformed_specs_fail_with_one_line_naming_the_field(user, message):
    with pytest.raises(UserError, match=message) as caught:
        build(user)
    assert "\n" not in str(caught.value)


def test_toml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("attacks = [\n")
    with pytest.raises(UserError, match=r"spec file '.*bad\.toml' is not valid TOML"):
        specs.read_toml(bad)
    with pytest.raises(UserError, match="does not exist"):
        specs.read_toml(tmp_path / "missing.toml")


def test_twin_attacks_get_labels_that_tell_them_apart():
    spec = build({"attacks": [{"name": "pgd", "eps": 0.1, "steps": 10}, {"name": "pgd", "eps": 0.1, "steps": 50}]})
    assert [a.label for a in spec.attacks] == ["pgd(steps=10)", "pgd(steps=50)"]
    with pytest.raises(UserError, match="repeats attack"):
        build({"attacks": [{"name": "pgd", "eps": 0.1}, {"name": "pgd", "eps": 0.2}]})
