"""Defenses, compared fairly: adversarial training helps, preprocessing masks gradients, smoothing certifies."""

from __future__ import annotations

import json
import logging

import pytest
import torch

import bench
from attacks import ATTACKS
from attacks.bpda import Preprocessing
from bench.cli import main
from bench.spec import ModelSpec, TrainingSpec
from bench.training import build_model, obtain_model, train_classifier
from defenses import DEFENSES
from defenses.smoothing import ABSTAIN


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def report(out, capsys) -> list[dict]:
    capsys.readouterr()
    assert main(["report", str(out), "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)["cells"]


def test_every_defense_declares_its_properties():
    for name in DEFENSES.list():
        defense = DEFENSES.create(name)
        assert isinstance(defense.randomized, bool) and isinstance(defense.differentiable, bool)
    assert not DEFENSES.create("jpeg").differentiable and not DEFENSES.create("bit-depth").differentiable
    assert DEFENSES.create("randomized-smoothing").randomized and DEFENSES.create("randomized-smoothing").certifies
    assert all(DEFENSES.create(n).trains for n in ("pgd-at", "trades", "fast-at", "randomized-smoothing"))


@pytest.mark.parametrize("name", ["pgd-at", "trades", "fast-at"])
def test_adversarial_training_is_clearly_more_robust_at_its_eps(name, digits, trained_cnn):
    defense = DEFENSES.create(name, eps=0.1)
    model = build_model(ModelSpec("small-cnn"), digits, seed=0)
    model = train_classifier(model, digits, TrainingSpec(epochs=5), seed=0, device=torch.device("cpu"), objective=defense).eval()
    x, y = digits.x_test, digits.y_test
    defended = bench.evaluate(model, x, y, eps=0.1, attacks=[("pgd", {"steps": 20})], checks=False)
    undefended = bench.evaluate(trained_cnn, x, y, eps=0.1, attacks=[("pgd", {"steps": 20})], checks=False)
    assert defended.robust_accuracy >= undefended.robust_accuracy + 0.1, (defended.robust_accuracy, undefended.robust_accuracy)
    assert defended.clean_accuracy >= 0.9


@pytest.mark.parametrize("name", ["jpeg", "bit-depth", "median"])
def test_preprocessing_is_found_by_bpda_and_exact_outside_it(name, trained_cnn, digits):
    defended = DEFENSES.create(name).wrap(trained_cnn).eval()
    assert isinstance(defended[0], Preprocessing)
    x = digits.x_test[:16]
    with torch.no_grad():
        once, twice = defended[0](x), defended[0](x)
    assert torch.equal(once, twice) and once.shape == x.shape and once.min() >= 0 and once.max() <= 1


@pytest.mark.parametrize("name", ["art:JpegCompression", "art:FeatureSqueezing", "art:SpatialSmoothing"])
def test_art_preprocessing_defenses_plug_in(name, trained_cnn, digits):
    params = {"bit_depth": 2} if name == "art:FeatureSqueezing" else {}
    defended = DEFENSES.create(name, **params).wrap(trained_cnn).eval()
    x, y = digits.x_test[:40], digits.y_test[:40]
    plain = bench.evaluate(defended, x, y, eps=0.2, attacks=[("pgd", {"steps": 10})], checks=False, adaptive=False)
    adaptive = bench.evaluate(defended, x, y, eps=0.2, attacks=[("bpda", {"steps": 10})], checks=False)
    assert adaptive.robust_accuracy < plain.robust_accuracy
    declared = bench.evaluate(defended, x, y, eps=0.2, attacks=[("pgd", {"steps": 10})], checks=False)  # the wrapper declares it: BPDA added
    assert declared.added == ("bpda",) and declared.robust_accuracy < plain.robust_accuracy


SPEC = """
n_examples = 120
[[models]]
name = "small-cnn"
{defenses}
[[attacks]]
name = "fgsm"
eps = [0.1, 0.2]
[[attacks]]
name = "pgd"
eps = [0.1, 0.2]
steps = 10
[training]
epochs = 5
"""


def test_preprocessing_looks_robust_to_pgd_falls_to_bpda_and_the_plain_rows_are_flagged(tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(defenses='[[defenses]]\nname = "none"\n[[defenses]]\nname = "jpeg"\n[[defenses]]\nname = "bit-depth"'))
    out = tmp_path / "run"
    assert main(["run", "--config", str(spec), "--out", str(out), "-q"]) == 0
    cells = report(out, capsys)
    for defense in ("jpeg", "bit-depth"):
        row = {c["attack"]: c for c in cells if c["defense"] == defense and c["eps"] == 0.2}
        assert set(row) == {"fgsm", "pgd", "bpda", "worst-case"}  # the adaptive attack was added by the harness
        assert row["pgd"]["robust_accuracy"] >= row["bpda"]["robust_accuracy"] + 0.3
        assert "gradient-masking" in row["pgd"]["flags"] and "masked-gradients" in row["worst-case"]["model_flags"]
        assert row["worst-case"]["verdict"].startswith("masked (worst case set by") and "bpda" in row["worst-case"]["verdict"]
        assert "masked-gradients: BPDA ran, see the bpda column" in row["worst-case"]["verdict_details"]
    assert not any("gradient-masking" in c["flags"] for c in cells if c["defense"] == "none")
    assert {c["verdict"] for c in cells if c["defense"] == "none" and c["attack"] == "worst-case"} == {"reliable"}
    assert "bpda %" in (out / "leaderboard.md").read_text()


def test_without_adaptive_attacks_a_transfer_from_the_undefended_model_exposes_the_masking(tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text("adaptive = false\n" + SPEC.format(defenses='[[defenses]]\nname = "none"\n[[defenses]]\nname = "bit-depth"'))
    out = tmp_path / "run"
    assert main(["run", "--config", str(spec), "--out", str(out), "-q"]) == 0
    cells = report(out, capsys)
    assert "transfer-beats-white-box" in next(c for c in cells if (c["defense"], c["attack"], c["eps"]) == ("bit-depth", "pgd", 0.2))["flags"]
    assert not any("transfer-beats-white-box" in c["flags"] for c in cells if c["defense"] == "none")


def test_a_trained_defense_is_trained_once_for_many_attacks(tmp_path, capsys, caplog):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(defenses='[[defenses]]\nname = "fast-at"'))
    with caplog.at_level(logging.INFO, logger="bench"):
        assert main(["run", "--config", str(spec), "--out", str(tmp_path / "first")]) == 0
        trainings = [r for r in caplog.records if r.getMessage().startswith("training small-cnn with fast-at")]
        assert len(trainings) == 1  # one training for the 4 attack jobs and the checks
        caplog.clear()
        assert main(["run", "--config", str(spec), "--out", str(tmp_path / "second")]) == 0
        assert any(r.getMessage().startswith("cache hit: small-cnn") for r in caplog.records)
        assert not any(r.getMessage().startswith("training") for r in caplog.records)


def test_smoothing_certificates_are_never_contradicted_by_an_attack(digits):
    smoothing = DEFENSES.create("randomized-smoothing", sigma=0.25, n=500)
    trained = obtain_model(
        ModelSpec("small-cnn"), digits, {"name": "digits"}, TrainingSpec(epochs=5), seed=0, device=torch.device("cpu"), objective=smoothing, objective_id=["rs"]
    )
    model = smoothing.wrap(trained.model).eval()
    x, y = digits.x_test[:60], digits.y_test[:60]
    torch.manual_seed(0)
    radius = smoothing.certify(model, x, y)
    assert (radius > 0).float().mean() > 0.5  # most points are certified at some radius
    for r in (0.25, 0.5):
        inside = radius > r
        if not inside.any():
            continue
        attack = ATTACKS.create("eot", eps=r, norm="l2", distribution="none", samples=4, steps=20)
        x_adv = attack(model, x[inside], y[inside])
        predictions = smoothing.predict(model, x_adv, draws=1000)
        contradicted = (predictions != y[inside]) & (predictions != ABSTAIN)
        assert not contradicted.any(), f"{int(contradicted.sum())} certified points flipped inside radius {r}"


def test_the_leaderboard_shows_certified_accuracy_beside_the_attacks(tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'n_examples = 40\nchecks = false\n[[models]]\nname = "small-cnn"\n[[defenses]]\nname = "randomized-smoothing"\nn = 100\n'
        '[[attacks]]\nname = "pgd"\nnorm = "l2"\neps = [0.25, 0.5]\nsteps = 5\n[training]\nepochs = 3\n'
    )
    out = tmp_path / "run"
    assert main(["run", "--config", str(spec), "--out", str(out), "-q"]) == 0
    cells = report(out, capsys)
    certified = {c["eps"]: c["robust_accuracy"] for c in cells if c["attack"] == "certified"}
    assert set(certified) == {0.25, 0.5} and certified[0.5] <= certified[0.25]
    assert {c["attack"] for c in cells} == {"pgd", "eot", "certified", "worst-case"}  # randomized: EOT added
    assert "certified %" in (out / "leaderboard.md").read_text()


@pytest.mark.parametrize(
    ("defense", "message"),
    [
        ('name = "bit-depth"\nbits = 0', "spec.defenses[0].bits: must be an integer in 1..8, got 0"),
        ('name = "jpeg"', "defense 'jpeg' needs images with 1 or 3 channels (C, H, W); the data have shape (2, 5, 5)"),
        ('name = "jpg"', "spec.defenses[0]: unknown defense 'jpg'; did you mean 'jpeg'"),
        ('name = "art:ThermometerEncoding"', "art:ThermometerEncoding is not supported as an image preprocessing defense"),
    ],
)
def test_a_defense_that_cannot_apply_is_one_line(defense, message, tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'dataset = "tests.helpers:two_channel_data"\nn_examples = 40\n[[defenses]]\n{defense}\n'
        '[[models]]\nname = "mlp"\n[[attacks]]\nname = "fgsm"\neps = 0.1\n'
    )
    assert main(["run", "--config", str(spec), "--out", str(tmp_path / "run")]) == 2
    assert message in one_line_error(capsys)
    assert not (tmp_path / "run" / "results.db").exists()
