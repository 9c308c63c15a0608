"""MC dropout with T passes against T plain forward passes, on the same model and batch.

Goal (issue 5): T stochastic passes cost at most 1.1 x T forward passes
(batched: the batch repeated T times, never a loop over examples). Two
references, timed round by round in the same process:

* ``t_forward``: T plain passes in eval mode (dropout off), as a
  deterministic prediction would run;
* ``t_stochastic``: T passes of the whole batch with dropout on, a loop over
  passes: what sampling dropout costs by itself (drawing the masks), so the
  ratio to it is the overhead of our batching and entropy bookkeeping.

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
from models.estimators.mc_dropout import dropout_only
from tests.benchmarks.conftest import interleaved_medians, report

CASES = [("digits", "small-cnn", 360, 20), ("digits", "mlp", 360, 20), ("mnist-5k", "small-cnn", 100, 10)]


def plain_passes(model, x, passes):
    @torch.no_grad()
    def run():
        model.eval()
        for _ in range(passes):
            out = torch.softmax(model(x), dim=1)
        return out

    return run


def stochastic_passes(model, x, passes):
    @torch.no_grad()
    def run():
        with dropout_only(model):
            return torch.stack([torch.softmax(model(x), dim=1) for _ in range(passes)])

    return run


@pytest.mark.parametrize(("dataset", "name", "n", "passes"), CASES, ids=[f"{c[0]}-{c[1]}-T{c[3]}" for c in CASES])
def test_mc_dropout_cost_ratio(benchmark, rounds, dataset, name, n, passes):
    data = DATASETS.create(dataset)
    model = build_model(ModelSpec(name, {"dropout": 0.25}), data, 0).eval()  # untrained: the cost does not depend on the weights
    n = n if not benchmark.disabled else 16
    x = data.x_test[:n]
    estimator = ESTIMATORS.create("mc-dropout", samples=passes)
    mc = lambda: estimator.predict([model], x)
    references = {"t_forward": plain_passes(model, x, passes), "t_stochastic": stochastic_passes(model, x, passes)}
    medians = interleaved_medians({"mc_dropout": mc, **references}, rounds)
    benchmark.pedantic(mc, rounds=rounds, iterations=1)
    report(
        benchmark,
        f"MC dropout, T = {passes}, {name} on {dataset} (n={n})",
        {
            "ratio_to_t_forward": medians["mc_dropout"] / medians["t_forward"],
            "ratio_to_t_stochastic": medians["mc_dropout"] / medians["t_stochastic"],
            "seconds_mc_dropout": medians["mc_dropout"],
        },
    )
