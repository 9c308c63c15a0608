"""`bench report --format json|csv` and leaderboard.json of a real run: standard JSON with provenance, CSV of plain values."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sqlite3

from bench.cli import main

PROVENANCE = ("track", "frontier_bench_version", "rendered_by", "seed", "dataset", "spec_sha256", "versions", "device", "started_at", "finished_at", "jobs")


def refuse(constant: str):
    raise ValueError(f"not standard JSON: {constant}")


def stored_meta(run_dir, key: str):
    with sqlite3.connect(run_dir / "results.db") as db:
        return json.loads(db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])


def test_report_json_is_standard_json_carrying_the_runs_provenance(finished_run, capsys):
    capsys.readouterr()
    assert main(["report", str(finished_run), "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out, parse_constant=refuse)
    written = json.loads((finished_run / "leaderboard.json").read_text(), parse_constant=refuse)
    for document in (printed, written):
        assert document["format"] == "frontier-bench-leaderboard" and document["version"] == 1
        provenance = document["provenance"]
        assert set(PROVENANCE) <= set(provenance)
        assert provenance["spec_sha256"] == hashlib.sha256(stored_meta(finished_run, "spec").encode()).hexdigest()
        assert provenance["versions"] == stored_meta(finished_run, "versions")
        assert provenance["frontier_bench_version"] == provenance["versions"]["frontier-bench"]
        assert provenance["seed"] is not None and provenance["device"] and provenance["started_at"] and provenance["finished_at"]
        cells = document["cells"]
        assert len(cells) == 16 and all(len(repr(c["robust_accuracy"])) <= len("0.1234") for c in cells if c["robust_accuracy"] is not None)
    assert printed["cells"] == written["cells"]


def test_report_csv_has_one_plain_value_per_cell(finished_run, capsys):
    capsys.readouterr()
    assert main(["report", str(finished_run), "--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    header, body = rows[0], rows[1:]
    assert len(body) == 16 and all(len(row) == len(header) for row in body)
    assert not [value for row in rows for value in row if value.startswith(("{", "["))]
    assert {"robust_accuracy_low", "robust_accuracy_high", "metrics.cascade"} <= set(header) and "metrics" not in header
