"""MC dropout with T passes against T plain forward passes, on the same model and batch.

Goal (issue 5): T stochastic passes cost at most 1.1 x T forward passes
(batched: the batch repeated T times, never a loop over examples). The plain
passes run in eval mode (dropout off), as a deterministic prediction would.

Run with `make benchmark` (or `pytest tests/benchmarks/test_mc_dropout_cost.py --benchmark-enable -s`);
the ratio goes to the benchmark JSON and the terminal.
"""

from __future__ import annotations

import pytest
import torch

from bench.data import DATASETS
from bench.spec import ModelSpec
from bench.training import build_model
from models import ESTIMATORS
from tests.benchmarks.conftest import interleaved_medians, report

CASES = [("digits", "small-cnn", 360, 20), ("digits", "mlp", 360, 20), ("mnist-5k", "small-cnn", 200, 10)]


def plain_passes(model, x, passes):
    @torch.no_grad()
    def run():
        model.eval()
        for _ in range(passes):
            out = torch.softmax(model(x), dim=1)
        return out

    return run


@pytest.mark.parametrize(("dataset", "name", "n", "passes"), CASES, ids=[f"{c[0]}-{c[1]}-T{c[3]}" for c in CASES])
def test_mc_dropout_cost_ratio(benchmark, rounds, dataset, name, n, passes):
    data = DATASETS.create(dataset)
    model = build_model(ModelSpec(name, {"dropout": 0.25}), data, 0).eval()  # untrained: the cost does not depend on the weights
    n = n if not benchmark.disabled else 16
    x = data.x_test[:n]
    estimator = ESTIMATORS.create("mc-dropout", samples=passes)
    mc = lambda: estimator.predict([model], x)
    medians = interleaved_medians({"mc_dropout": mc, "t_forward": plain_passes(model, x, passes)}, rounds)
    benchmark.pedantic(mc, rounds=rounds, iterations=1)
    report(
        benchmark,
        f"MC dropout, T = {passes}, {name} on {dataset} (n={n})",
        {"ratio_to_t_forward": medians["mc_dropout"] / medians["t_forward"], "seconds_mc_dropout": medians["mc_dropout"]},
    )
