"""The `bench` command, through its main([...]) function: runs, reports, listings, one-line errors."""

from __future__ import annotations

import json
import sqlite3

import pytest
import torch

from bench.cli import main

SPEC = """
n_examples = 60
[[models]]
name = "small-cnn"
[[attacks]]
name = "fgsm"
eps = [0.1, 0.2]
[[attacks]]
name = "pgd"
eps = [0.1, 0.2]
steps = 5
[training]
epochs = 3
"""

JSON_KEYS = {"track", "model", "defense", "attack", "dataset", "norm", "eps", "n", "clean_accuracy", "robust_accuracy", "flags", "seconds"}


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text(SPEC)
    return path


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ")
    return err


def report_json(run_dir, capsys) -> list[dict]:
    capsys.readouterr()
    assert main(["report", str(run_dir), "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)["cells"]


def test_run_writes_store_and_leaderboard_and_reports_json(spec_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--config", str(spec_file), "--out", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert (out / "results.db").is_file() and (out / "leaderboard.md").is_file()
    assert "| small-cnn" in printed and "worst case %" in printed
    assert printed.strip() == (out / "leaderboard.md").read_text().strip()
    cells = report_json(out, capsys)
    assert len(cells) == 4 + 2  # 2 attacks x 2 eps, plus a worst case per eps
    for cell in cells:
        assert cell.keys() >= JSON_KEYS
        assert cell["track"] == "adversarial" and cell["defense"] == "none" and cell["dataset"] == "digits"
        assert cell["n"] == 60 and isinstance(cell["flags"], list)
        assert 0 <= cell["robust_accuracy"] <= cell["clean_accuracy"] <= 1
    assert {c["attack"] for c in cells} == {"fgsm", "pgd", "worst-case"}


def test_report_formats(spec_file, tmp_path, capsys):
    out = tmp_path / "run"
    main(["run", "--config", str(spec_file), "--out", str(out), "-q"])
    capsys.readouterr()
    assert main(["report", str(out), "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("track,model,defense,attack,dataset,norm,eps,n,clean_accuracy,robust_accuracy,flags,seconds")
    assert len(lines) == 1 + 6
    assert main(["report", str(out)]) == 0
    assert "# Leaderboard: adversarial track" in capsys.readouterr().out


def test_a_rerun_recomputes_nothing(spec_file, tmp_path, capsys):
    out = tmp_path / "run"
    main(["run", "--config", str(spec_file), "--out", str(out), "-q"])
    before = sqlite3.connect(out / "results.db").execute("SELECT key, finished_at FROM jobs ORDER BY key").fetchall()
    capsys.readouterr()
    assert main(["run", "--config", str(spec_file), "--out", str(out), "-q"]) == 0
    assert "0 ran, 5 already done" in capsys.readouterr().err  # 4 attack jobs and the sanity checks
    assert sqlite3.connect(out / "results.db").execute("SELECT key, finished_at FROM jobs ORDER BY key").fetchall() == before


def test_a_folder_of_another_spec_is_refused(spec_file, tmp_path, capsys):
    out = tmp_path / "run"
    main(["run", "--config", str(spec_file), "--out", str(out), "-q"])
    capsys.readouterr()
    assert main(["run", "--config", str(spec_file), "--out", str(out), "--seed", "5", "-q"]) == 2
    assert "already holds a run of a different spec" in one_line_error(capsys)


def test_same_spec_and_seed_give_the_same_numbers(spec_file, tmp_path, capsys, monkeypatch):
    results = []
    for i in range(2):
        monkeypatch.setenv("BENCH_CACHE", str(tmp_path / f"cache{i}"))  # trained from scratch each time
        main(["run", "--config", str(spec_file), "--out", str(tmp_path / f"run{i}"), "-q"])
        results.append([{k: v for k, v in c.items() if k != "seconds"} for c in report_json(tmp_path / f"run{i}", capsys)])
    assert results[0] == results[1]


def test_a_failing_job_is_recorded_and_the_run_goes_on(tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.replace('[[models]]\nname = "small-cnn"', '[[models]]\nname = "small-cnn"\n[[models]]\nname = "tests.helpers:fails_under_attack"'))
    out = tmp_path / "run"
    assert main(["run", "--config", str(spec), "--out", str(out), "-q"]) == 1
    captured = capsys.readouterr()
    assert "5 failed" in captured.err and "this model cannot be attacked" in captured.err  # 4 attacks and the sanity checks
    assert "## Failed jobs" in captured.out
    cells = report_json(out, capsys)
    assert {c["status"] for c in cells if c["model"] == "small-cnn"} == {"ok"}
    assert {c["status"] for c in cells if c["model"] != "small-cnn"} == {"failed"}
    assert all(c["robust_accuracy"] is None for c in cells if c["status"] == "failed")


def test_list_with_wildcards(capsys):
    assert main(["list", "attacks", "pgd*"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:] if line.strip()]
    assert names == ["pgd", "pgd-l2"]
    assert main(["list", "models", "timm:resnet1*"]) == 0
    assert "timm:resnet18" in capsys.readouterr().out
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for kind in ("attacks:", "models:", "defenses:", "datasets:", "tracks:"):
        assert kind in out
    assert main(["list", "attacks", "zzz*"]) == 2
    one_line_error(capsys)


def test_list_flags_explains_each_flag(capsys):
    assert main(["list", "flags", "*masking*"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["gradient-masking"]
    assert "adaptive attack" in lines[0]
    assert main(["list", "flags", "zzz*"]) == 2
    one_line_error(capsys)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--config", "missing.toml"], "spec file 'missing.toml' does not exist"),
        (["run", "--n-examples", "0"], "spec.n_examples: must be >= 1"),
        (["run", "--track", "adversarail"], "unknown track 'adversarail'; did you mean 'adversarial'?"),
        (["run", "--n-examples", "ten"], "invalid int value"),
        (["report", "nowhere"], "run folder 'nowhere' does not exist"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(argv, message, capsys):
    assert main(argv) == 2
    assert message in one_line_error(capsys)


def test_bad_spec_contents_name_the_field(tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text('[[attacks]]\nname = "fgsm"\neps = 0.1\n[[attacks]]\nname = "pgd"\neps = -0.03\n')
    assert main(["run", "--config", str(spec), "--out", str(tmp_path / "run")]) == 2
    assert one_line_error(capsys) == "error: spec.attacks[1].eps: must be > 0, got -0.03"
    assert not (tmp_path / "run").exists()  # validated before anything is created or computed


def test_an_unsafe_checkpoint_is_refused_before_loading(tmp_path, capsys):
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"weights": torch.zeros(1), "payload": Payload()}, tmp_path / "evil.pt")
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.replace('name = "small-cnn"', 'name = "small-cnn"\ncheckpoint = "evil.pt"'))
    assert main(["run", "--config", str(spec), "--out", str(tmp_path / "run")]) == 2
    assert "evil.pt' is unsafe to load" in one_line_error(capsys)
    assert not marker.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_user_error(capsys):
    assert main(["run", "--device", "cuda", "--out", "unused"]) == 2
    assert "CUDA is not available" in one_line_error(capsys)


@pytest.mark.parametrize(
    ("attack", "message"),
    [
        ('name = "torchattacks:PDG"\neps = 0.1', "spec.attacks[0]: torchattacks has no attack 'PDG'; did you mean 'PGD'"),
        ('name = "torchattacks:PGD"\neps = 0.1\nstepz = 3', "spec.attacks[0].stepz: torchattacks:PGD does not take 'stepz' (did you mean 'steps'?)"),
        ('name = "torchattacks:PGD"\neps = 0.1\nnorm = "l2"', "spec.attacks[0].norm: 'l2' is not supported by torchattacks:PGD; supported: linf"),
        ('name = "torchattacks:OnePixel"\neps = 0.1', "torchattacks:OnePixel is not usable here: an L0 (few-pixel) attack"),
        ('name = "art:ProjectedGradientDescnt"\neps = 0.1', "art has no attack 'ProjectedGradientDescnt'; did you mean 'ProjectedGradientDescent'"),
        ('name = "art:DPatch"\neps = 0.1', "art:DPatch is not usable here: not an evasion attack on image classifiers"),
        ('name = "cw"\neps = 0.1', "spec.attacks[0].norm: 'linf' is not supported by torchattacks:CW; supported: l2"),
        ('name = "eot"\neps = 0.1\ndistribution = "moon"', "spec.attacks[0].distribution: must be one of physical, none"),
        ('name = "eot"\neps = 0.1\nscale = [1.2, 0.8]', "spec.attacks[0].scale: must be a range (lo, hi) with 0 < lo <= hi"),
        # implausible budgets: refused with the data in hand, before any compute
        ('name = "pgd"\neps = [0.1, 8]', "spec.attacks[0].eps (pgd): 8 is not a plausible Linf budget for data in [0, 1]"),
        ('name = "pgd"\neps = 8', "; did you mean 8/255 = 0.03137?"),
        ('name = "pgd-l2"\neps = 20.0', "spec.attacks[0].eps (pgd-l2): 20 exceeds the L2 diameter of the data's [0, 1] cube (sqrt(64) = 8)"),
    ],
)
def test_bad_attack_specs_are_one_line(attack, message, tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text(f"[[attacks]]\n{attack}\n")
    assert main(["run", "--config", str(spec), "--out", str(tmp_path / "run")]) == 2
    assert message in one_line_error(capsys)
    assert not (tmp_path / "run").exists()  # no empty run folder left behind


def test_adapters_and_adaptive_attacks_run_in_the_harness(tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text(
        SPEC.split("[[attacks]]")[0]
        + '[[attacks]]\nname = "torchattacks:PGD"\neps = 0.1\nsteps = 3\n'
        + '[[attacks]]\nname = "art:FastGradientMethod"\neps = 0.1\n'
        + '[[attacks]]\nname = "eot"\neps = 0.1\nsteps = 3\nsamples = 2\neval_draws = 4\n'
        + "[training]\nepochs = 3\n"
    )
    out = tmp_path / "run"
    assert main(["run", "--config", str(spec), "--out", str(out), "-q"]) == 0
    cells = report_json(out, capsys)
    assert {c["attack"] for c in cells} == {"torchattacks:PGD", "art:FastGradientMethod", "eot", "worst-case"}
    eot = next(c for c in cells if c["attack"] == "eot")
    assert 0 <= eot["metrics"]["transform_averaged_accuracy"] <= 1
    assert "Transform-averaged accuracy (EOT)" in (out / "leaderboard.md").read_text()
