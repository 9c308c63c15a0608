"""PGD-k against k x (forward + backward) and against torchattacks' PGD, on the same model and batch.

Goal (issue 2): PGD-k costs at most 1.10 x (k x forward+backward) and no more
than torchattacks' PGD. Two regimes per dataset:

* ``overhead``: labels set to the model's own predictions and eps so small
  that no example is ever fooled, so every step runs on the whole batch:
  the pure overhead of our loop over the model's forward and backward passes;
* ``typical``: eps as on the leaderboard; examples leave the batch once
  fooled, which is where our PGD saves time over torchattacks'.

Run with `make benchmark`; the ratios go to the benchmark JSON and the terminal.
"""

from __future__ import annotations

import pytest
import torch
import torchattacks

from attacks import ATTACKS
from bench.data import DATASETS
from bench.spec import ModelSpec, TrainingSpec
from bench.training import build_model, train_classifier
from tests.benchmarks.conftest import forward_backward, interleaved_medians, report

STEPS = 20
CASES = [
    ("digits", 360, "linf", 0.001, "overhead"),
    ("digits", 360, "linf", 0.1, "typical"),
    ("digits", 360, "l2", 0.01, "overhead"),
    ("digits", 360, "l2", 1.0, "typical"),
    ("mnist-5k", 64, "linf", 0.001, "overhead"),
    ("mnist-5k", 64, "linf", 0.1, "typical"),
]
_MODELS: dict[tuple[str, bool], tuple] = {}


def trained(dataset: str, train: bool):
    """small-cnn on ``dataset``, trained briefly (untrained when benchmarks are disabled: a smoke run)."""
    if (dataset, train) not in _MODELS:
        data = DATASETS.create(dataset)
        model = build_model(ModelSpec("small-cnn"), data, 0)
        if train:
            train_classifier(model, data, TrainingSpec(epochs=5 if dataset == "digits" else 1), seed=0, device=torch.device("cpu"))
        _MODELS[dataset, train] = (model.eval(), data)
    return _MODELS[dataset, train]


@pytest.mark.parametrize(("dataset", "n", "norm", "eps", "regime"), CASES, ids=[f"{c[0]}-{c[2]}-{c[4]}" for c in CASES])
def test_pgd_cost_ratio(benchmark, rounds, dataset, n, norm, eps, regime):
    model, data = trained(dataset, train=not benchmark.disabled)
    n = n if not benchmark.disabled else 16
    x, y = data.x_test[:n], data.y_test[:n]
    if regime == "overhead":
        with torch.no_grad():
            y = model(x).argmax(dim=1)
    ours = ATTACKS.create("pgd", eps=eps, norm=norm, steps=STEPS, step_size=eps / 4)
    reference = (torchattacks.PGD if norm == "linf" else torchattacks.PGDL2)(model, eps=eps, alpha=eps / 4, steps=STEPS, random_start=True)
    medians = interleaved_medians(
        {"ours": lambda: ours(model, x, y), "torchattacks": lambda: reference(x, y), "k_forward_backward": forward_backward(model, x, y, STEPS)},
        rounds,
    )
    benchmark.pedantic(ours, args=(model, x, y), rounds=rounds, iterations=1)
    report(
        benchmark,
        f"PGD-{STEPS} {norm} eps {eps} on {dataset} (n={n}, {regime})",
        {
            "ratio_to_k_forward_backward": medians["ours"] / medians["k_forward_backward"],
            "ratio_to_torchattacks": medians["ours"] / medians["torchattacks"],
            "seconds_ours": medians["ours"],
        },
    )
