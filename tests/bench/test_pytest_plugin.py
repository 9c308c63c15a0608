"""The pytest plugin: the bench_check fixture and marker, run inside a pytest session of their own (pytester)."""

from __future__ import annotations

import importlib.metadata
import shutil
import tomllib
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

TESTS = """
import pytest

def test_fixture(bench_check):
    result = bench_check("spec.toml", baseline="baseline.json")
    assert result.passed

@pytest.mark.bench_check("spec.toml", baseline="baseline.json", tolerance=0.02)
def test_marker():
    pass
"""


JPEG_SPEC = """
n_examples = 20
checks = false
adaptive = false
[[models]]
name = "small-cnn"
checkpoint = "model.safetensors"
[[defenses]]
name = "jpeg"
[[attacks]]
name = "fgsm"
eps = [0.1]
"""


def plugin_args() -> list[str]:
    """Load the plugin by name unless the installed distribution already registers it through its entry point."""
    installed = {ep.name for ep in importlib.metadata.entry_points(group="pytest11")}
    return [] if "frontier_bench" in installed else ["-p", "bench.pytest_plugin"]


@pytest.fixture
def suite(pytester, project):
    for name in ("spec.toml", "baseline.json", "model.safetensors", "undefended.safetensors"):
        shutil.copy(project / name, pytester.path / name)
    sub = pytester.path / "tests"
    sub.mkdir()
    (sub / "test_robustness.py").write_text(TESTS.replace('"spec.toml"', '"../spec.toml"').replace('"baseline.json"', '"../baseline.json"'))
    return pytester


def test_the_entry_point_names_the_plugin_module():
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert pyproject["project"]["entry-points"]["pytest11"] == {"frontier_bench": "bench.pytest_plugin"}


def test_fixture_and_marker_pass_on_the_same_model(suite):
    result = suite.runpytest(*plugin_args(), "-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_a_weaker_model_fails_both_with_the_regression_table(suite):
    (suite.path / "undefended.safetensors").replace(suite.path / "model.safetensors")
    result = suite.runpytest(*plugin_args(), "-q", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*bench check FAILED: * regression*", "*| row * | metric * | baseline * | now * | allowed * |*"])
    result.stdout.fnmatch_lines(["*small-cnn / none / worst-case / digits Linf eps 0.2 | robust_accuracy*"])
    assert "Traceback" not in result.stdout.str()


def test_a_bad_baseline_fails_with_its_one_line(suite):
    (suite.path / "baseline.json").write_text("{oops")
    result = suite.runpytest(*plugin_args(), "-q", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*bench check: baseline '*baseline.json' is not valid JSON*"])


def test_a_check_adds_no_warnings_to_the_users_session(pytester, project):
    """The jpeg defense calls torchvision's deprecated JPEG codec on every batch: none of that reaches the user's warnings summary."""
    from bench.cli import main

    shutil.copy(project / "model.safetensors", pytester.path / "model.safetensors")
    (pytester.path / "spec.toml").write_text(JPEG_SPEC)
    assert main(["run", "--config", str(pytester.path / "spec.toml"), "--out", str(pytester.path / "baseline-run"), "-q"]) == 0
    assert main(["baseline", str(pytester.path / "baseline-run"), "-o", str(pytester.path / "baseline.json")]) == 0
    pytester.makepyfile(test_jpeg='def test_gate(bench_check):\n    assert bench_check("spec.toml", baseline="baseline.json").jobs_ran == 1\n')
    result = pytester.runpytest(*plugin_args(), "-q", "-p", "no:cacheprovider", "-W", "always::DeprecationWarning", "-W", "always::UserWarning")
    result.assert_outcomes(passed=1, warnings=0)  # the check ran its job (jpeg and all) in this session
    assert "warnings summary" not in result.stdout.str() and "TorchVision are deprecated" not in result.stdout.str()


def test_the_marker_is_registered(pytester):
    result = pytester.runpytest(*plugin_args(), "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.bench_check(config=None, *, baseline, tolerance=0.02*"])
