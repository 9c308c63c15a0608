"""bench compare RUN_A RUN_B: what changed, cell by cell; cells of only one run are listed."""

from __future__ import annotations

import json
import shutil
import sqlite3

from bench.cli import main
from reports.compare import compare_cells, comparison_markdown
from tests.reports.test_leaderboard import CELLS


def table_rows(text: str) -> list[list[str]]:
    """The cells of every markdown table row, stripped."""
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines() if line.startswith("|") and not line.startswith("|--")]


def test_cells_are_matched_by_identity_and_every_difference_is_named():
    after = [dict(c) for c in CELLS]
    after[0]["robust_accuracy"] = 0.5  # fgsm eps 0.1: 63.3 -> 50.0
    after[4].update(status="ok", robust_accuracy=0.1, flags=[])  # pgd eps 0.2: invalid -> ok
    del after[6]  # pgd-l2 gone
    after.append(dict(CELLS[0], model="mlp"))
    comparison = compare_cells(CELLS, after)
    assert comparison.compared == 7 and comparison.changed == 2
    fields = [(c.row[3], c.row[6], c.field) for c in comparison.changes]
    assert fields == [("fgsm", 0.1, "robust_accuracy"), ("pgd", 0.2, "robust_accuracy"), ("pgd", 0.2, "status"), ("pgd", 0.2, "flags")]
    assert abs(comparison.changes[0].delta - (0.5 - 0.6333333)) < 1e-9
    text = comparison_markdown(comparison, before="a", after="b")
    assert ["small-cnn", "none", "fgsm", "digits", "Linf", "0.1", "robust %", "63.3", "50.0", "-13.3"] in table_rows(text)
    assert "invalid" in text and "outside-threat-model" in text
    assert "## Only in A (a)" in text and "pgd-l2" in text.split("## Only in A (a)")[1]
    assert "## Only in B (b)" in text and "mlp" in text.split("## Only in B (b)")[1]
    assert text.rstrip().endswith("7 cells in both runs: 2 changed, 5 unchanged; 1 only in A, 1 only in B.")


def test_a_changed_clean_accuracy_is_one_line_per_model_not_one_per_cell():
    after = [dict(c, clean_accuracy=0.9) for c in CELLS]
    text = comparison_markdown(compare_cells(CELLS, after), before="a", after="b")
    section = text.split("## Clean accuracy")[1].split("\n\n")[1]
    assert section.count("small-cnn") == 1 and "97.5" in section and "90.0" in section and "-7.5" in section


def test_compare_command_reads_two_stores(finished_run, tmp_path, capsys):
    changed = tmp_path / "changed"
    shutil.copytree(finished_run, changed)
    with sqlite3.connect(changed / "results.db") as db:
        key, before = db.execute("SELECT key, robust_accuracy FROM adversarial_jobs WHERE model = 'mlp' AND attack = 'pgd-l2'").fetchone()
        db.execute("UPDATE jobs SET metrics = json_set(metrics, '$.robust_accuracy', 0.0) WHERE key = ?", (key,))
    capsys.readouterr()
    assert main(["compare", str(finished_run), str(changed)]) == 0
    text = capsys.readouterr().out
    assert ["mlp", "none", "pgd-l2", "digits", "L2", "1", "robust %", f"{100 * before:.1f}", "0.0", f"{-100 * before:+.1f}"] in table_rows(text)
    assert "16 cells in both runs: 1 changed, 15 unchanged; 0 only in A, 0 only in B." in text
    assert main(["compare", str(finished_run), str(finished_run), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["changes"] == []
    assert main(["compare", str(finished_run), str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.strip() == f"error: run folder '{tmp_path / 'nowhere'}' does not exist"
