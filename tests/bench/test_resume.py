"""kill -9 at any moment, re-run: the leaderboard equals an uninterrupted run's, nothing lost or doubled."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.cli import main

SPEC = """
n_examples = 200
checks = false
[[models]]
name = "small-cnn"
[[attacks]]
name = "pgd"
eps = [0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.14, 0.16, 0.18, 0.2]
steps = 40
[training]
epochs = 3
"""
JOBS = 10
ROOT = Path(__file__).resolve().parents[2]


def finished_jobs(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as connection:
            return connection.execute("SELECT count(*) FROM jobs").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def kill_after(spec: Path, out: Path, jobs: int, *, env: dict[str, str] | None = None) -> int:
    """``bench run`` of ``spec`` into ``out`` in a child process, SIGKILLed once ``jobs`` jobs are stored (or when it ends, or after
    120 s): the jobs stored by then."""
    command = [sys.executable, "-m", "bench", "run", "--config", str(spec), "--out", str(out), "-q"]
    process = subprocess.Popen(command, cwd=ROOT, env=env or os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while finished_jobs(out / "results.db") < jobs and process.poll() is None and time.monotonic() < deadline:  # a store mid-creation reads as 0
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return finished_jobs(out / "results.db")


def cells(run_dir: Path, capsys) -> list[dict]:
    capsys.readouterr()
    assert main(["report", str(run_dir), "--format", "json"]) == 0
    return [{k: v for k, v in c.items() if k != "seconds"} for c in json.loads(capsys.readouterr().out)["cells"]]


@pytest.mark.slow
def test_kill_9_then_rerun_equals_an_uninterrupted_run(tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    reference = tmp_path / "reference"
    assert main(["run", "--config", str(spec), "--out", str(reference), "-q"]) == 0  # also fills the model cache

    killed = tmp_path / "killed"
    done_at_kill = kill_after(spec, killed, 3)
    assert 3 <= done_at_kill < JOBS, f"the kill should land mid-run, {done_at_kill} jobs were done"

    assert main(["run", "--config", str(spec), "--out", str(killed), "-q"]) == 0
    assert f"{JOBS - done_at_kill} ran, {done_at_kill} already done" in capsys.readouterr().err
    assert cells(killed, capsys) == cells(reference, capsys)
    with sqlite3.connect(killed / "results.db") as connection:
        assert connection.execute("SELECT count(*), count(DISTINCT key) FROM jobs").fetchone() == (JOBS, JOBS)
        assert connection.execute("SELECT count(*) FROM outcomes").fetchone()[0] == JOBS * 200
