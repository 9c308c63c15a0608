"""Rendering from cells: a golden markdown file, escaped labels, standard JSON, flat CSV, intervals, ranks and verdicts, columns in run order."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from bench.stats import wilson
from bench.tracks.adversarial.flags import FLAGS
from reports.csv_export import to_csv
from reports.html import leaderboard_html
from reports.json_export import to_json
from reports.latex import leaderboard_latex
from reports.leaderboard import robustness_markdown, sections
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


def test_json_keeps_numbers_as_numbers_rounded_and_csv_has_a_row_per_cell():
    data = json.loads(to_json(CELLS))["cells"]
    assert data[0]["eps"] == 0.1 and data[0]["robust_accuracy"] == 0.6333 and data[4]["robust_accuracy"] is None
    assert data[4]["flags"] == ["outside-threat-model"]
    lines = to_csv(CELLS).splitlines()
    assert len(lines) == 1 + len(CELLS)
    assert lines[5].split(",")[10] == "outside-threat-model"


def test_every_accuracy_with_an_n_carries_its_wilson_interval():
    low, high = wilson(211, 360)  # pgd at eps 0.1: 58.6 % of 360 points
    data = json.loads(to_json(CELLS))["cells"]
    assert data[1]["robust_interval"] == [round(low, 4), round(high, 4)] and data[1]["clean_interval"] == [round(v, 4) for v in wilson(351, 360)]
    assert data[4]["robust_interval"] is None  # invalid: no number, no interval
    rows = list(csv.DictReader(io.StringIO(to_csv(CELLS))))
    assert (rows[1]["robust_accuracy_low"], rows[1]["robust_accuracy_high"]) == (str(round(low, 4)), str(round(high, 4)))
    assert rows[4]["robust_accuracy_low"] == rows[4]["robust_accuracy_high"] == ""
    text = robustness_markdown(CELLS, worst_case="worst-case", explanations=FLAGS)
    assert "| 58.6 [53–64] |" in text and "| 97.5 [95–99] |" in text  # rounded outward: 53.46 -> 53, 63.58 -> 64
    assert "95 % Wilson interval" in text
    latex = leaderboard_latex(CELLS, worst_case="worst-case", explanations=FLAGS)
    assert " \\fbaccuracy{58.6}{[53--64]} " in latex and "95 \\% Wilson interval" in latex
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
    assert [h.strip() for h in header.rstrip("\\ ").split("&")][4:10] == list(expected)  # short headers: the caption says they are %
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


HOSTILE = "my|model<script>alert(1)</script>"  # a user-chosen label with a cell separator and raw HTML


def wide_cells():
    """The widest table a run makes: six attacks in a cascade, rank and verdict, long flags, a hostile model name, an eps of 8/255."""
    attacks = ("fgsm", "pgd", "apgd-ce", "apgd-dlr", "bpda", "square")
    flags = ["single-step-beats-iterative", "black-box-beats-white-box", "wrong-shape-dtype-or-device", "not-converged"]
    cells = []
    for rank, (model, defense) in enumerate([(HOSTILE, "jpeg"), ("small-cnn", "randomized-smoothing"), ("a-rather-long-model-name-v2", "none")], 1):
        row = [cell(model, a, "linf", 8 / 255, 0.5 - 0.05 * i, defense=defense, flags=flags if i == 5 else ()) for i, a in enumerate(attacks)]
        worst = cell(model, "worst-case", "linf", 8 / 255, 0.2, defense=defense, flags=["worst-case-incomplete"])
        worst.update(rank=rank, rank_of=3, tied_with=[], verdict="masked (worst case set by bpda, not pgd)", verdict_details=["gradient-masking"])
        cells += [*row, worst]
    for c in cells:
        c["metrics"] = {"cascade": True}
    return cells


def columns_per_row(markdown: str) -> list[int]:
    """The number of cells in each line of each markdown table (a '|' escaped as '\\|' does not separate cells)."""
    import re

    return [len(re.split(r"(?<!\\)\|", line.strip())) - 2 for line in markdown.splitlines() if line.startswith("|")]


def test_a_label_with_a_pipe_or_html_keeps_every_markdown_row_in_its_columns():
    cells = wide_cells()
    cells[0]["error"], cells[0]["status"], cells[0]["robust_accuracy"] = "bad <b>input</b> | here", "failed", None
    text = robustness_markdown(cells, worst_case="worst-case", explanations=FLAGS)
    counts = columns_per_row(text)
    assert counts and set(counts) == {len(sections(cells, worst_case="worst-case")[0].attacks) + 8}  # model ... worst case, rank, verdict, flags
    assert "<script>" not in text and "<b>" not in text
    assert "| my\\|model&lt;script&gt;alert(1)&lt;/script&gt; |" in text
    assert "bad &lt;b&gt;input&lt;/b&gt; | here" in text  # outside a table a '|' needs no escape


def test_a_label_with_html_never_reaches_the_page_unescaped():
    page = leaderboard_html(wide_cells(), worst_case="worst-case", explanations=FLAGS)
    assert "<script>alert(1)" not in page and "my|model&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_latex_escapes_every_special_character():
    from reports.latex import escape

    assert escape("a&b%c$d#e_f{g}h~i^j\\k|l<m>") == (
        "a\\&b\\%c\\$d\\#e\\_f\\{g\\}h\\textasciitilde{}i\\textasciicircum{}j\\textbackslash{}k\\textbar{}l\\textless{}m\\textgreater{}"
    )
    text = leaderboard_latex(wide_cells(), worst_case="worst-case", explanations=FLAGS)
    assert "my\\textbar{}model\\textless{}script\\textgreater{}alert(1)\\textless{}/script\\textgreater{}" in text
    assert HOSTILE not in text


def test_json_is_standard_json_with_provenance():
    def refuse(constant):
        raise ValueError(f"not standard JSON: {constant}")

    cells = [dict(CELLS[0], seconds=float("nan"), metrics={"nll": float("inf"), "auroc": 0.912345678, "ok": True}), *CELLS[1:]]
    cells[1]["eps"] = 8 / 255
    provenance = {"frontier_bench_version": "0.1.0", "seed": 0, "spec_sha256": "ab" * 32, "versions": {"torch": "2.5"}, "device": "cpu"}
    document = json.loads(to_json(cells, provenance=provenance), parse_constant=refuse)
    assert document["format"] == "frontier-bench-leaderboard" and document["version"] == 1 and document["provenance"] == provenance
    first = document["cells"][0]
    assert first["seconds"] is None and first["metrics"] == {"nll": None, "auroc": 0.912346, "ok": True}
    assert document["cells"][1]["eps"] == 0.0313725 and document["cells"][1]["robust_accuracy"] == 0.5861


def test_every_csv_cell_is_a_plain_value():
    cells = [dict(c, metrics={"transform_averaged_accuracy": 0.5, "std": {"nll": 0.1}, "shift": {"blur": [{"level": 1, "accuracy": 0.4}]}}) for c in CELLS]
    cells[0].update(seeds=[0, 1], tied_with=["x / a", "x / c"])
    rows = list(csv.reader(io.StringIO(to_csv(cells))))
    header, body = rows[0], rows[1:]
    assert len(body) == len(CELLS) and all(len(row) == len(header) for row in body)
    assert not [v for row in rows for v in row if v.startswith(("{", "["))]
    flattened = {"metrics.transform_averaged_accuracy", "metrics.std.nll", "metrics.shift.blur.0.accuracy", "robust_accuracy_low", "clean_accuracy_high"}
    assert flattened <= set(header)
    first = dict(zip(header, body[0], strict=True))
    assert first["seeds"] == "0;1" and first["tied_with"] == "x / a;x / c" and first["metrics.transform_averaged_accuracy"] == "0.5"
    assert "metrics" not in header and "robust_interval" not in header


def test_the_leaderboard_states_how_training_time_defenses_were_trained():
    from bench.tracks.adversarial.rows import WORST_CASE
    from reports.leaderboard import robustness_markdown

    recipe = "eps 0.1, norm linf, steps 7; 20 epochs, lr 0.001 (adam), batch 64"
    base = {"track": "adversarial", "model": "small-cnn", "dataset": "digits", "norm": "linf", "eps": 0.1, "n": 100, "status": "ok", "flags": []}
    cells = [
        {**base, "defense": "pgd-at", "attack": "pgd", "clean_accuracy": 0.9, "robust_accuracy": 0.5, "training": recipe},
        {**base, "defense": "jpeg", "attack": "pgd", "clean_accuracy": 0.9, "robust_accuracy": 0.1, "training": None},
    ]
    text = robustness_markdown(cells, worst_case=WORST_CASE, explanations={})
    assert f"Training-time defenses were trained here with: **pgd-at**: {recipe}." in text
    assert "**jpeg**" not in text
