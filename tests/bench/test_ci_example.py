"""docs/ci-example.yml, as another project uses it: its gate command, run from a folder holding only a model file, a spec and a baseline."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).parents[2] / "docs"
WORKFLOW = DOCS / "ci-example.yml"
PROJECT = DOCS / "example-project"


def gate_command() -> list[str]:
    """The `bench check` line of the workflow's "Robustness gate" step."""
    found = re.search(r"name: Robustness gate\n\s+run: (bench check .*)\n", WORKFLOW.read_text())
    assert found, "docs/ci-example.yml has no 'Robustness gate' step running bench check"
    return shlex.split(found.group(1))


def test_the_workflow_installs_bench_from_outside_and_pins_the_baselines_torch():
    text = WORKFLOW.read_text()
    assert "pip install ." not in text  # the user's project is not frontier-bench
    assert re.search(r"frontier-bench @ git\+https://", text)
    torch_pin = re.search(r"torch==([\d.]+)", text).group(1)
    baseline = json.loads((PROJECT / "baseline.json").read_text())
    assert baseline["source"]["versions"]["torch"] == torch_pin
    assert "hashFiles('**/*.py', 'spec.toml')" in text  # the model cache is keyed on the user's code


@pytest.mark.slow
def test_the_example_gate_passes_in_a_folder_of_its_own(tmp_path):
    """A fresh folder, a fresh process, no PYTHONPATH, the installed `bench` command: what CI runs."""
    folder = tmp_path / "their-project"
    folder.mkdir()
    for name in ("mymodel.py", "spec.toml", "baseline.json"):
        shutil.copy(PROJECT / name, folder / name)
    command = gate_command()
    bench = Path(sys.executable).with_name("bench")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"BENCH_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(bench), *command[1:], "-q"], cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "bench check passed" in done.stdout
    assert "Traceback" not in done.stderr and "Warning" not in done.stderr

    broken = (PROJECT / "mymodel.py").read_text().replace("return nn.Sequential(", "return nn.Sequential(nn.Dropout(1.0),")  # learns from zeros
    (folder / "mymodel.py").write_text(broken)
    edited = subprocess.run([str(bench), *command[1:], "-q"], cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert edited.returncode == 1, edited.stdout + edited.stderr  # the edited model is measured, not served from the cache
