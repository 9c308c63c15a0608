"""Discoverable defaults: `bench spec` prints a runnable default spec; `bench list KIND NAME` shows parameters, defaults, meaning."""

from __future__ import annotations

import tomllib

import pytest

from bench.cli import main
from bench.spec import spec_from


@pytest.mark.parametrize("track", ["adversarial", "uncertainty", "random-labels"])
def test_bench_spec_prints_the_default_spec_as_toml_that_runs_the_same(track, tmp_path, capsys):
    assert main(["spec", "--track", track]) == 0
    text = capsys.readouterr().out
    raw = tomllib.loads(text)  # valid TOML
    for field in ("track", "dataset", "seed", "device", "batch_size", "training", "models", "attacks" if track != "random-labels" else "corruptions"):
        assert field in raw, field
    assert set(raw["training"]) == {"epochs", "lr", "batch_size", "weight_decay", "optimizer"}  # every training field, defaults included
    path = tmp_path / "spec.toml"
    path.write_text(text)
    assert spec_from(config=path).canonical() == spec_from(track=track).canonical()  # the file is the default, field for field
    assert spec_from(config=path).executor == spec_from(track=track).executor  # and runs where the default runs


def test_bench_spec_names_an_unknown_track_in_one_line(capsys):
    assert main(["spec", "--track", "adversarail"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown track 'adversarail'; did you mean 'adversarial'") and "\n" not in err


@pytest.mark.parametrize(
    ("kind", "name", "expected"),
    [
        ("defenses", "pgd-at", [("eps", "0.1", "training-time budget"), ("steps", "7", "PGD steps per training batch"), ("norm", "linf", "")]),
        ("defenses", "randomized-smoothing", [("sigma", "0.25", "standard deviation"), ("alpha", "0.001", "failure probability")]),
        ("models", "small-cnn", [("width", "32", "channels of the first conv layer"), ("dropout", "0.0", "dropout before each dense layer")]),
        ("estimators", "mc-dropout", [("samples", "20", "stochastic forward passes")]),
    ],
)
def test_list_one_component_shows_each_parameter_with_its_default_and_meaning(kind, name, expected, capsys):
    assert main(["list", kind, name]) == 0
    out = capsys.readouterr().out
    assert f"parameters of {name}:" in out
    lines = out.splitlines()
    for parameter, default, meaning in expected:
        row = next(line for line in lines if line.split() and line.split()[0] == parameter)
        assert row.split()[1] == default and meaning in row
    assert "input_shape" not in out and "num_classes" not in out  # given by the dataset, not by the user
