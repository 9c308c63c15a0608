"""The uncertainty track end to end through the CLI, on a tiny spec: store, leaderboard, images, reports, resume, bad input."""

from __future__ import annotations

import json
import sqlite3

import pytest

from bench.cli import main

TINY = """
track = "uncertainty"
seeds = 2
n_examples = 60
[[models]]
name = "mlp"
hidden = 32
dropout = 0.25
[[estimators]]
name = "none"
[[estimators]]
name = "mc-dropout"
samples = 4
[[estimators]]
name = "ensemble"
size = 2
[[shifts]]
name = "rotate"
levels = [45, 90]
[[ood]]
name = "held-out-classes"
[[ood]]
name = "inverted"
[[attacks]]
name = "pgd"
eps = 0.1
steps = 3
[training]
epochs = 2
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uncertainty")
    (folder / "spec.toml").write_text(TINY)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        assert main(["run", "--config", str(folder / "spec.toml"), "--out", str(folder / "run"), "-q"]) == 0
    return folder / "run"


def test_run_writes_store_leaderboard_and_reliability_diagrams(run_dir):
    with sqlite3.connect(run_dir / "results.db") as db:
        rows = db.execute("SELECT json_extract(labels, '$.model'), json_extract(labels, '$.estimator'), status, metrics FROM jobs").fetchall()
    assert len(rows) == 3 * 2  # model x estimators x seeds
    assert {r[2] for r in rows} == {"ok"}
    stored = json.loads(rows[0][3])
    assert [entry["level"] for entry in stored["shift"]["rotate"]] == [45.0, 90.0]  # per-shift-level metrics are data in the store
    assert set(stored["ood"]) == {"held-out-classes", "inverted"}
    board = (run_dir / "leaderboard.md").read_text()
    table = board.split("## ")[1]
    assert [line.split("|")[2].strip() for line in table.splitlines() if line.startswith("| mlp")] == ["none", "mc-dropout(samples=4)", "ensemble(size=2)"]
    for header in ("accuracy %", "NLL", "Brier", "ECE %", "OOD AUROC held-out-classes", "OOD AUROC inverted", "adv AUROC pgd-linf-0.1 (epistemic)"):
        assert header in table
    assert "under shift 'rotate'" in board
    pngs = sorted(p.name for p in run_dir.glob("reliability-*.png"))
    assert len(pngs) == 3 and all((run_dir / p).read_bytes().startswith(b"\x89PNG") for p in pngs)


def test_json_report_fields(run_dir, capsys):
    capsys.readouterr()
    assert main(["report", str(run_dir), "--format", "json"]) == 0
    cells = json.loads(capsys.readouterr().out)["cells"]
    assert [c["estimator"] for c in cells] == ["none", "mc-dropout(samples=4)", "ensemble(size=2)"]
    for cell in cells:
        assert cell["track"] == "uncertainty" and cell["seeds"] == [0, 1] and cell["status"] == "ok"
        metrics = cell["metrics"]
        for name in ("accuracy", "nll", "brier", "ece", "aurc", "ood_auroc_inverted", "ood_aupr_held-out-classes", "adv_auroc_pgd-linf-0.1"):
            assert isinstance(metrics[name], float) and name in metrics["std"]
        assert 0 <= metrics["ece"] <= 1 and 0 <= metrics["ood_auroc_inverted"] <= 1
        assert sum(metrics["reliability"]["count"]) == 2 * 60
    assert "adv_auroc_epistemic_pgd-linf-0.1" not in cells[0]["metrics"]  # none: no epistemic part, no number made up
    assert "adv_auroc_epistemic_pgd-linf-0.1" in cells[2]["metrics"]


@pytest.mark.parametrize("fmt", ["csv", "md", "html", "latex"])
def test_every_report_format_renders(run_dir, fmt, capsys):
    assert main(["report", str(run_dir), "--format", fmt]) == 0
    out = capsys.readouterr().out
    assert "ensemble(size=2)" in out
    if fmt == "html":
        assert "plot-shift-digits-rotate" in out and "plot-reliability-" in out


def test_rerun_skips_finished_jobs(run_dir, capsys):
    spec = run_dir.parent / "spec.toml"
    assert main(["run", "--config", str(spec), "--out", str(run_dir), "-q"]) == 0
    assert "6 jobs: 0 ran, 6 already done" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('[[estimators]]\nname = "mc-dropotu"\n', "spec.estimators[3]: unknown estimator 'mc-dropotu'; did you mean 'mc-dropout'?"),
        ('[[estimators]]\nname = "mc-dropout"\nsamples = 0\n', "spec.estimators[3].samples: must be >= 1, got 0"),
        ('[[shifts]]\nname = "blur"\nlevels = [1]\n', "spec.shifts[1]: unknown shift 'blur'"),
        ('[[shifts]]\nname = "rotate"\nlevels = [400]\n', "spec.shifts[1].levels: must be in (0, 360] degrees, got 400"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, extra, message):
    (tmp_path / "spec.toml").write_text(TINY.replace("[training]", extra + "[training]"))
    assert main(["run", "--config", str(tmp_path / "spec.toml"), "--out", str(tmp_path / "run"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_mc_dropout_without_dropout_is_an_error_before_any_training(tmp_path, capsys):
    (tmp_path / "spec.toml").write_text(TINY.replace("dropout = 0.25\n", ""))
    assert main(["run", "--config", str(tmp_path / "spec.toml"), "--out", str(tmp_path / "run"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "spec.estimators[1]: mc-dropout: model 'mlp(hidden=32)' has no dropout layers" in err


def test_adversarial_track_rejects_uncertainty_sections(tmp_path, capsys):
    (tmp_path / "spec.toml").write_text('seeds = 3\n[[models]]\nname = "mlp"\n[[attacks]]\nname = "fgsm"\neps = 0.1\n')
    assert main(["run", "--config", str(tmp_path / "spec.toml"), "--out", str(tmp_path / "run"), "-q"]) == 2
    assert "spec.seeds: the adversarial track does not use it (tracks that do: gnn, nas, random-labels, uncertainty)" in capsys.readouterr().err


def test_list_estimators(capsys):
    assert main(["list", "estimators"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("none", "mc-dropout", "ensemble", "temperature"))
