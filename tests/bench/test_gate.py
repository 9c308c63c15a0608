"""The CI gate: bench baseline / bench check, exit codes 0 / 1 / 2, tolerances, missing and new rows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.cli import main
from bench.gate import BaselineRow, Tolerances, compare, portable_spec, read_baseline, spec_hash
from reports.gate import check_text
from reports.leaderboard import ROW_FIELDS


@pytest.fixture
def workdir(project, tmp_path, monkeypatch):
    """A copy of the project to change, as the current folder (so the default runs/check-* folder lands here)."""
    copy = tmp_path / "project"
    shutil.copytree(project, copy)
    monkeypatch.chdir(copy)
    return copy


def check(*args: str) -> list[str]:
    return ["check", "--baseline", "baseline.json", "--config", "spec.toml", "-q", *args]


def table_rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines() if line.startswith("|") and not line.startswith("|--")]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("error: ")
    return err


# -- the gate on real runs -----------------------------------------------------------------
def test_the_baseline_holds_every_metric_of_every_cell_and_a_portable_spec(project):
    data = json.loads((project / "baseline.json").read_text())
    assert data["format"] == "frontier-bench-baseline" and data["version"] == 1 and data["track"] == "adversarial"
    assert data["spec"]["models"][0]["checkpoint"] == "model.safetensors"  # by file name: the baseline holds on another machine
    assert data["spec_hash"] == spec_hash(data["spec"])
    document = json.loads((project / "baseline-run" / "leaderboard.json").read_text())
    cells = document["cells"] if isinstance(document, dict) else document  # {format, version, provenance, cells} (a bare list before)
    assert [[r[k] for k in ROW_FIELDS] for r in data["rows"]] == [[c[k] for k in ROW_FIELDS] for c in cells]
    assert all(set(r["metrics"]) == {"clean_accuracy", "robust_accuracy"} for r in data["rows"])
    assert [r["metrics"]["robust_accuracy"] for r in data["rows"]] == pytest.approx([c["robust_accuracy"] for c in cells], abs=5e-5)  # the JSON rounds


def test_the_same_model_passes_and_a_recheck_reuses_the_finished_jobs(workdir, capsys):
    assert main(check()) == 0
    first = capsys.readouterr()
    assert first.out.startswith("bench check passed: 12 metrics of 6 rows hold")
    assert "5 jobs ran, 0 reused from runs/check-" in first.err
    assert main(check()) == 0
    assert "0 jobs ran, 5 reused from runs/check-" in capsys.readouterr().err
    assert len(list((workdir / "runs").glob("check-*"))) == 1
    assert (next((workdir / "runs").glob("check-*")) / "leaderboard.html").is_file()  # the page is a CI artifact too


def test_the_undefended_model_in_place_of_the_defended_one_fails_with_a_table(workdir, capsys):
    (workdir / "undefended.safetensors").replace(workdir / "model.safetensors")  # same spec, weaker weights
    assert main(check()) == 1
    out = capsys.readouterr().out
    assert out.startswith("bench check FAILED: ")
    rows = table_rows(out)
    assert rows[0] == ["row", "metric", "baseline", "now", "allowed"]
    worst = next(r for r in rows if r[0] == "small-cnn / none / worst-case / digits Linf eps 0.2" and r[1] == "robust_accuracy")
    baseline, now, allowed = float(worst[2]), float(worst[3]), worst[4]
    assert now < baseline - 0.02 and allowed == f">= {baseline - 0.02:.4f}"
    assert len(list((workdir / "runs").glob("check-*"))) == 1  # new weights, new folder: nothing stale reused


def warm_check(project: Path, baseline: Path, *args: str) -> list[str]:
    """A check of the project's spec in the baseline's own run folder: every job is found there, nothing runs again."""
    return ["check", "--baseline", str(baseline), "--config", str(project / "spec.toml"), "--out", str(project / "baseline-run"), "-q", *args]


def test_tolerance_edges(project, tmp_path, capsys):
    """A drop of exactly the tolerance holds; a little more fails; a metric's own tolerance wins."""
    data = json.loads((project / "baseline.json").read_text())
    row = next(r for r in data["rows"] if r["attack"] == "pgd" and r["eps"] == 0.1)
    now = row["metrics"]["robust_accuracy"]
    baseline = tmp_path / "baseline.json"

    def gate(baseline_robust: float, *args: str) -> int:
        row["metrics"]["robust_accuracy"] = baseline_robust
        baseline.write_text(json.dumps(data))
        code = main(warm_check(project, baseline, *args))
        assert "0 jobs ran, 5 reused" in capsys.readouterr().err
        return code

    assert gate(now + 0.02) == 0
    assert gate(now + 0.021) == 1
    assert gate(now + 0.05, "--tolerance", "0.05") == 0
    assert gate(now + 0.051, "--tolerance", "0.05") == 1
    assert gate(now + 0.05, "--tolerance-for", "robust_accuracy=0.05") == 0
    assert gate(now + 0.05, "--tolerance", "0.1", "--tolerance-for", "robust_accuracy=0.01") == 1
    assert gate(now + 0.01, "--tolerance", "0") == 1
    assert gate(now, "--tolerance", "0") == 0  # the same run holds at zero tolerance


def test_missing_rows_fail_and_new_rows_are_reported(project, tmp_path, capsys):
    data = json.loads((project / "baseline.json").read_text())
    removed = data["rows"].pop(0)
    data["rows"].append({**removed, "model": "gone-model"})
    (tmp_path / "baseline.json").write_text(json.dumps(data))
    assert main(warm_check(project, tmp_path / "baseline.json")) == 1
    out = capsys.readouterr().out
    assert "1 missing row" in out and "Missing rows (in the baseline, not in this run):\n- gone-model / none / fgsm / digits Linf eps 0.1" in out
    assert "New rows (in this run, not in the baseline" in out and "- small-cnn / none / fgsm / digits Linf eps 0.1" in out


# -- bad input: exit 2, one line naming the file --------------------------------------------
def edit_baseline(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def other_spec(data):
    data["spec"]["n_examples"] = 50
    data["spec_hash"] = spec_hash(data["spec"])


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda p: p.write_text('{"format": "frontier-bench-baseline", "rows": [}'), "baseline 'baseline.json' is not valid JSON: Expecting value: line 1"),
        (lambda p: p.write_text("[]"), "baseline 'baseline.json' is not a frontier-bench baseline"),
        (lambda p: p.unlink(), "baseline 'baseline.json' does not exist"),
        (lambda p: edit_baseline(p, lambda d: d.update(version=2)), "baseline 'baseline.json' has baseline format version 2; this bench reads version 1"),
        (lambda p: edit_baseline(p, lambda d: d.update(track="uncertainty")), "is of track 'uncertainty'; this check runs track 'adversarial'"),
        (lambda p: edit_baseline(p, other_spec), "baseline 'baseline.json' was made from another spec than 'spec.toml' (they differ in: n_examples)"),
        (lambda p: edit_baseline(p, lambda d: d["spec"].update(seed=3)), "baseline 'baseline.json': spec_hash does not match its spec"),
        (lambda p: edit_baseline(p, lambda d: d["rows"][2]["metrics"].update(robust_accuracy="high")), "'baseline.json': rows[2].metrics.robust_accuracy"),
    ],
    ids=["corrupt-json", "not-a-baseline", "missing", "format-version", "other-track", "other-spec", "edited-spec", "bad-number"],
)
def test_bad_baselines_exit_2_with_one_line_naming_the_file(workdir, capsys, break_it, message):
    break_it(workdir / "baseline.json")
    assert main(check()) == 2
    assert message in one_line_error(capsys)
    assert not (workdir / "runs").exists()  # refused before any compute


def test_another_spec_file_is_refused(workdir, capsys):
    spec = workdir / "spec.toml"
    spec.write_text(spec.read_text().replace("n_examples = 100", "n_examples = 50"))
    assert main(check()) == 2
    assert "was made from another spec than 'spec.toml' (they differ in: n_examples)" in one_line_error(capsys)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tolerance-for", "robustness=0.1"], "unknown metric 'robustness'; the baseline's metrics: clean_accuracy, robust_accuracy"),
        (["--tolerance-for", "robust_accuracy"], "expected METRIC=VALUE"),
        (["--tolerance-for", "robust_accuracy=lots"], "'lots' is not a number"),
        (["--tolerance", "-0.1"], "--tolerance must be a number >= 0"),
    ],
)
def test_bad_tolerances_exit_2(workdir, capsys, args, message):
    assert main(check(*args)) == 2
    assert message in one_line_error(capsys)


# -- the comparison itself ------------------------------------------------------------------
def baseline_of(*rows: BaselineRow):
    from bench.gate import Baseline

    return Baseline(Path("b.json"), "adversarial", {}, "", rows)


def key(attack="pgd", eps=0.1, model="m"):
    return ("adversarial", model, "none", attack, "digits", "linf", eps)


def cell(robust, *, attack="pgd", eps=0.1, model="m", clean=0.9, status="ok", flags=(), **metrics):
    return dict(zip(ROW_FIELDS, key(attack, eps, model), strict=True)) | {
        "status": status,
        "flags": list(flags),
        "clean_accuracy": clean,
        "robust_accuracy": robust,
        "metrics": metrics,
    }


def row(robust, *, clean=0.9, status="ok", flags=(), **extra):
    return BaselineRow(key(), status, tuple(flags), {"clean_accuracy": clean, "robust_accuracy": robust, **extra})


@pytest.mark.parametrize(
    ("before", "after", "tolerance", "holds"),
    [
        (0.50, 0.48, 0.02, True),  # exactly the tolerance (0.5 - 0.48 is 0.020000000000000018 in floats)
        (0.50, 0.4799, 0.02, False),
        (0.35, 0.33, 0.02, True),
        (0.50, 0.90, 0.02, True),  # improvements never fail
        (0.50, 0.50, 0.0, True),
        (0.50, 0.4999, 0.0, False),
        (0.1 + 0.2, 0.3 - 0.02, 0.02, True),
    ],
)
def test_accuracy_regresses_only_when_it_drops_more_than_the_tolerance(before, after, tolerance, holds):
    result = compare(baseline_of(row(before)), [cell(after)], Tolerances(tolerance))
    assert result.passed is holds
    assert result.metrics_checked == 2


def test_status_and_new_flags_regress_and_lower_is_better_metrics_regress_upwards():
    result = compare(baseline_of(row(0.5)), [cell(None, status="failed")], Tolerances())
    assert [(r.metric, r.baseline, r.now) for r in result.regressions] == [("status", "ok", "failed")]
    result = compare(baseline_of(row(0.5)), [cell(0.5, flags=["changed-model-mode"])], Tolerances())
    assert [(r.metric, r.now, r.allowed) for r in result.regressions] == [("flags", "changed-model-mode", "no new flags")]
    from bench.tracks import LOWER, Metric
    from bench.tracks.adversarial.track import AdversarialTrack

    class Declaring(AdversarialTrack):  # a track that declares ece lower-is-better: the gate reads the declaration, not the name
        metrics = {**AdversarialTrack.metrics, "ece": Metric(LOWER, "fraction")}

    result = compare(baseline_of(row(0.5, ece=0.05)), [cell(0.5, ece=0.08)], Tolerances(0.02), Declaring())
    assert [(r.metric, r.allowed) for r in result.regressions] == [("ece", "<= 0.0700")]
    assert compare(baseline_of(row(0.5, ece=0.05)), [cell(0.5, ece=0.01)], Tolerances(0.02), Declaring()).passed
    undeclared = compare(baseline_of(row(0.5, ece=0.05)), [cell(0.5, ece=0.01)], Tolerances(0.02))  # the adversarial track does not declare it
    assert [(r.metric, r.allowed) for r in undeclared.regressions] == [("ece", "0.0500 +- 0.02")]  # either way is a change


def test_new_advisory_flags_are_reported_not_gated_but_a_new_masking_flag_fails():
    result = compare(baseline_of(row(0.5)), [cell(0.5, flags=["not-converged", "silent-success"])], Tolerances())
    assert result.passed
    assert len(result.new_flags) == 1 and result.new_flags[0].endswith(": not-converged, silent-success")
    assert "not-converged, silent-success" in check_text(result)
    result = compare(baseline_of(row(0.5)), [cell(0.5, flags=["gradient-masking", "not-converged"])], Tolerances())
    assert [(r.metric, r.now) for r in result.regressions] == [("flags", "gradient-masking")]
    assert not result.passed


def test_a_clean_accuracy_drop_is_one_line_per_model():
    rows = [BaselineRow(key(eps=e), "ok", (), {"clean_accuracy": 0.9, "robust_accuracy": 0.5}) for e in (0.1, 0.2, 0.3)]
    result = compare(baseline_of(*rows), [cell(0.5, eps=e, clean=0.5) for e in (0.1, 0.2, 0.3)], Tolerances())
    assert [(r.label, r.metric) for r in result.regressions] == [("m / none / digits (every attack, norm and eps)", "clean_accuracy")]


def test_a_clean_and_a_robust_drop_on_one_row_are_each_labelled_with_their_own_row():
    """jpeg's clean accuracy fell (one line for every attack, norm and eps), and so did jpeg / fgsm at 0.1: that line names its row."""
    keys = [("adversarial", "small-cnn", d, a, "digits", "linf", e) for d in ("none", "jpeg") for a in ("fgsm", "pgd") for e in (0.1, 0.2)]
    rows = [BaselineRow(k, "ok", (), {"clean_accuracy": 0.9, "robust_accuracy": 0.6}) for k in keys]
    hit = ("adversarial", "small-cnn", "jpeg", "fgsm", "digits", "linf", 0.1)
    cells = [
        dict(zip(ROW_FIELDS, k, strict=True))
        | {"status": "ok", "flags": [], "clean_accuracy": 0.5 if k[2] == "jpeg" else 0.9, "robust_accuracy": 0.2 if k == hit else 0.6, "metrics": {}}
        for k in keys
    ]
    result = compare(baseline_of(*rows), cells, Tolerances())
    expected = [
        ("small-cnn / jpeg / digits (every attack, norm and eps)", "clean_accuracy"),
        ("small-cnn / jpeg / fgsm / digits Linf eps 0.1", "robust_accuracy"),
    ]
    assert [(r.label, r.metric) for r in result.regressions] == expected
    assert [r[:2] for r in table_rows(check_text(result))[1:]] == [list(e) for e in expected]


@pytest.mark.parametrize(
    ("scope", "label"),
    [
        (("model", "defense", "attack", "dataset", "norm"), "m / none / pgd / digits / linf (every eps)"),
        (("model", "defense", "dataset", "norm"), "m / none / digits / linf (every attack and eps)"),
        (("model", "defense", "attack", "dataset", "norm", "eps"), "m / none / pgd / digits Linf eps 0.1"),  # every dimension: the row's own label
    ],
)
def test_a_scoped_metric_names_the_dimensions_it_stands_for(scope, label):
    from bench.tracks import HIGHER, Metric
    from bench.tracks.adversarial.track import AdversarialTrack

    class Scoped(AdversarialTrack):
        metrics = {**AdversarialTrack.metrics, "clean_accuracy": Metric(HIGHER, "fraction", scope=scope)}

    result = compare(baseline_of(row(0.5)), [cell(0.5, clean=0.5)], Tolerances(), Scoped())
    assert [(r.label, r.metric) for r in result.regressions] == [(label, "clean_accuracy")]


def test_versions_that_differ_from_the_baselines_are_reported_not_gated():
    from bench.gate import Baseline, version_changes

    before = {"python": "3.11.9", "frontier-bench": "0.1.0", "torch": "2.14.1", "torchattacks": "3.5.1", "timm": "1.0.3", "ray": "2.9.0"}
    after = {"python": "3.11.9", "frontier-bench": "0.1.0", "torch": "2.15.0", "torchattacks": "3.5.1", "torchvision": "0.30.0", "ray": "2.10.0"}
    changes = ("torch 2.14.1 -> 2.15.0", "torchvision not installed -> 0.30.0", "timm 1.0.3 -> not installed")  # ray is not watched
    assert version_changes(before, after) == changes
    assert version_changes(before, before) == () and version_changes({}, after) == () and version_changes(before, None) == ()
    baseline = Baseline(Path("b.json"), "adversarial", {}, "", (row(0.5),), before)
    result = compare(baseline, [cell(0.5)], Tolerances(), versions=after)
    assert result.passed and result.version_changes == changes
    assert "Versions differ from the baseline's:\n" + "".join(f"- {c}\n" for c in changes) in check_text(result)
    assert "Versions differ" not in check_text(compare(baseline, [cell(0.5)], Tolerances(), versions=before))


def test_the_portable_spec_drops_machine_paths():
    canonical = json.dumps(
        {"track": "adversarial", "device": "cuda", "dataset_params": {"root": "/data", "download": True, "x": 1}, "models": [{"checkpoint": "/home/a/w.pt"}]}
    )
    assert portable_spec(canonical) == {"track": "adversarial", "dataset_params": {"x": 1}, "models": [{"checkpoint": "w.pt"}]}


def test_the_default_baseline_matches_the_embedded_default_spec():
    """docs/baseline-default.json (the README's example of a gate on the default spec) must be of today's default spec."""
    from bench.spec import spec_from

    docs = Path(__file__).parents[2] / "docs"
    baseline = read_baseline(docs / "baseline-default.json")
    assert baseline.spec_hash == spec_hash(portable_spec(spec_from().canonical())), (
        "the default spec changed: renew the example baseline with `bench run --out runs/default && bench baseline runs/default -o docs/baseline-default.json`"
    )
