"""The NAS track's reports from hand-made records: best-so-far per budget, regret, found optimum, the verdict against random
search, failed and short searches, the Pareto front of a trained table, tables, summary, page, figures and exports."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics

import pytest

import reports.nas_plots as plots
from bench.baseline import cell_metrics
from bench.store import Record
from reports.csv_export import to_csv
from reports.json_export import to_json
from reports.nas import EXPLANATIONS, aggregate, pareto_front, percentile
from reports.nas_tables import nas_markdown, summary_lines, tables
from reports.plots import save_png, to_svg

T_975_4 = 2.7764451051977987  # t_{0.975, 4}: the 95 % interval over 5 seeds
SPACE, DATASET, OBJECTIVE = "toy", "cora", "accuracy"
BUDGETS = [2, 5, 10]
OPT, OPT_TEST, ORACLE_TEST = 0.9, 0.88, 0.89
QUANTILES = [0.4 + 0.005 * i for i in range(101)]  # the table's feasible values: uniform on [0.4, 0.9]
SEEDS = range(5)
# per step (1..10) the validation value; None: infeasible (over the params constraint). Every seed adds 0.01 * seed.
RANDOM = [0.50, 0.60, 0.55, None, 0.70, 0.65, 0.72, 0.68, 0.80, 0.75]
EVOLUTION = [0.50, 0.60, OPT, None, 0.80, 0.81, 0.82, 0.83, 0.80, 0.70]  # the optimum at step 3 in every seed; steps 1-2 as random's


def value_of(strategy, step, seed):
    base = (RANDOM if strategy == "random" else EVOLUTION)[step - 1]
    if base is None:
        return None
    return base if base == OPT else base + 0.01 * seed


def search(strategy, seed, step, value, *, space=SPACE, budget=10, budgets=BUDGETS, status="ok", position=0, feasible=None):
    """One evaluated architecture of one search, as the track stores it."""
    labels = {"role": "search", "space": space, "dataset": DATASET, "objective": OBJECTIVE, "strategy": strategy, "seed": seed, "step": step,
              "arch": f"arch-{strategy}-{seed}-{step}"}  # fmt: skip
    key = f"{space}-{strategy}-{seed}-{step}"
    if status != "ok":
        return Record(key, "nas", position, labels, status, {}, [], error="CUDA out of memory", seconds=1.0)
    feasible = value is not None if feasible is None else feasible
    metrics = {"value": value, "feasible": feasible, "test_value": None if value is None else value - 0.02, "val_accuracy": value, "test_accuracy": value,
               "params": 1000.0 * step, "latency_ms": None, "arch_key": f"k-{strategy}-{seed}-{step}", "budget": budget, "budgets": budgets,
               "asks": step + 1, "strategy_seconds": 0.01}  # fmt: skip
    return Record(key, "nas", position, labels, status, metrics, [], seconds=0.5)


def optimum(*, space=SPACE, n_archs=20):
    labels = {"role": "optimum", "space": space, "dataset": DATASET, "objective": OBJECTIVE, "strategy": "exhaustive", "seed": None, "step": None,
              "arch": "arch-best"}  # fmt: skip
    metrics = {"value": OPT, "test_value": OPT_TEST, "best_test_value": ORACLE_TEST, "arch_key": "k-best", "n_archs": n_archs, "n_feasible": n_archs - 2,
               "quantiles": QUANTILES, "val_accuracy": OPT, "test_accuracy": OPT_TEST}  # fmt: skip
    return Record(f"{space}-optimum", "nas", 0, labels, "ok", metrics, [], seconds=3.0)


def build(strategies=("random", "evolution"), seeds=SEEDS, *, with_optimum=True, steps=10, change=None, n_archs=20):
    """Searches of every strategy x seed (``change(strategy, seed, step)`` may return a replacement record or "skip"), then the optimum."""
    records = []
    for strategy in strategies:
        for seed in seeds:
            for step in range(1, steps + 1):
                made = change(strategy, seed, step) if change else None
                if made == "skip":
                    continue
                records.append(made or search(strategy, seed, step, value_of(strategy, step, seed)))
    if with_optimum:
        records.append(optimum(n_archs=n_archs))
    return [Record(**{**r.__dict__, "position": i}) for i, r in enumerate(records)]


def cell_of(cells, strategy, budget, role="search"):
    (found,) = [c for c in cells if c["role"] == role and c["strategy"] == strategy and c["budget"] == budget]
    return found


@pytest.fixture(scope="module")
def cells():
    return aggregate(build())


def best(strategy, seed, budget):
    return max(v for step in range(1, budget + 1) if (v := value_of(strategy, step, seed)) is not None)


def test_one_cell_per_strategy_and_budget_then_the_optimum(cells):
    assert [(c["role"], c["strategy"], c["budget"]) for c in cells] == [
        *(("search", s, b) for s in ("random", "evolution") for b in BUDGETS),
        ("optimum", "exhaustive", 20),
    ]
    cell = cell_of(cells, "random", 5)
    assert (cell["track"], cell["space"], cell["dataset"], cell["objective"]) == ("nas", SPACE, DATASET, OBJECTIVE)
    assert cell["status"] == "ok" and cell["seeds"] == list(SEEDS) and cell["flags"] == [] and cell["error"] is None
    assert len(cell["keys"]) == 5 * 5 and len(cell_of(cells, "random", 10)["keys"]) == 5 * 10


@pytest.mark.parametrize("strategy", ["random", "evolution"])
@pytest.mark.parametrize("budget", BUDGETS)
def test_best_so_far_regret_and_the_pick_are_the_hand_computed_ones(cells, strategy, budget):
    metrics = cell_of(cells, strategy, budget)["metrics"]
    bests = [best(strategy, s, budget) for s in SEEDS]
    mean = statistics.fmean(bests)
    assert metrics["best_value"] == pytest.approx(mean) and metrics["per_seed"]["best_value"] == pytest.approx(bests)
    half = T_975_4 * statistics.stdev(bests) / math.sqrt(5)
    assert metrics["best_value_low"] == pytest.approx(mean - half) and metrics["best_value_high"] == pytest.approx(min(OPT, mean + half))
    assert metrics["regret"] == pytest.approx(OPT - mean) and metrics["regret_low"] >= 0
    assert metrics["test_value"] == pytest.approx(mean - 0.02)  # the test value of each seed's pick
    found = sum(b == OPT for b in bests) / 5
    assert metrics["found_optimum"] == found and metrics["seeds"] == 5 and metrics["evaluations"] == budget
    assert metrics["percentile"] == pytest.approx(statistics.fmean(min(1.0, (b - 0.4) / 0.5) for b in bests))
    steps = [next(step for step in range(1, budget + 1) if value_of(strategy, step, s) == b) for s, b in zip(SEEDS, bests, strict=True)]
    assert metrics["per_seed"]["step"] == steps and metrics["picks"] == [f"arch-{strategy}-{s}-{t}" for s, t in zip(SEEDS, steps, strict=True)]
    assert metrics["timing"] == {"strategy_seconds": pytest.approx(0.01 * budget)} and "strategy_seconds" not in metrics


def test_the_optimum_cell_and_the_series(cells):
    metrics = cell_of(cells, "exhaustive", 20, role="optimum")["metrics"]
    expected = {"best_value": OPT, "test_value": OPT_TEST, "best_test_value": ORACLE_TEST, "regret": 0.0, "found_optimum": 1.0, "n_archs": 20,
                "n_feasible": 18, "arch": "arch-best"}  # fmt: skip
    assert {k: metrics[k] for k in expected} == expected
    series = cell_of(cells, "evolution", 10)["series"]
    assert series["steps"] == list(range(1, 11)) and series["mean"][2:] == pytest.approx([OPT] * 8)
    assert series["mean"][0] == pytest.approx(0.52) and series["low"][2] == pytest.approx(OPT)
    assert cell_of(cells, "random", 5)["series"]["steps"] == [1, 2, 3, 4, 5]


def test_a_strategy_that_always_finds_the_optimum_beats_random_search_and_an_equal_one_does_not(cells):
    assert cell_of(cells, "random", 5)["metrics"]["verdict"] == "reference" and cell_of(cells, "random", 5)["metrics"]["p_value"] is None
    for budget in (5, 10):
        metrics = cell_of(cells, "evolution", budget)["metrics"]
        assert metrics["verdict"] == "better than random search" and metrics["p_value"] < 0.01
    equal = cell_of(cells, "evolution", 2)["metrics"]  # steps 1 and 2 are random's: the same per-seed bests
    assert equal["verdict"] == "not better than random search" and equal["p_value"] > 0.4
    alone = aggregate(build(strategies=("evolution",)))
    assert cell_of(alone, "evolution", 10)["metrics"]["verdict"] is None  # no random search: no verdict


def test_with_one_seed_there_is_no_interval():
    metrics = cell_of(aggregate(build(seeds=[0])), "random", 10)["metrics"]
    assert metrics["best_value"] == pytest.approx(0.80) and metrics["seeds"] == 1
    assert metrics["best_value_low"] is None and metrics["best_value_high"] is None and metrics["regret_low"] is None


def test_a_failed_evaluation_stops_the_search_and_its_budgets_beyond_it_are_absent():
    def fail_at_4(strategy, seed, step):
        if strategy == "evolution" and step == 4:
            return search(strategy, seed, step, None, status="failed")
        return "skip" if strategy == "evolution" and step > 4 else None

    found = aggregate(build(change=fail_at_4))
    assert [c["budget"] for c in found if c["strategy"] == "evolution"] == [2]
    cell = cell_of(found, "evolution", 2)
    assert "search-incomplete" in cell["flags"] and cell["error"] == "CUDA out of memory"
    assert {f"toy-evolution-{s}-4" for s in SEEDS} <= set(cell["keys"])  # every record stands behind a cell

    def one_seed_fails(strategy, seed, step):
        if (strategy, seed) == ("evolution", 4) and step >= 4:
            return search(strategy, seed, step, None, status="failed") if step == 4 else "skip"
        return None

    partial = aggregate(build(change=one_seed_fails))
    cell = cell_of(partial, "evolution", 10)
    assert cell["seeds"] == [0, 1, 2, 3] and cell["flags"] == ["search-incomplete", "seeds-incomplete"] and cell["metrics"]["seeds"] == 4
    assert cell_of(partial, "evolution", 2)["seeds"] == list(SEEDS) and cell_of(partial, "evolution", 2)["flags"] == ["search-incomplete"]
    page = nas_markdown(partial)
    assert "## Failed jobs" in page and "toy / cora / accuracy / evolution: CUDA out of memory" in page
    row = next(r for r in tables(partial)[0].rows if r[0] == "evolution")
    assert row[-2:] == ("4/5", "search-incomplete, seeds-incomplete")


def test_infeasible_architectures_never_count_as_the_best():
    def infeasible_peak(strategy, seed, step):
        return search(strategy, seed, step, 0.99, feasible=False) if step == 4 else None  # over the constraint: its value is ignored

    metrics = cell_of(aggregate(build(change=infeasible_peak)), "random", 5)["metrics"]
    assert metrics["per_seed"]["best_value"] == pytest.approx([0.70 + 0.01 * s for s in SEEDS])
    assert percentile(0.80, QUANTILES) == pytest.approx(0.8) and percentile(0.3, QUANTILES) == 0.0 and percentile(0.95, QUANTILES) == 1.0


def test_short_searches_small_spaces_and_a_missing_optimum_are_flagged():
    short = aggregate(build(steps=7))  # every search ended at step 7 (the strategy proposed no new architecture)
    cell = cell_of(short, "random", 10)
    assert cell["flags"] == ["budget-not-reached"] and cell["metrics"]["evaluations"] == 7
    assert cell["metrics"]["best_value"] == pytest.approx(statistics.fmean(0.72 + 0.01 * s for s in SEEDS))
    small = aggregate(build(steps=8, n_archs=8))  # budget 10 > 8 architectures: reported at 8
    assert [c["budget"] for c in small if c["strategy"] == "random"] == [2, 5, 8]
    assert cell_of(small, "random", 8)["flags"] == ["space-exhausted"] and cell_of(small, "random", 5)["flags"] == []
    blind = aggregate(build(with_optimum=False))
    metrics = cell_of(blind, "evolution", 10)["metrics"]
    assert "no-optimum" in cell_of(blind, "evolution", 10)["flags"] and not [c for c in blind if c["role"] == "optimum"]
    assert metrics["regret"] is None and metrics["found_optimum"] is None and metrics["percentile"] is None
    assert metrics["verdict"] == "better than random search"
    assert set(EXPLANATIONS) >= {"search-incomplete", "seeds-incomplete", "budget-not-reached", "no-optimum", "space-exhausted"}


def test_the_pareto_front_of_four_points():
    points = [
        {"test_accuracy": 0.90, "robust_test_accuracy": 0.50, "params": 100},
        {"test_accuracy": 0.85, "robust_test_accuracy": 0.60, "params": 50},
        {"test_accuracy": 0.80, "robust_test_accuracy": 0.40, "params": 200},  # worse than the first in everything
        {"test_accuracy": 0.70, "robust_test_accuracy": 0.30, "params": 10},
    ]
    assert pareto_front(points) == [True, True, False, True]
    assert pareto_front([{**p, "robust_test_accuracy": None} for p in points]) == [True, True, False, True]  # on test accuracy and params alone


def table_record(arch, seed, test, robust, params, position):
    labels = {"role": "table", "space": "cells", "dataset": DATASET, "objective": None, "strategy": "table", "seed": seed, "step": None, "arch": arch}
    metrics = {"val_accuracy": test, "test_accuracy": test, "robust_val_accuracy": robust, "robust_test_accuracy": robust, "params": params,
               "latency_ms": 1.0, "arch_key": f"k-{arch}", "train_seconds": 5.0}  # fmt: skip
    return Record(f"table-{arch}-{seed}", "nas", position, labels, "ok", metrics, [], seconds=5.0)


@pytest.fixture(scope="module")
def with_table():
    table = [("a", 0, 0.89, 0.50, 100), ("a", 1, 0.91, 0.50, 100), ("b", 0, 0.85, 0.60, 50), ("c", 0, 0.80, 0.40, 200), ("d", 0, 0.70, 0.30, 10)]
    records = [table_record(*row, position=i) for i, row in enumerate(table)]
    for seed in (0, 1):  # random search on the cells space: picks b, then a
        for step, arch in enumerate(("b", "a"), start=1):
            made = search("random", seed, step, 0.85 if arch == "b" else 0.90, space="cells", budget=2, budgets=[1, 2])
            records.append(Record(**{**made.__dict__, "position": len(records), "metrics": {**made.metrics, "arch_key": f"k-{arch}"}}))
    return aggregate(build() + [Record(**{**r.__dict__, "position": 1000 + r.position}) for r in records])


def test_the_pareto_cell_holds_the_table_its_front_and_the_picks(with_table):
    (cell,) = [c for c in with_table if c["role"] == "pareto"]
    assert (cell["space"], cell["strategy"], cell["budget"], cell["status"]) == ("cells", "table", None, "ok")
    points = {p["arch"]: p for p in cell["series"]["points"]}
    assert points["a"]["test_accuracy"] == pytest.approx(0.90) and points["a"]["trainings"] == 2
    assert {arch: p["front"] for arch, p in points.items()} == {"a": True, "b": True, "c": False, "d": True}
    assert cell["metrics"] == {"n_archs": 4, "n_front": 3} and len(cell["keys"]) == 5
    (pick,) = cell["series"]["picks"]
    assert (pick["strategy"], pick["budget"], pick["arch_key"], pick["seeds"], pick["params"]) == ("random", 2, "k-a", 2, 100)
    assert [t.title for t in tables(with_table)] == ["toy / cora, objective accuracy", "cells / cora, objective accuracy"]


def test_tables_render_with_a_row_per_strategy_and_the_optimum_last(cells):
    (table,) = tables(cells)
    assert table.headers == ("strategy", "best % @ 2", "best % @ 5", "best % @ 10", "regret (points) @ 10", "test % @ 10", "found optimum @ 10",
                             "verdict @ 10", "seeds @ 10", "flags")  # fmt: skip
    assert [row[0] for row in table.rows] == ["random", "evolution", "exhaustive (optimum of 20)"]
    assert all(len(row) == len(table.headers) == len(values) for row, values in zip(table.rows, table.values, strict=True))
    evolution = dict(zip(table.headers, table.rows[1], strict=True))
    assert evolution["best % @ 10"] == "90.0 ± 0.0" and evolution["found optimum @ 10"] == "5/5" and evolution["regret (points) @ 10"] == "0.0 ± 0.0"
    assert evolution["verdict @ 10"].startswith("better than random search (p = 0.00")
    random = dict(zip(table.headers, table.rows[0], strict=True))
    half = 100 * T_975_4 * statistics.stdev([0.80 + 0.01 * s for s in SEEDS]) / math.sqrt(5)
    assert random["best % @ 10"] == f"82.0 ± {half:.1f}" and random["verdict @ 10"] == "reference" and random["found optimum @ 10"] == "0/5"
    assert random["seeds @ 10"] == "5/5" and random["flags"] == ""
    assert table.values[1][3] == pytest.approx(OPT) and "test split is used only for the picked architecture" in table.note and "2, 5, 10" in table.note
    page = nas_markdown(cells)
    assert page.startswith("# Leaderboard: nas track\n") and table.markdown() in page and "| evolution " in page and "Failed jobs" not in page
    assert nas_markdown([]) == "# Leaderboard: nas track\n\nNo results yet.\n"


def test_summary_lines_quote_the_middle_budget_and_the_verdict(cells):
    random, evolution = summary_lines(cells)
    assert evolution.startswith("toy / cora, objective accuracy, budget 5: evolution finds 90.0 ± 0.0 % validation accuracy")
    assert "(regret 0.0 points, the optimum in 5 of 5 seeds): better than random search (p = " in evolution
    assert random.startswith("toy / cora, objective accuracy, budget 5: random finds 72.0 ± ") and random.endswith(": the reference")


def test_figures_build_and_save(cells, with_table, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    found = plots.figures(with_table)
    assert [p.name for p in found] == ["nas-best-so-far-toy-cora-accuracy", "nas-best-so-far-cells-cora-accuracy", "nas-pareto-cells-cora"]
    for plot in found:
        svg = to_svg(plot)
        assert svg.lstrip().startswith("<?xml") and "</svg>" in svg
        assert save_png(plot, tmp_path).stat().st_size > 0
    assert "table optimum: 90.0 %" in to_svg(found[0]) and "random: picks" in to_svg(found[2]) and "Pareto front" in to_svg(found[2])
    assert [p.name for p in plots.images(cells)] == ["nas-best-so-far-toy-cora-accuracy"]
    assert plots.figures([]) == []


def test_exports_and_the_gate_read_only_reproducible_numbers(cells, with_table):
    gated = set(cell_metrics(cell_of(cells, "evolution", 10)))
    assert {"best_value", "regret", "test_value", "found_optimum", "best_value_low", "percentile", "evaluations"} <= gated
    assert not gated & {"strategy_seconds", "seconds"}
    rows = list(csv.reader(io.StringIO(to_csv(with_table))))
    assert len(rows) == len(with_table) + 1 and all(len(row) == len(rows[0]) for row in rows)
    assert "metrics.best_value" in rows[0] and not [c for c in rows[0] if c.startswith("series")]
    document = json.loads(to_json(with_table), parse_constant=lambda constant: pytest.fail(f"not standard JSON: {constant}"))
    assert len(document["cells"]) == len(with_table) and document["cells"][0]["role"] == "search"
