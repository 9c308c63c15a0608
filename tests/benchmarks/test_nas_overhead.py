"""The harness's cost per evaluated architecture of a tabular search, against the same searches driven without it.

Goal (issue 14): under 5 ms per tabular evaluation, storing it included. The
harness run (``bench.runner.run``: planning by replay, one job per evaluated
architecture run in the driver, one SQLite transaction per job) and the bare
loop (the same ``Search`` objects asking random search, the same table
lookups and objective, results in a dict) evaluate the same architectures;
``overhead_ms`` is their difference per evaluation. Random search keeps the
strategy's own time out of the way.

Run with `make benchmark` (or `pytest tests/benchmarks/test_nas_overhead.py --benchmark-enable -s`).
"""

from __future__ import annotations

import time

from bench.runner import run
from bench.spec import build
from bench.tracks.nas.objective import Objective
from bench.tracks.nas.search import MISSING, Search
from bench.tracks.nas.spaces import SEARCH_SPACES
from bench.tracks.nas.strategies import STRATEGIES
from tests.benchmarks.conftest import report


def bare(seeds: int, budget: int) -> float:
    """Seconds to run the searches without the harness: ask, look up, score, tell."""
    space = SEARCH_SPACES.create("nas-bench-graph", dataset="cora")
    objective = Objective()
    start = time.perf_counter()
    for seed in range(seeds):
        search = Search(STRATEGIES.create("random", context={"sizes": space.sizes, "seed": seed}), space.canonical, budget)
        values: dict[str, float | None] = {}
        while search.state == "running":
            before = len(search.proposals)
            search.advance(lambda key, known=values: known.get(key, MISSING))
            for proposal in search.proposals[before:]:
                values[proposal.key] = objective.value(space.lookup(proposal.key))
    return time.perf_counter() - start


def test_harness_overhead_per_tabular_evaluation(benchmark, tmp_path):
    seeds, budget = (2, 100) if benchmark.disabled else (5, 1000)
    raw = {
        "track": "nas",
        "seeds": seeds,
        "budgets": [budget],
        "strategies": ["random"],
        "spaces": [{"name": "nas-bench-graph", "dataset": "cora"}],
        "executor": "serial",
    }
    spec = build(raw, base_dir=tmp_path)
    bare(1, 10)  # warm-up: the table read, imports
    reference = bare(seeds, budget)
    start = time.perf_counter()
    summary = run(spec, tmp_path / "run")
    harness = time.perf_counter() - start
    evaluations = seeds * budget
    assert summary.ran == evaluations + 1 and not summary.failed  # and the optimum
    benchmark.pedantic(lambda: run(spec, tmp_path / "run"), rounds=1, iterations=1)  # the resumed run: replay only
    report(
        benchmark,
        f"NAS-Bench-Graph random search, {seeds} seeds x {budget} evaluations through the harness vs the bare loop",
        {
            "overhead_ms": 1e3 * (harness - reference) / evaluations,
            "harness_ms_per_evaluation": 1e3 * harness / evaluations,
            "bare_ms_per_evaluation": 1e3 * reference / evaluations,
        },
    )
