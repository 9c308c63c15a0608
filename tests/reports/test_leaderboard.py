"""Rendering from cells: a golden markdown file, JSON that keeps numbers as numbers, CSV."""

from __future__ import annotations

import json
import os
from pathlib import Path

from bench.tracks.adversarial.flags import FLAGS
from reports.leaderboard import robustness_markdown, to_csv, to_json

GOLDEN = Path(__file__).parent / "golden" / "leaderboard.md"


def cell(model, attack, norm, eps, robust, *, status="ok", flags=(), error=None):
    return {
        "track": "adversarial",
        "model": model,
        "defense": "none",
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
