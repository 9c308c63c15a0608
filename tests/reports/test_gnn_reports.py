"""The GNN track's reports from hand-made records and outcomes: means and t-intervals over seeds, the per-node worst case,
gradient masking, the graph-free baseline, failed seeds, tables, summary, page, figures and exports."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics

import pytest

import reports.gnn_plots as plots
from bench.baseline import cell_metrics
from bench.store import Outcome, Record
from reports.csv_export import to_csv
from reports.gnn import EXPLANATIONS, WORST_CASE, aggregate, gradient_masking, masked_pairs
from reports.gnn_tables import gnn_markdown, summary_lines, tables
from reports.json_export import to_json
from reports.plots import save_png, to_svg

T_975_1 = 12.706204736174698  # t_{0.975, 1}: the 95 % interval over 2 seeds
N = 50  # attacked test nodes per job
DATASET = "csbm"
SVD = "svd(rank=10)"

# (model, defense) -> per seed, how many of the first nodes the model gets wrong on the clean graph
WRONG = {("gcn", "none"): {0: 3, 1: 4}, ("gcn", SVD): {0: 5, 1: 6}, ("mlp", "none"): {0: 15, 1: 14}}
# (model, defense, attack, mode, budget) -> the nodes the attack breaks (the same in both seeds; none is a clean mistake)
BROKEN = {
    ("gcn", "none", "prbcd", "adaptive", 0.05): range(10, 18),
    ("gcn", "none", "dice", "adaptive", 0.05): range(16, 20),  # overlaps prbcd's: the worst case breaks 10 nodes, each attack fewer
    ("gcn", "none", "prbcd", "adaptive", 0.1): range(10, 24),
    ("gcn", "none", "dice", "adaptive", 0.1): range(20, 28),
    ("gcn", SVD, "prbcd", "adaptive", 0.05): range(10, 13),  # 3 nodes = 6 points below transferred: masking
    ("gcn", SVD, "prbcd", "transfer", 0.05): range(0),
    ("gcn", SVD, "prbcd", "adaptive", 0.1): range(10, 14),  # 4 nodes below 2: 4 points, not masking
    ("gcn", SVD, "prbcd", "transfer", 0.1): range(10, 12),
    ("gcn", SVD, "dice", "adaptive", 0.05): range(30, 31),
    ("gcn", SVD, "dice", "adaptive", 0.1): range(30, 32),
    ("mlp", "none", "prbcd", "adaptive", 0.05): range(0),  # graph-free: no edge flip moves it
    ("mlp", "none", "dice", "adaptive", 0.05): range(0),
    ("mlp", "none", "prbcd", "adaptive", 0.1): range(0),
    ("mlp", "none", "dice", "adaptive", 0.1): range(0),
}


def vectors(model, defense, attack, mode, budget, seed):
    wrong = WRONG[(model, defense)][seed]
    clean = [i >= wrong for i in range(N)]
    broken = set(BROKEN.get((model, defense, attack, mode, budget), ()))
    return clean, [c and i not in broken for i, c in enumerate(clean)]


def job(model, defense, attack, mode, budget, seed, *, status="ok", flags=(), error=None, position=0):
    """One job's record and outcomes as the track stores them."""
    labels = {"model": model, "defense": defense, "attack": attack, "mode": mode, "budget": budget, "dataset": DATASET, "seed": seed}
    key = f"{model}-{defense}-{attack}-{mode}-{budget}-{seed}"
    if status == "failed":
        return Record(key, "gnn", position, labels, status, {}, list(flags), error=error or "CUDA out of memory", seconds=1.0), None
    metrics = {"kind": "structure", "budget_unit": "edges", "level": "nodes", "seed": seed, "graph_free": model == "mlp"}
    if status == "invalid":
        return Record(key, "gnn", position, labels, status, metrics, list(flags), error=error or "3 directed edges", seconds=1.0), None
    clean, robust = vectors(model, defense, attack, mode, budget, seed)
    clean_accuracy, robust_accuracy = sum(clean) / N, sum(robust) / N
    metrics.update(
        clean_accuracy=clean_accuracy,
        robust_accuracy=robust_accuracy,
        relative_drop=1 - robust_accuracy / clean_accuracy,
        changed=round(400 * budget) - 1,
        allowed=round(400 * budget),
        n_targets=N,
        surrogate="gcn" if mode == "transfer" else None,
        attack_seconds=0.25 + seed,
        train_seconds=2.0,
        flips=[[0, 1]],
    )
    outcomes = [Outcome(i, {"clean": c, "robust": r}) for i, (c, r) in enumerate(zip(clean, robust, strict=True))]
    return Record(key, "gnn", position, labels, status, metrics, list(flags), seconds=1.5 + seed), outcomes


def plan():
    """Plan order: models, defenses, attacks, budgets, seeds; transfer jobs after their surrogates'."""
    jobs = []
    for model, defense in (("gcn", "none"), ("gcn", SVD), ("mlp", "none")):
        for attack in ("prbcd", "dice"):
            for budget in (0.05, 0.1):
                for seed in (0, 1):
                    jobs.append((model, defense, attack, "adaptive", budget, seed))
    jobs += [("gcn", SVD, "prbcd", "transfer", budget, seed) for budget in (0.05, 0.1) for seed in (0, 1)]
    return jobs


def build(extra=()):
    """Records (positions in plan order) and outcomes for the plan, then ``extra`` jobs (keyword dicts for ``job``)."""
    records, outcomes = [], {}
    made = [job(*j) for j in plan()] + [job(*e["args"], **e.get("kwargs", {})) for e in extra]
    for i, (record, found) in enumerate(made):
        records.append(Record(**{**record.__dict__, "position": i}))
        if found is not None:
            outcomes[record.key] = found
    return records, outcomes


@pytest.fixture(scope="module")
def stored():
    return build()


@pytest.fixture(scope="module")
def cells(stored):
    return aggregate(*stored)


def cell_of(cells, model, defense, attack, mode, budget):
    (found,) = [c for c in cells if (c["model"], c["defense"], c["attack"], c["mode"], c["budget"]) == (model, defense, attack, mode, budget)]
    return found


def worst(cells, model, defense, budget):
    return cell_of(cells, model, defense, WORST_CASE, "all", budget)


def t_interval(values):
    half = T_975_1 * statistics.stdev(values) / math.sqrt(len(values))
    mean = statistics.fmean(values)
    return max(0.0, mean - half), min(1.0, mean + half)


def test_one_cell_per_attack_mode_budget_in_plan_order_then_the_worst_cases(cells):
    per_attack = [(c["model"], c["defense"], c["attack"], c["mode"], c["budget"]) for c in cells if c["attack"] != WORST_CASE]
    assert per_attack == list(dict.fromkeys(j[:5] for j in plan()))
    worst_cases = [(c["model"], c["defense"], c["budget"]) for c in cells if c["attack"] == WORST_CASE]
    assert worst_cases == [("gcn", "none", 0.05), ("gcn", "none", 0.1), ("gcn", SVD, 0.05), ("gcn", SVD, 0.1), ("mlp", "none", 0.05), ("mlp", "none", 0.1)]
    assert len(cells) == len(per_attack) + len(worst_cases)
    cell = cell_of(cells, "gcn", "none", "prbcd", "adaptive", 0.05)
    assert cell["track"] == "gnn" and cell["dataset"] == DATASET and cell["budget_unit"] == "edges" and cell["kind"] == "structure"
    assert cell["status"] == "ok" and cell["n"] == N and cell["seeds"] == [0, 1] and len(cell["keys"]) == 2 and cell["flags"] == []
    assert cell["seconds"] == pytest.approx(1.5 + 2.5) and cell["error"] is None


def test_per_attack_cells_hold_means_and_t_intervals_over_seeds(cells):
    cell = cell_of(cells, "gcn", "none", "prbcd", "adaptive", 0.05)
    metrics = cell["metrics"]
    clean, robust = [47 / N, 46 / N], [39 / N, 38 / N]
    assert metrics["clean_accuracy"] == pytest.approx(0.93) and metrics["robust_accuracy"] == pytest.approx(0.77)
    assert (metrics["clean_accuracy_low"], metrics["clean_accuracy_high"]) == pytest.approx(t_interval(clean))
    assert metrics["clean_accuracy_high"] == 1.0  # the t-interval reaches past 1: clipped
    assert (metrics["robust_accuracy_low"], metrics["robust_accuracy_high"]) == pytest.approx(t_interval(robust))
    assert metrics["relative_drop"] == pytest.approx(statistics.fmean([1 - 39 / 47, 1 - 38 / 46]))
    assert metrics["seeds"] == 2 and metrics["budget_unit"] == "edges" and metrics["kind"] == "structure" and metrics["graph_free"] is False
    assert metrics["std"]["robust_accuracy"] == pytest.approx(statistics.stdev(robust))
    assert metrics["timing"] == {"attack_seconds": pytest.approx(0.75), "train_seconds": 2.0}
    assert metrics["perturbation"] == {"changed": 19, "allowed": 20, "n_targets": N}
    assert cell["clean_accuracy"] == metrics["clean_accuracy"] and cell["robust_interval"] == [metrics["robust_accuracy_low"], metrics["robust_accuracy_high"]]
    assert cell_of(cells, "gcn", SVD, "prbcd", "transfer", 0.05)["metrics"]["surrogate"] == "gcn"


def test_only_reproducible_numbers_are_gated(cells):
    gated = set(cell_metrics(cell_of(cells, "gcn", "none", "prbcd", "adaptive", 0.05)))
    assert {"clean_accuracy", "robust_accuracy", "relative_drop", "robust_accuracy_low", "robust_accuracy_high", "seeds"} <= gated
    assert not gated & {"attack_seconds", "train_seconds", "changed", "allowed", "seconds", "graph_free"}
    assert set(cell_metrics(worst(cells, "gcn", "none", 0.1))) >= {"clean_accuracy", "robust_accuracy", "relative_drop"}


def test_the_worst_case_counts_a_node_broken_if_any_attack_broke_it(cells):
    for budget, broken in ((0.05, 10), (0.1, 18)):
        cell = worst(cells, "gcn", "none", budget)
        robust = [(47 - broken) / N, (46 - broken) / N]
        metrics = cell["metrics"]
        assert metrics["robust_accuracy"] == pytest.approx(statistics.fmean(robust))
        assert (metrics["robust_accuracy_low"], metrics["robust_accuracy_high"]) == pytest.approx(t_interval(robust))
        assert metrics["clean_accuracy"] == pytest.approx(0.93) and metrics["worst_case"]["per_seed"] == pytest.approx(robust)
        for attack in ("prbcd", "dice"):  # below every single attack: the attacks broke different nodes
            assert metrics["robust_accuracy"] < cell_of(cells, "gcn", "none", attack, "adaptive", budget)["robust_accuracy"] - 0.01
        assert cell["mode"] == "all" and cell["n"] == N and cell["seeds"] == [0, 1] and len(cell["keys"]) == 4 and cell["status"] == "ok"
    assert worst(cells, "gcn", "none", 0.05)["metrics"]["worst_case"]["strongest_attack"] == "prbcd"
    # the defended model's worst case takes its adaptive and its transferred prbcd and dice together
    svd = worst(cells, "gcn", SVD, 0.05)["metrics"]
    assert svd["robust_accuracy"] == pytest.approx(statistics.fmean([41 / N, 40 / N]))
    assert svd["worst_case"]["attacks"] == ["prbcd (adaptive)", "dice (adaptive)", "prbcd (transfer)"]
    assert worst(cells, "mlp", "none", 0.1)["robust_accuracy"] == pytest.approx(0.71)


def test_gradient_masking_is_flagged_exactly_when_adaptive_is_more_than_5_points_below_transfer(stored, cells):
    for mode in ("adaptive", "transfer"):
        assert "gradient-masking" in cell_of(cells, "gcn", SVD, "prbcd", mode, 0.05)["flags"]  # 6 points
        assert "gradient-masking" not in cell_of(cells, "gcn", SVD, "prbcd", mode, 0.1)["flags"]  # 4 points
    assert not [c for c in cells if "gradient-masking" in c["flags"] and c["defense"] != SVD]
    assert "gradient-masking" not in worst(cells, "gcn", SVD, 0.05)["flags"]  # the worst case holds the adaptive attack: honest
    ((adaptive, transferred),) = masked_pairs(cells)
    assert (adaptive["mode"], transferred["mode"], adaptive["budget"]) == ("adaptive", "transfer", 0.05)
    records, _ = stored
    assert gradient_masking(records) == {f"gcn-{SVD}-prbcd-transfer-0.05-{s}": ["gradient-masking"] for s in (0, 1)}


def test_a_gap_of_exactly_5_points_is_not_masking(cells):
    adaptive = {**cell_of(cells, "gcn", SVD, "prbcd", "adaptive", 0.05), "robust_accuracy": 0.75}
    transferred = {**cell_of(cells, "gcn", SVD, "prbcd", "transfer", 0.05), "robust_accuracy": 0.80}
    assert masked_pairs([adaptive, transferred]) == []  # 5 points, with float noise: 0.050000000000000044
    adaptive["robust_accuracy"] = 0.7499
    assert len(masked_pairs([adaptive, transferred])) == 1


def test_below_mlp_flags_exactly_the_graph_network_cells_under_the_mlps_clean_accuracy(cells):
    below = {(c["model"], c["defense"], c["attack"], c["mode"], c["budget"]) for c in cells if "below-mlp" in c["flags"]}
    assert below == {("gcn", "none", "prbcd", "adaptive", 0.1), ("gcn", "none", WORST_CASE, "all", 0.1)}  # 65 % and 57 % < 71 %
    flagged = worst(cells, "gcn", "none", 0.1)
    assert flagged["mlp_accuracy"] == pytest.approx(0.71) and flagged["mlp_model"] == "mlp"
    assert worst(cells, "gcn", "none", 0.05)["mlp_accuracy"] == pytest.approx(0.71)  # 73 %: above, not flagged
    assert worst(cells, "mlp", "none", 0.1)["mlp_accuracy"] is None  # the reference itself


def test_failed_and_invalid_seeds_are_left_out_and_mark_the_cells(stored, cells):
    extra = [
        {"args": ("gcn", "none", "prbcd", "adaptive", 0.05, 2), "kwargs": {"status": "invalid", "flags": ["threat-model-violated"]}},
        {"args": ("gcn", "none", "dice", "adaptive", 0.05, 2), "kwargs": {"status": "failed"}},
        {"args": ("gcn", "none", "prbcd", "adaptive", 0.1, 2), "kwargs": {}},  # ok, but its dice failed in seed 2
        {"args": ("gcn", "none", "dice", "adaptive", 0.1, 2), "kwargs": {"status": "failed"}},
    ]
    WRONG[("gcn", "none")][2] = 3
    try:
        found = aggregate(*build(extra))
    finally:
        del WRONG[("gcn", "none")][2]
    prbcd = cell_of(found, "gcn", "none", "prbcd", "adaptive", 0.05)
    assert prbcd["metrics"] == cell_of(cells, "gcn", "none", "prbcd", "adaptive", 0.05)["metrics"]  # over seeds 0 and 1, as without seed 2
    assert prbcd["flags"] == ["seeds-incomplete", "threat-model-violated"] and prbcd["error"] == "3 directed edges" and len(prbcd["keys"]) == 3
    dice = cell_of(found, "gcn", "none", "dice", "adaptive", 0.05)
    assert dice["flags"] == ["seeds-incomplete"] and dice["seeds"] == [0, 1] and dice["error"] == "CUDA out of memory"
    low = worst(found, "gcn", "none", 0.05)  # seed 2 has no ok job: left out
    assert low["metrics"] == worst(cells, "gcn", "none", 0.05)["metrics"] and low["seeds"] == [0, 1]
    assert low["flags"] == ["seeds-incomplete", "threat-model-violated"] and low["error"] is None
    high = worst(found, "gcn", "none", 0.1)  # seed 2 stands on prbcd alone: an upper bound
    assert high["seeds"] == [0, 1, 2] and "worst-case-incomplete" in high["flags"] and high["metrics"]["seeds"] == 3
    assert high["metrics"]["worst_case"]["per_seed"][2] == pytest.approx((47 - 14) / N)
    only_failed = aggregate(*build([{"args": ("gcn", "none", "grbcd", "adaptive", 0.05, 0), "kwargs": {"status": "failed"}}]))
    lonely = cell_of(only_failed, "gcn", "none", "grbcd", "adaptive", 0.05)
    assert lonely["status"] == "failed" and lonely["metrics"] == {} and lonely["budget_unit"] is None and lonely["robust_accuracy"] is None
    assert "## Failed jobs" in gnn_markdown(only_failed) and "grbcd (adaptive) at budget 0.05 on csbm: CUDA out of memory" in gnn_markdown(only_failed)
    assert EXPLANATIONS["seeds-incomplete"] and EXPLANATIONS["threat-model-violated"] and EXPLANATIONS["transfer-only"]


def test_main_table_has_a_row_per_model_and_defense_with_the_worst_case_per_budget(cells):
    main, detail = tables(cells)
    assert main.title == "csbm, edge flips: worst case over attacks" and detail.title == "csbm, edge flips: every attack"
    assert main.headers == ("model", "defense", "clean %", "worst case % @ 5 %", "worst case % @ 10 %", "relative drop % @ 10 %", "flags")
    assert all(len(row) == len(main.headers) for row in main.rows) and all(len(v) == len(main.headers) for v in main.values)
    assert [row[:2] for row in main.rows] == [("gcn", "none"), ("gcn", SVD), ("mlp", "none")]
    gcn = dict(zip(main.headers, main.rows[0], strict=True))
    assert gcn["clean %"] == f"93.0 ± {100 * T_975_1 * statistics.stdev([0.94, 0.92]) / math.sqrt(2):.1f}"  # the unclipped side
    half = 100 * T_975_1 * statistics.stdev([29 / N, 28 / N]) / math.sqrt(2)
    assert gcn["worst case % @ 10 %"] == f"57.0 ± {half:.1f} ↓MLP" and gcn["worst case % @ 5 %"] == "73.0 ± 12.7"
    assert gcn["relative drop % @ 10 %"] == f"{100 * statistics.fmean([1 - 29 / 47, 1 - 28 / 46]):.1f}" and gcn["flags"] == "below-mlp"
    assert main.values[0][2] == pytest.approx(0.93) and main.values[0][4] == pytest.approx(0.57)
    assert "↓MLP: below the graph-free mlp on csbm under the same attacks and budget (edge flips cannot move it: its clean accuracy, 71.0 %)" in main.note
    assert "t-interval over seeds" in main.note and "survived every attack" in main.note
    assert all(len(row) == len(detail.headers) for row in detail.rows) and len(detail.rows) == 14 + 6
    first = dict(zip(detail.headers, detail.rows[0], strict=True))
    assert (first["model"], first["defense"], first["budget"], first["attack"], first["mode"]) == ("gcn", "none", "5 %", "prbcd", "adaptive")
    assert first["robust %"].startswith("77.0 ± ") and first["changed / allowed"] == "19.0 / 20" and first["seeds"] == "2/2"
    assert [row[3] for row in detail.rows[:3]] == ["prbcd", "dice", WORST_CASE]
    transfer = next(dict(zip(detail.headers, row, strict=True)) for row in detail.rows if row[4] == "transfer")
    assert transfer["surrogate"] == "gcn" and transfer["flags"] == "gradient-masking"


def test_summary_lines_quote_the_worst_case_the_mlp_and_the_masking(cells):
    assert summary_lines(cells) == [
        "gcn on csbm: 93.0 % clean, 57.0 % under the worst attack at 10 % of edges (prbcd), below the graph-free mlp (71.0 %)",
        "gcn with svd(rank=10) on csbm: 89.0 % clean, 77.0 % under the worst attack at 10 % of edges (prbcd)",
        "gcn with svd(rank=10) on csbm: adaptive prbcd leaves 83.0 %, transferred 89.0 % at 5 % of edges: its transfer robustness is gradient masking",
    ]


def test_markdown_page_holds_the_summary_the_tables_and_the_flag_legend(cells):
    page = gnn_markdown(cells)
    assert page.startswith("# Leaderboard: gnn track\n")
    assert "- gcn with svd(rank=10) on csbm: adaptive prbcd leaves 83.0 %, transferred 89.0 % at 5 % of edges" in page
    for table in tables(cells):
        assert table.markdown() in page
    assert "57.0 ± " in page and "↓MLP" in page and "93.0 ± " in page
    assert "## Flags" in page and "- `below-mlp`: " in page and "- `gradient-masking`: " in page and "Failed jobs" not in page
    assert gnn_markdown([]) == "# Leaderboard: gnn track\n\nNo results yet.\n"


def test_figures_build_and_save(cells, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    found = plots.figures(cells)
    assert [p.name for p in found] == ["accuracy-vs-budget-csbm-edges", "adaptive-vs-transfer-csbm-edges"]
    for plot in found:
        svg = to_svg(plot)
        assert svg.lstrip().startswith("<?xml") and "</svg>" in svg
        assert save_png(plot, tmp_path).stat().st_size > 0
    curve = to_svg(found[0])
    assert "mlp (graph-free), clean: 71.0 %" in curve and "gcn with svd(rank=10)" in curve
    assert "transferred" in to_svg(found[1])
    assert [p.name for p in plots.images(cells)] == ["accuracy-vs-budget-csbm-edges"]
    assert plots.figures([]) == []
    no_transfer = [c for c in cells if c["mode"] != "transfer"]
    assert [p.name for p in plots.figures(no_transfer)] == ["accuracy-vs-budget-csbm-edges"]


def test_csv_and_json_exports_hold_every_cell(cells):
    rows = list(csv.reader(io.StringIO(to_csv(cells))))
    header, body = rows[0], rows[1:]
    assert len(body) == len(cells) and all(len(row) == len(header) for row in body)
    assert {
        "model",
        "defense",
        "attack",
        "mode",
        "budget",
        "budget_unit",
        "mlp_accuracy",
        "metrics.robust_accuracy_low",
        "metrics.timing.attack_seconds",
    } <= set(header)
    assert not [c for c in header if "flips" in c]
    document = json.loads(to_json(cells), parse_constant=lambda constant: pytest.fail(f"not standard JSON: {constant}"))
    exported = document["cells"]
    assert len(exported) == len(cells)
    assert exported[0]["robust_interval"] == pytest.approx([cells[0]["metrics"]["robust_accuracy_low"], cells[0]["metrics"]["robust_accuracy_high"]], abs=1e-4)
