"""`make gpu-check` (scripts/gpu_check.sh, scripts/gpu_report.py) and the conftest hook that skips gpu-marked tests without CUDA."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
NO_CUDA = "gpu-check: no CUDA device on this machine (torch.cuda.is_available() is False); nothing to check"
needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")


@pytest.mark.gpu
def test_marked_gpu_is_skipped_without_cuda():
    """Fails wherever it runs without CUDA: the conftest hook must skip it there (and it passes on a GPU)."""
    assert torch.cuda.is_available()


# -- gpu_check.sh without CUDA -------------------------------------------------
def _one_line(command: list[str], env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert output.count("\n") == 1 and output.endswith("\n"), output
    return output.strip()


@needs_no_cuda
@pytest.mark.parametrize("env", [{}, {"CUDA_VISIBLE_DEVICES": ""}], ids=["plain", "no-visible-devices"])
def test_the_script_says_one_line_and_succeeds_without_cuda(env, tmp_path):
    out = tmp_path / "gpu-check"
    assert _one_line(["bash", "scripts/gpu_check.sh"], {**env, "GPU_CHECK_OUT": str(out)}) == NO_CUDA
    assert not out.exists()  # nothing run, nothing written


@needs_no_cuda
@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_gpu_check_says_one_line_and_succeeds_without_cuda(tmp_path):
    assert _one_line(["make", "-s", "gpu-check"], {"GPU_CHECK_OUT": str(tmp_path / "gpu-check")}) == NO_CUDA


def test_a_cpu_rehearsal_runs_every_step_and_reports_it(tmp_path):
    """GPU_CHECK_DEVICE=cpu runs the CUDA path of the script on any machine: six steps, their limits, the report.

    The three track runs get 2 s, so they time out (the script records that and goes on, and the equivalence step then
    has nothing to compare); the test and benchmark steps select only GPU-marked tests, which skip here: they pass."""
    out = tmp_path / "rehearsal"
    limits = {f"GPU_CHECK_TIMEOUT_{step}": "2" for step in ("ADVERSARIAL", "UNCERTAINTY", "CPU_REFERENCE")}
    env = {"GPU_CHECK_DEVICE": "cpu", "GPU_CHECK_OUT": str(out), **limits}
    done = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads((out / "gpu-check.json").read_text())
    assert report["device"] == "cpu"
    assert [(s["step"], s["status"]) for s in report["steps"]] == [
        ("gpu-tests", "passed"),
        ("adversarial", "timed-out"),
        ("uncertainty", "timed-out"),
        ("benchmarks", "passed"),
        ("cpu-reference", "timed-out"),
        ("equivalence", "failed"),
    ]
    commands = {s["step"]: s["command"] for s in report["steps"]}
    assert "--device cpu" in commands["adversarial"] and "cpu-reference.toml --device cpu" in commands["cpu-reference"]
    assert 'name = "processes"' in (out / "cpu-reference.toml").read_text()
    tests = report["gpu_tests"]
    assert tests["produced"] and tests["failed"] == tests["errors"] == 0 and tests["skipped"] == tests["total"] > 0
    assert not any("benchmarks" in name for name in tests["failures"])
    text = (out / "gpu-check.md").read_text()
    assert "## Default adversarial track on the CPU (a rehearsal" in text
    assert "CPU and device: not compared (adversarial-cpu/results.db not produced)." in text
    assert "- ✗ uncertainty: timed-out (exit 124)" in text


TINY = """
track = "adversarial"
n_examples = 100
device = "cpu"
defenses = [{ name = "none" }]
[training]
epochs = 2
[[attacks]]
name = "pgd"
eps = [0.2]
%s
"""


def _tiny_run(folder: Path, config: Path, attack_params: str, cache: Path) -> None:
    config.write_text(TINY % attack_params)
    env = {**os.environ, "BENCH_CACHE": str(cache)}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--config", str(config), "--out", str(folder), "-q"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def _equivalence(out: Path) -> tuple[int, str, dict]:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_report.py"), "--equivalence", str(out)], capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, json.loads((out / "equivalence.json").read_text())


def test_equivalence_passes_the_same_run_and_catches_a_weaker_attack(tmp_path):
    """The equivalence step on real runs: the same spec twice is equivalent; a "device" whose PGD barely attacks is not."""
    cache = tmp_path / "cache"
    same, weaker = tmp_path / "same", tmp_path / "weaker"
    _tiny_run(same / "adversarial-cpu", tmp_path / "a.toml", "", cache)
    _tiny_run(same / "adversarial", tmp_path / "a.toml", "", cache)
    rc, line, found = _equivalence(same)
    assert rc == 0 and line.startswith("CPU and device: equivalent: 0 of 2 cells changed significantly"), line
    assert found["passed"] and found["changed"] == 0 and found["beyond_tolerance"] == 0

    shutil.copytree(same / "adversarial-cpu", weaker / "adversarial-cpu")
    _tiny_run(weaker / "adversarial", tmp_path / "b.toml", "steps = 1\nstep_size = 0.001\nrandom_start = false", cache)
    rc, line, found = _equivalence(weaker)
    assert rc == 1 and line.startswith("CPU and device: NOT equivalent"), line
    assert {change["row"]["attack"] for change in found["significant"]} >= {"pgd"}
    assert found["largest_change"]["delta"] > 0.2  # robust accuracy up: the attack failed, not the model
    text, _ = _report(weaker)
    assert "- significant: small-cnn / none / pgd / linf / 0.2: robust_accuracy" in text


def test_the_script_refuses_an_unknown_device(tmp_path):
    env = {**os.environ, "GPU_CHECK_DEVICE": "tpu", "GPU_CHECK_OUT": str(tmp_path)}
    done = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr == "gpu-check: GPU_CHECK_DEVICE must be cuda or cpu, got 'tpu'\n"


def test_make_gpu_check_needs_no_venv():
    """The target only calls the script: it must not depend on the venv stamp (which installs)."""
    makefile = (ROOT / "Makefile").read_text()
    assert "gpu-check:\n\t@bash scripts/gpu_check.sh\n" in makefile
    phony = next(line for line in makefile.splitlines() if line.startswith(".PHONY:"))
    assert "gpu-check" in phony.split()


def test_the_shell_scripts_parse():
    for script in ("gpu_check.sh", "gpu_wheels.sh"):
        subprocess.run(["bash", "-n", str(ROOT / "scripts" / script)], check=True)


# -- gpu_report.py ---------------------------------------------------------------
JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="0" failures="1" skipped="1" tests="4" time="3.2">
<testcase classname="tests.test_device_keeping" name="test_keeps_device[cuda]" time="0.5"/>
<testcase classname="tests.test_device_keeping" name="test_keeps_dtype[cuda]" time="0.5"/>
<testcase classname="tests.test_accel" name="test_bf16_close[cuda]" time="1.0"><failure message="assert 0.3 &lt; 0.05">trace</failure></testcase>
<testcase classname="tests.test_accel" name="test_two_gpus" time="0.0"><skipped message="needs 2 GPUs"/></testcase>
</testsuite></testsuites>
"""

BENCHMARKS = {
    "machine_info": {"node": "gpu-box", "cpu": {"brand_raw": "x"}, "python_version": "3.12.3"},
    "benchmarks": [
        {
            "name": "test_pgd_cuda_vs_cpu",
            "fullname": "tests/benchmarks/test_gpu_throughput.py::test_pgd_cuda_vs_cpu",
            "stats": {"mean": 0.01234, "min": 0.011},
            "extra_info": {"ratio": 18.5, "goal": 10, "reference": "pgd on cpu", "device": "cuda"},
        },
        {"name": "test_training_bf16", "stats": {"mean": 0.5}, "extra_info": {"ratio": 1.7, "device": "cuda", "precision": "bf16"}},
    ],
}

STEPS = [
    {"step": "gpu-tests", "command": "python -m pytest -m gpu -q", "status": "failed", "rc": 1, "seconds": 41.5, "timeout": 100},
    {"step": "adversarial", "command": "python -m bench run ...", "status": "passed", "rc": 0, "seconds": 95.2, "timeout": 160},
    {"step": "uncertainty", "command": "python -m bench run ...", "status": "timed-out", "rc": 124, "seconds": 80.0, "timeout": 80},
    {"step": "benchmarks", "command": "python -m pytest tests/benchmarks ...", "status": "passed", "rc": 0, "seconds": 60.1, "timeout": 100},
]


def _report(out: Path) -> tuple[str, dict]:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_report.py"), str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return (out / "gpu-check.md").read_text(), json.loads((out / "gpu-check.json").read_text())


def test_the_report_holds_the_figures(tmp_path):
    (tmp_path / "steps.jsonl").write_text("".join(json.dumps(step) + "\n" for step in STEPS) + "not json\n")
    (tmp_path / "gpu-tests.xml").write_text(JUNIT)
    (tmp_path / "benchmarks.json").write_text(json.dumps(BENCHMARKS))
    text, report = _report(tmp_path)

    assert report["gpu_tests"] == {
        "produced": True,
        "passed": 2,
        "failed": 1,
        "errors": 0,
        "skipped": 1,
        "total": 4,
        "failures": ["tests.test_accel::test_bf16_close[cuda]"],
    }
    assert [s["status"] for s in report["steps"]] == ["failed", "passed", "timed-out", "passed", "not run", "not run"]
    assert report["passed"] is False
    assert report["equivalence"]["produced"] is False
    assert report["uncertainty"]["produced"] is False
    first = report["benchmarks"]["benchmarks"][0]
    assert first["mean_s"] == 0.01234 and first["extra_info"] == BENCHMARKS["benchmarks"][0]["extra_info"]

    assert text.startswith("# GPU check\n")
    assert "- ✗ gpu-tests: failed (exit 1) in 41.5 s of 100 s" in text
    assert "- ✓ adversarial: passed (exit 0) in 95.2 s of 160 s" in text
    assert "- ✗ uncertainty: timed-out (exit 124) in 80 s of 80 s" in text
    assert "2 passed, 1 failed, 0 errors, 1 skipped (of 4)." in text
    assert "- failed: tests.test_accel::test_bf16_close[cuda]" in text
    assert "CPU and device: not compared (equivalence.json not produced)." in text
    assert "uncertainty/results.db not produced" in text
    table = text.split("## Benchmarks")[1]
    for header in ("benchmark", "mean (s)", "ratio", "goal", "met", "reference", "device", "other figures"):
        assert header in table
    row = next(line for line in table.splitlines() if "test_pgd_cuda_vs_cpu" in line)
    assert all(figure in row for figure in ("0.01234", "18.5", "10", "pgd on cpu", "cuda"))
    row = next(line for line in table.splitlines() if "test_training_bf16" in line)
    assert "precision=bf16" in row and "1.7" in row
    row = next(line for line in table.splitlines() if "test_pgd_cuda_vs_cpu" in line)
    assert "✗" in row  # 18.5 > goal 10


def test_an_empty_folder_gives_a_report_of_what_was_not_produced(tmp_path):
    text, report = _report(tmp_path)
    assert [(s["step"], s["status"]) for s in report["steps"]] == [
        ("gpu-tests", "not run"),
        ("adversarial", "not run"),
        ("uncertainty", "not run"),
        ("benchmarks", "not run"),
        ("cpu-reference", "not run"),
        ("equivalence", "not run"),
    ]
    assert report["passed"] is False
    assert report["equivalence"]["produced"] is False
    for line in (
        "- ✗ gpu-tests: not run",
        "gpu-tests.xml not produced.",
        "CPU and device: not compared (equivalence.json not produced).",
        "adversarial/results.db not produced.",
        "uncertainty/results.db not produced.",
        "benchmarks.json not produced.",
    ):
        assert line in text


def test_the_report_reads_a_run_folder_through_the_store(tmp_path):
    from bench.store import Record, Store

    run = tmp_path / "uncertainty"
    run.mkdir()
    with Store(run / "results.db") as store:
        store.put(Record("a", "uncertainty", 0, {"model": "small-cnn", "estimator": "softmax"}, metrics={"ece": 0.1}))
        store.put(Record("b", "uncertainty", 1, {"model": "small-cnn", "estimator": "mc-dropout"}, status="failed", error="CUDA out of memory"))
    text, report = _report(tmp_path)
    assert report["uncertainty"]["jobs"] == 2 and report["uncertainty"]["by_status"] == {"ok": 1, "failed": 1}
    assert "Jobs: 2 (1 failed, 1 ok)." in text
    assert "- failed: small-cnn / mc-dropout: CUDA out of memory" in text


def test_the_report_wants_a_folder(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_report.py"), str(tmp_path / "missing")], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("usage:")


# -- the conftest hook -------------------------------------------------------------
@needs_no_cuda
def test_the_conftest_skips_gpu_marked_tests_without_cuda(pytester):
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text())
    pytester.makepyfile(
        test_marked="""
import pytest

@pytest.mark.gpu
def test_on_gpu():
    raise AssertionError("ran without CUDA")

def test_on_cpu():
    pass
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*needs CUDA*"])
