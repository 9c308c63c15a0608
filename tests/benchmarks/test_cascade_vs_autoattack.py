"""Our default cascade against torchattacks' AutoAttack (standard), on the same model and points.

Goal (issue 3): robust accuracy within 1 point of AutoAttack's, at most a fifth of its time,
still ending with a black-box attack on what survives. Two models: undefended and PGD-trained.
The cascade is timed with and without the sanity checks (they are extra diagnostics).
"""

from __future__ import annotations

import time

import pytest
import torch
import torchattacks

import bench
from bench.data import DATASETS
from bench.guard import predict
from bench.spec import ModelSpec, TrainingSpec
from bench.training import build_model, train_classifier
from defenses import DEFENSES
from tests.benchmarks.conftest import report

EPS = 0.1


@pytest.mark.parametrize("defense", ["none", "pgd-at"])
def test_default_cascade_against_autoattack(benchmark, defense):
    data = DATASETS.create("digits")
    n = 360 if not benchmark.disabled else 8
    x, y = data.x_test[:n], data.y_test[:n]
    chosen = DEFENSES.create(defense, **({"eps": EPS} if defense != "none" else {}))
    epochs = 30 if not benchmark.disabled else 1
    model = build_model(ModelSpec("small-cnn"), data, seed=0)
    model = train_classifier(model, data, TrainingSpec(epochs=epochs), seed=0, device=torch.device("cpu"), objective=chosen if chosen.trains else None).eval()

    start = time.perf_counter()
    autoattack = torchattacks.AutoAttack(model, norm="Linf", eps=EPS, version="standard", n_classes=10, seed=0)
    aa_accuracy = (predict(model, autoattack(x, y)) == y).float().mean().item()
    aa_seconds = time.perf_counter() - start

    start = time.perf_counter()
    plain = bench.evaluate(model, x, y, eps=EPS, checks=False)
    cascade_seconds = time.perf_counter() - start
    start = time.perf_counter()
    checked = bench.evaluate(model, x, y, eps=EPS, checks=True)
    checked_seconds = time.perf_counter() - start
    assert torch.equal(plain.robust, checked.robust) or abs(plain.robust_accuracy - checked.robust_accuracy) <= 0.01

    benchmark.pedantic(lambda: None, rounds=1, iterations=1)  # the figures are the ratios below
    report(
        benchmark,
        f"default cascade vs AutoAttack, {defense}, Linf eps {EPS}, n={n}",
        {
            "autoattack_accuracy": aa_accuracy,
            "cascade_accuracy": plain.robust_accuracy,
            "accuracy_gap_points": 100 * (plain.robust_accuracy - aa_accuracy),
            "autoattack_seconds": aa_seconds,
            "cascade_seconds": cascade_seconds,
            "time_ratio": cascade_seconds / aa_seconds,
            "time_ratio_with_checks": checked_seconds / aa_seconds,
        },
    )
