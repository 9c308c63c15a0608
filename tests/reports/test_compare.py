"""bench compare RUN_A RUN_B: what changed, cell by cell, and whether it is significant; cells of only one run are listed."""

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
    assert ["small-cnn", "none", "fgsm", "digits", "Linf", "0.1", "robust %", "63.3", "50.0", "-13.3", "<0.001*", "Fisher"] in table_rows(text)
    assert "invalid" in text and "outside-threat-model" in text
    assert "## Only in A (a)" in text and "pgd-l2" in text.split("## Only in A (a)")[1]
    assert "## Only in B (b)" in text and "mlp" in text.split("## Only in B (b)")[1]
    assert text.rstrip().endswith("7 cells in both runs: 2 changed, 5 unchanged; 1 only in A, 1 only in B.")


def test_a_changed_clean_accuracy_is_one_line_per_model_not_one_per_cell():
    after = [dict(c, clean_accuracy=0.9) for c in CELLS]
    text = comparison_markdown(compare_cells(CELLS, after), before="a", after="b")
    section = text.split("## Clean accuracy")[1].split("\n\n")[1]
    assert section.count("small-cnn") == 1 and "97.5" in section and "90.0" in section and "-7.5" in section
    assert "| <0.001* | Fisher |" in section  # 351 -> 324 of 360 points


def test_a_significant_change_is_marked_and_a_tiny_one_is_not():
    after = [dict(c) for c in CELLS]
    after[0]["robust_accuracy"] = 0.6333333 - 0.1  # 228 -> 192 of 360 points
    after[1]["robust_accuracy"] = 0.5861111 + 2 / 360  # 211 -> 213 points
    comparison = compare_cells(CELLS, after)
    big, tiny = comparison.changes
    assert big.significant and big.test == "Fisher" and big.p_value < 0.01
    assert not tiny.significant and tiny.test == "Fisher" and tiny.p_value > 0.5
    rows = table_rows(comparison_markdown(comparison, before="a", after="b"))
    assert rows[1][-2:] == [f"{big.p_value:.2g}*", "Fisher"] and rows[2][-2:] == [f"{tiny.p_value:.2g}", "Fisher"]
    assert "* significant at 0.05 (exact McNemar on the same points" in comparison_markdown(comparison, before="a", after="b")


def test_changes_on_the_same_points_are_tested_paired():
    key = ("adversarial", "small-cnn", "none", "fgsm", "digits", "linf", 0.1)
    before = {key: {"robust_accuracy": {i: i < 228 for i in range(360)}}}
    lost = {key: {"robust_accuracy": {i: i < 192 for i in range(360)}}}  # 36 points lost, none gained
    after = [dict(c) for c in CELLS]
    after[0]["robust_accuracy"] = 192 / 360
    (change,) = compare_cells(CELLS, after, vectors_before=before, vectors_after=lost).changes
    assert change.test == "McNemar" and change.p_value == 2 / 2**36 and change.significant
    swapped = {key: {"robust_accuracy": {i: i < 226 or i == 228 for i in range(360)}}}  # 2 points lost, 1 gained
    after[0]["robust_accuracy"] = 227 / 360
    (change,) = compare_cells(CELLS, after, vectors_before=before, vectors_after=swapped).changes
    assert change.test == "McNemar" and change.p_value == 1.0 and not change.significant
    other_points = {key: {"robust_accuracy": {i + 1: i < 192 for i in range(360)}}}
    after[0]["robust_accuracy"] = 192 / 360
    (change,) = compare_cells(CELLS, after, vectors_before=before, vectors_after=other_points).changes
    assert change.test == "Fisher"  # not the same points: unpaired
    stale = {key: {"robust_accuracy": {i: i < 300 for i in range(360)}}}  # outcomes that do not give the cell's number are not used
    (change,) = compare_cells(CELLS, after, vectors_before=before, vectors_after=stale).changes
    assert change.test == "Fisher"


def test_compare_command_reads_two_stores(finished_run, tmp_path, capsys):
    changed = tmp_path / "changed"
    shutil.copytree(finished_run, changed)
    with sqlite3.connect(changed / "results.db") as db:
        key, before = db.execute("SELECT key, robust_accuracy FROM adversarial_jobs WHERE model = 'mlp' AND attack = 'pgd-l2'").fetchone()
        db.execute("UPDATE jobs SET metrics = json_set(metrics, '$.robust_accuracy', 0.0) WHERE key = ?", (key,))
    capsys.readouterr()
    assert main(["compare", str(finished_run), str(changed)]) == 0
    text = capsys.readouterr().out
    row = next(r for r in table_rows(text) if r[:3] == ["mlp", "none", "pgd-l2"])
    assert row[3:10] == ["digits", "L2", "1", "robust %", f"{100 * before:.1f}", "0.0", f"{-100 * before:+.1f}"]
    assert row[11] == "Fisher"  # the stored outcomes no longer give the changed number: tested from counts
    assert "16 cells in both runs: 1 changed, 15 unchanged; 0 only in A, 0 only in B." in text
    assert main(["compare", str(finished_run), str(finished_run), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["changes"] == []
    assert main(["compare", str(finished_run), str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.strip() == f"error: run folder '{tmp_path / 'nowhere'}' does not exist"


def test_compare_command_tests_paired_on_the_stored_outcomes(finished_run, tmp_path, capsys):
    """One job loses every robust point (significant), another one point (not); the worst case follows each, tested paired too."""
    changed = tmp_path / "changed"
    shutil.copytree(finished_run, changed)
    with sqlite3.connect(changed / "results.db") as db:
        jobs = db.execute("SELECT key, model, attack, eps, n FROM adversarial_jobs WHERE status = 'ok' AND attack IN ('fgsm', 'pgd-l2')").fetchall()
        robust = {key: [e for (e,) in db.execute("SELECT example FROM adversarial_outcomes WHERE job = ? AND robust", (key,))] for key, *_ in jobs}
        big = max((j for j in jobs if j[1] == "small-cnn"), key=lambda j: len(robust[j[0]]))
        tiny = max((j for j in jobs if j[1] == "mlp"), key=lambda j: len(robust[j[0]]))
        assert len(robust[big[0]]) >= 6 and len(robust[tiny[0]]) >= 1  # enough for the test to mean something
        for (key, *_, n), lost in ((big, robust[big[0]]), (tiny, robust[tiny[0]][:1])):
            db.executemany("UPDATE outcomes SET data = json_set(data, '$.robust', json('false')) WHERE job = ? AND example = ?", [(key, e) for e in lost])
            db.execute("UPDATE jobs SET metrics = json_set(metrics, '$.robust_accuracy', ?) WHERE key = ?", ((len(robust[key]) - len(lost)) / n, key))
    capsys.readouterr()
    assert main(["compare", str(finished_run), str(changed), "--format", "json"]) == 0
    changes = {(c["row"]["model"], c["row"]["attack"], c["row"]["eps"]): c for c in json.loads(capsys.readouterr().out)["changes"]}
    found = changes[("small-cnn", big[2], big[3])]
    assert found["test"] == "McNemar" and found["significant"] and found["p"] == 2 / 2 ** len(robust[big[0]])
    found = changes[("mlp", tiny[2], tiny[3])]
    assert found["test"] == "McNemar" and not found["significant"] and found["p"] == 1.0
    assert all(c["test"] == "McNemar" for c in changes.values())  # the worst-case cells too: every store holds every outcome
    assert main(["compare", str(finished_run), str(changed)]) == 0
    text = capsys.readouterr().out
    assert f"| {2 / 2 ** len(robust[big[0]]):.2g}* " in text or "| <0.001* " in text
    assert "exact McNemar on the same points" in text
