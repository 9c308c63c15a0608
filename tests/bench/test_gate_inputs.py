"""The CI gate's edge cases: a baseline that holds nothing, malformed values, unreadable files and metrics the run does not make
are each exit 2 with one line naming the file and the place, never a pass or a traceback."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from bench.cli import main
from bench.errors import UserError
from bench.gate import Tolerances, compare, read_baseline
from tests.bench.test_gate import baseline_of, cell, check, edit_baseline, one_line_error, row, warm_check


@pytest.fixture
def workdir(project, tmp_path, monkeypatch):
    copy = tmp_path / "project"
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns("baseline-run"))
    monkeypatch.chdir(copy)
    return copy


def set_row(i: int, **values):
    return lambda d: d["rows"][i].update(values)


def drop_key(i: int, key: str):
    return lambda d: d["rows"][i].pop(key)


def set_metric(i: int, value):
    return lambda d: d["rows"][i]["metrics"].update(robust_accuracy=value)


def every_row(change):
    return lambda d: [change(r) for r in d["rows"]]


# -- refused before any compute ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(rows=[]), "baseline 'baseline.json' has no rows, so it holds nothing"),
        (every_row(lambda r: r.update(metrics={})), "baseline 'baseline.json' holds no metric values (every row's metrics are empty or null)"),
        (every_row(lambda r: r["metrics"].update(dict.fromkeys(r["metrics"]))), "baseline 'baseline.json' holds no metric values"),
        (set_row(3, eps="0.1"), "baseline 'baseline.json': rows[3].eps must be a number or null, got '0.1'"),
        (set_row(0, model=5), "baseline 'baseline.json': rows[0].model must be a string or null, got 5"),
        (set_row(1, eps=[0.1]), "baseline 'baseline.json': rows[1].eps must be a string, a number or null, got [0.1]"),
        (set_row(2, norm={"linf": True}), "baseline 'baseline.json': rows[2].norm must be a string, a number or null, got {'linf': True}"),
        (set_row(4, track="uncertainty"), "baseline 'baseline.json': rows[4].track must be 'adversarial' (the baseline's track), got 'uncertainty'"),
        (drop_key(0, "norm"), "baseline 'baseline.json': rows[0] has no 'norm'"),
        (set_metric(2, 10**400), "baseline 'baseline.json': rows[2].metrics.robust_accuracy must be a number or null"),
        (set_metric(2, True), "baseline 'baseline.json': rows[2].metrics.robust_accuracy must be a number or null, got True"),
        (lambda d: d["source"].update(versions=["torch"]), "baseline 'baseline.json': source.versions must be an object of package names to version strings"),
        (lambda d: d["rows"].append(dict(d["rows"][1])), "baseline 'baseline.json': rows[6] repeats the row small-cnn / none / fgsm / digits Linf eps 0.2"),
    ],
    ids=[
        "no-rows",
        "empty-metrics",
        "null-metrics",
        "eps-string",
        "model-number",
        "eps-list",
        "norm-object",
        "row-of-another-track",
        "missing-key-field",
        "huge-number",
        "bool-metric",
        "bad-versions",
        "duplicate-eps",
    ],
)
def test_a_malformed_baseline_exits_2_with_one_line_before_any_compute(workdir, capsys, change, message):
    edit_baseline(workdir / "baseline.json", change)
    assert main(check()) == 2
    assert message in one_line_error(capsys)
    assert not (workdir / "runs").exists()


def test_a_folder_in_place_of_the_baseline_is_one_line(workdir, capsys):
    (workdir / "baseline.json").unlink()
    (workdir / "baseline.json").mkdir()
    assert main(check()) == 2
    assert one_line_error(capsys) == "error: baseline 'baseline.json' is a folder, not a baseline file"


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux /proc")
def test_a_file_that_fails_to_read_is_one_line(workdir, capsys):
    assert main(["check", "--baseline", "/proc/self/mem", "--config", "spec.toml", "-q"]) == 2
    assert one_line_error(capsys).startswith("error: cannot read baseline '/proc/self/mem': ")


def test_a_baseline_without_read_permission_is_one_line(workdir, capsys, monkeypatch):
    path = workdir / "baseline.json"
    if os.geteuid() == 0:  # root reads a chmod 000 file: refuse the read as the OS would for anyone else
        real = Path.read_text
        monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: _denied() if self.name == "baseline.json" else real(self, *a, **k))
    else:
        path.chmod(0)
    try:
        assert main(check()) == 2
        assert one_line_error(capsys) == "error: cannot read baseline 'baseline.json': Permission denied"
    finally:
        path.chmod(0o644)


def _denied():
    raise PermissionError(13, "Permission denied")


# -- against what the run holds (the run's jobs are all found in its folder: nothing runs) -------
def test_a_metric_the_run_does_not_produce_is_named_with_the_ones_it_does(project, tmp_path, capsys):
    baseline = tmp_path / "baseline.json"
    shutil.copy(project / "baseline.json", baseline)
    edit_baseline(baseline, every_row(lambda r: r["metrics"].update(robust_acc=r["metrics"].pop("robust_accuracy"))))
    assert main(warm_check(project, baseline)) == 2
    err = one_line_error(capsys)
    assert err == f"error: baseline '{baseline}' holds metric 'robust_acc', which this run does not produce; it produces: clean_accuracy, robust_accuracy"


def test_key_fields_of_another_kind_than_the_runs_cells_are_one_line(project, tmp_path, capsys):
    """Every row's eps a string: the rows agree with each other, so only the run's cells show it."""
    baseline = tmp_path / "baseline.json"
    shutil.copy(project / "baseline.json", baseline)
    edit_baseline(baseline, every_row(lambda r: r.update(eps=str(r["eps"]))))
    assert main(warm_check(project, baseline)) == 2
    assert one_line_error(capsys) == f"error: baseline '{baseline}': rows[0].eps must be a number or null, got '0.1'"


def test_a_row_that_failed_now_is_a_regression_not_a_missing_metric():
    result = compare(baseline_of(row(0.5, ece=0.05)), [cell(None, clean=None, status="failed")], Tolerances())
    assert [(r.metric, r.now) for r in result.regressions] == [("status", "failed")]


def test_the_runs_versions_are_compared_with_the_baselines(project, tmp_path):
    """What ``bench.checking`` does with a run: the versions stored in its folder against the baseline's ``source.versions``."""
    from bench.reporting import load_run

    baseline = tmp_path / "baseline.json"
    shutil.copy(project / "baseline.json", baseline)
    edit_baseline(baseline, lambda d: d["source"]["versions"].update(torch="1.0.0"))
    run = load_run(project / "baseline-run")
    result = compare(read_baseline(baseline), run.cells, Tolerances(), run.track, versions=run.meta.get("versions"))
    assert result.passed and result.version_changes == (f"torch 1.0.0 -> {run.meta['versions']['torch']}",)


def test_read_baseline_keeps_the_source_versions(project):
    data = json.loads((project / "baseline.json").read_text())
    assert read_baseline(project / "baseline.json").versions == data["source"]["versions"]
    assert read_baseline(project / "baseline.json", rows=False).versions == data["source"]["versions"]


def test_an_unreadable_file_is_a_user_error_for_every_caller(tmp_path):
    with pytest.raises(UserError, match="is a folder"):
        read_baseline(tmp_path)


def test_a_check_reports_versions_that_differ(project, tmp_path, capsys):
    baseline = tmp_path / "baseline.json"
    shutil.copy(project / "baseline.json", baseline)
    edit_baseline(baseline, lambda d: d["source"]["versions"].update(torch="1.0.0"))
    assert main(warm_check(project, baseline)) == 0
    assert "Versions differ from the baseline's:\n- torch 1.0.0 -> " in capsys.readouterr().out
