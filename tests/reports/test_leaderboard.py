"""Rendering from cells: a golden markdown file, JSON that keeps numbers as numbers, CSV, intervals, ranks and verdicts, columns in run order."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from bench.stats import wilson
from bench.tracks.adversarial.flags import FLAGS
from reports.html import leaderboard_html
from reports.latex import leaderboard_latex
from reports.leaderboard import robustness_markdown, sections, to_csv, to_json
from reports.ordering import cascade_order, tie_letters

GOLDEN = Path(__file__).parent / "golden" / "leaderboard.md"


def cell(model, attack, norm, eps, robust, *, status="ok", flags=(), error=None, defense="none"):
    return {
        "track": "adversarial",
        "model": model,
        "defense": defense,
        "attack": attack,
        "dataset": "digits",
        "norm": norm,
        "eps": eps,
        "n": 360,
        "clean_accuracy": 0.975,
        "robust_accuracy": robust,
        "flags": list(flags),
        "seconds": 0.5,
        "status": status,
        "error": error,
    }


CELLS = [
    cell("small-cnn", "fgsm", "linf", 0.1, 0.6333333),
    cell("small-cnn", "pgd", "linf", 0.1, 0.5861111),
    cell("small-cnn", "worst-case", "linf", 0.1, 0.5833333),
    cell("small-cnn", "fgsm", "linf", 0.2, 0.0805556),
    cell("small-cnn", "pgd", "linf", 0.2, None, status="invalid", flags=["outside-threat-model"]),
    cell("small-cnn", "worst-case", "linf", 0.2, 0.0805556, flags=["worst-case-incomplete"]),
    cell("small-cnn", "pgd-l2", "l2", 1.0, None, status="failed", error="RuntimeError: out of memory"),
    cell("small-cnn", "worst-case", "l2", 1.0, None, status="failed", flags=["worst-case-incomplete"]),
]


def test_markdown_matches_the_golden_file():
    text = robustness_markdown(CELLS, worst_case="worst-case", explanations=FLAGS)
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_invalid_and_failed_cells_never_show_a_number():
    text = robustness_markdown(CELLS, worst_case="worst-case", explanations=FLAGS)
    row = next(line for line in text.splitlines() if line.startswith("| small-cnn") and "| 0.2 " in line)
    assert "invalid" in row and "outside-threat-model" in row
    assert "- `outside-threat-model`: an adversarial example left the eps-ball" in text
    assert "RuntimeError: out of memory" in text


def test_json_keeps_numbers_as_numbers_and_csv_has_a_row_per_cell():
    data = json.loads(to_json(CELLS))
    assert data[0]["eps"] == 0.1 and data[0]["robust_accuracy"] == 0.6333333 and data[4]["robust_accuracy"] is None
    assert data[4]["flags"] == ["outside-threat-model"]
    lines = to_csv(CELLS).splitlines()
    assert len(lines) == 1 + len(CELLS)
    assert lines[5].split(",")[10] == "outside-threat-model"


def test_every_accuracy_with_an_n_carries_its_wilson_interval():
    low, high = wilson(211, 360)  # pgd at eps 0.1: 58.6 % of 360 points
    data = json.loads(to_json(CELLS))
    assert data[1]["robust_interval"] == [low, high] and data[1]["clean_interval"] == list(wilson(351, 360))
    assert data[4]["robust_interval"] is None  # invalid: no number, no interval
    rows = list(csv.DictReader(io.StringIO(to_csv(CELLS))))
    assert rows[1]["robust_interval"] == f"{low!r};{high!r}" and rows[4]["robust_interval"] == ""
    text = robustness_markdown(CELLS, worst_case="worst-case", explanations=FLAGS)
    assert "| 58.6 [53–64] |" in text and "| 97.5 [95–99] |" in text  # rounded outward: 53.46 -> 53, 63.58 -> 64
    assert "95 % Wilson interval" in text
    latex = leaderboard_latex(CELLS, worst_case="worst-case", explanations=FLAGS)
    assert " 58.6 [53--64] " in latex and "95 \\% Wilson interval" in latex
    page = leaderboard_html(CELLS, worst_case="worst-case", explanations=FLAGS)
    assert '>58.6 <span class="ci">[53–64]</span></td>' in page and "95 % interval 53.5–63.6 %" in page


def cascade_rows():
    """Defense none ran fgsm, pgd, apgd-ce, apgd-dlr, square; jpeg had bpda added before square (its cells come in that order)."""
    plain = ("fgsm", "pgd", "apgd-ce", "apgd-dlr", "square")
    adaptive = ("fgsm", "pgd", "apgd-ce", "apgd-dlr", "bpda", "square")
    cells = [cell("small-cnn", a, "linf", 0.1, 0.5) for a in plain] + [cell("small-cnn", "worst-case", "linf", 0.1, 0.5)]
    cells += [cell("small-cnn", a, "linf", 0.1, 0.4, defense="jpeg") for a in adaptive] + [cell("small-cnn", "worst-case", "linf", 0.1, 0.4, defense="jpeg")]
    for c in cells:
        c["metrics"] = {"cascade": True}
    return cells, adaptive


def test_attack_columns_come_in_the_order_every_row_ran_them():
    cells, expected = cascade_rows()
    assert sections(cells, worst_case="worst-case")[0].attacks == expected
    headers = [f"{a} %" for a in expected]
    text = robustness_markdown(cells, worst_case="worst-case", explanations=FLAGS)
    header = next(line for line in text.splitlines() if line.startswith("| model"))
    assert [h.strip() for h in header.strip("|").split("|")][4:10] == headers
    assert "Attacks run as a cascade, left to right" in text
    latex = leaderboard_latex(cells, worst_case="worst-case", explanations=FLAGS)
    header = next(line for line in latex.splitlines() if line.strip().startswith("model"))
    assert [h.strip() for h in header.rstrip("\\ ").split("&")][4:10] == [h.replace("%", "\\%") for h in headers]
    page = leaderboard_html(cells, worst_case="worst-case", explanations=FLAGS)
    positions = [page.index(f'<button type="button">{h}</button>') for h in headers]
    assert positions == sorted(positions)


def test_cascade_order_merges_each_rows_order():
    assert cascade_order([["a", "c"], ["a", "b", "c"], ["d", "b"]]) == ["a", "d", "b", "c"]
    assert cascade_order([["a", "b"], ["b", "a"]]) == ["a", "b"]  # rows disagree: first seen first
    assert cascade_order([]) == []


def ranked_cells():
    """Four rows at eps 0.1: a ~ b, b ~ c, a and c apart (ties are not transitive), d apart from all; one unranked row at eps 0.2, two tied at 0.3."""
    cells = []
    for defense, robust, rank, tied in [("a", 0.6, 1, ["x / b"]), ("b", 0.55, 2, ["x / a", "x / c"]), ("c", 0.5, 3, ["x / b"]), ("d", 0.2, 4, [])]:
        worst = cell("x", "worst-case", "linf", 0.1, robust, defense=defense)
        worst.update(rank=rank, rank_of=4, tied_with=tied, verdict="reliable", verdict_details=["every check passed"])
        cells += [cell("x", "pgd", "linf", 0.1, robust, defense=defense), worst]
    cells[-1].update(verdict="masked (worst case set by bpda)", verdict_details=["bpda broke 30 points more than pgd", "gradient-masking"])
    cells += [cell("x", "pgd", "linf", 0.2, 0.1), cell("x", "worst-case", "linf", 0.2, 0.1)]  # not ranked, no verdict: empty cells
    for defense, rank in (("a", 1), ("b", 2)):  # tied at eps 0.3: a letter of its own, not one of eps 0.1's
        worst = cell("x", "worst-case", "linf", 0.3, 0.5, defense=defense)
        worst.update(rank=rank, rank_of=2, tied_with=["x / b" if defense == "a" else "x / a"])
        cells += [cell("x", "pgd", "linf", 0.3, 0.5, defense=defense), worst]
    return cells


def test_rank_and_verdict_columns_show_ties_as_shared_letters():
    assert tie_letters({"a": ["b"], "b": ["a", "c"], "c": ["b"], "d": []}) == {"a": "a", "b": "ab", "c": "b", "d": ""}
    assert tie_letters({"a": ["b", "c"], "b": ["a", "c"], "c": ["a", "b"]}, first=2) == {"a": "c", "b": "c", "c": "c"}
    text = robustness_markdown(ranked_cells(), worst_case="worst-case", explanations=FLAGS)
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("| x ")]
    header = next(line for line in text.splitlines() if line.startswith("| model"))
    assert [h.strip() for h in header.strip("|").split("|")][-3:] == ["rank", "verdict", "flags"]
    assert [(r[1], r[2], r[-3], r[-2]) for r in rows] == [
        ("a", "0.1", "1 a", "reliable"),
        ("b", "0.1", "2 ab", "reliable"),
        ("c", "0.1", "3 b", "reliable"),
        ("d", "0.1", "4", "masked (worst case set by bpda)"),
        ("none", "0.2", "", ""),
        ("a", "0.3", "1 c", ""),
        ("b", "0.3", "2 c", ""),
    ]
    assert "rows that share a letter are not significantly different (exact McNemar on the same points, p ≥ 0.05)" in text
    plain = robustness_markdown(CELLS, worst_case="worst-case", explanations=FLAGS)
    assert "| rank" not in plain and "verdict" not in plain and "McNemar" not in plain  # other tracks and old runs: no empty columns
    latex = leaderboard_latex(ranked_cells(), worst_case="worst-case", explanations=FLAGS)
    assert " 2 ab " in latex and "masked (worst case set by bpda)" in latex and "p $\\geq$ 0.05" in latex
