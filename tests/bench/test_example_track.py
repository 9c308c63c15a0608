"""A track from outside the harness: ``tests/example_track.py``, registered through an entry point as a plugin would be.

The end-to-end tests run ``bench`` in a subprocess whose PYTHONPATH holds a
``*.dist-info`` folder declaring the ``frontier_bench.tracks`` entry point,
so the registry discovers the track fresh, with no change under ``bench/``.
The rest checks the track's own contract in this process: its spec errors,
its adaptive plan and its dependency-reading job.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.errors import UserError
from bench.spec import RunSpec, TrainingSpec
from bench.store import Record
from bench.tracks import Dependency, Task
from bench.worker import Cache
from tests.example_track import DEFAULT_DECAYS, ExampleTrack

ROOT = Path(__file__).resolve().parents[2]
TRACK_FILE = ROOT / "tests" / "example_track.py"
PUBLIC = ("bench.tracks", "bench.spec", "bench.fields", "bench.errors", "bench.worker", "bench.runner", "bench.training")
SEEDS = 2  # the default spec's
GRID_JOBS = len(DEFAULT_DECAYS) * SEEDS
JOBS = GRID_JOBS + SEEDS  # plus one refinement per seed


# -- the plugin, end to end ------------------------------------------------------
@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment whose PYTHONPATH holds the plugin's dist-info (its entry point), then the repository."""
    site = tmp_path_factory.mktemp("site")
    info = site / "example_track_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: example-track-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[frontier_bench.tracks]\nexample = tests.example_track:ExampleTrack\n")
    # one torch thread: the jobs are tiny, and on a busy machine OpenMP's spinning threads make each of them seconds instead of milliseconds
    return {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{ROOT}", "BENCH_CACHE": str(site / "cache"), "OMP_NUM_THREADS": "1"}


def bench(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def example_run(plugin_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("runs") / "example"
    return out, bench(plugin_env, "run", "--track", "example", "--out", str(out), "-q")


def stored(out: Path) -> list[dict]:
    with sqlite3.connect(out / "results.db") as db:
        rows = db.execute("SELECT key, status, error, labels, metrics FROM jobs ORDER BY position").fetchall()
        counts = dict(db.execute("SELECT job, count(*) FROM outcomes GROUP BY job").fetchall())
    return [{"key": k, "status": s, "error": e, **json.loads(labels), "metrics": json.loads(m), "outcomes": counts.get(k, 0)} for k, s, e, labels, m in rows]


def test_a_plugin_track_runs_both_rounds(example_run):
    out, done = example_run
    assert done.returncode == 0, done.stderr
    assert f"{JOBS} jobs: {JOBS} ran, 0 already done, 0 failed" in done.stderr
    jobs = stored(out)
    assert [j["status"] for j in jobs] == ["ok"] * JOBS, [j["error"] for j in jobs]
    assert all(j["outcomes"] == 360 and j["metrics"]["n"] == 360 for j in jobs)  # one outcome per test point
    grid = [j for j in jobs if j["stage"] == "grid"]
    refined = [j for j in jobs if j["stage"] == "refined"]
    assert sorted({j["weight_decay"] for j in grid}) == list(DEFAULT_DECAYS) and len(grid) == GRID_JOBS
    assert len(refined) == SEEDS and len({j["weight_decay"] for j in refined}) == 1  # the second round: one midpoint, every seed
    midpoint = refined[0]["weight_decay"]
    assert midpoint not in DEFAULT_DECAYS and min(DEFAULT_DECAYS) < midpoint < max(DEFAULT_DECAYS)
    for job in refined:  # it read what the two jobs it refines measured
        parents = [g["metrics"]["val_accuracy"] for g in grid if g["seed"] == job["seed"] and g["weight_decay"] in _neighbours(midpoint)]
        assert len(parents) == 2
        assert job["metrics"]["val_gain"] == pytest.approx(job["metrics"]["val_accuracy"] - max(parents))
    page = (out / "leaderboard.md").read_text()
    assert "## Accuracy against L2 weight decay (digits)" in page and "refined" in page
    html = (out / "leaderboard.html").read_text()
    assert "Accuracy against L2 weight decay (digits)" in html and "Traceback" not in html


def _neighbours(midpoint: float) -> list[float]:
    below = max(d for d in DEFAULT_DECAYS if d < midpoint)
    return [below, min(d for d in DEFAULT_DECAYS if d > midpoint)]


def test_a_rerun_of_the_same_folder_runs_nothing(example_run, plugin_env):
    out, done = example_run
    assert done.returncode == 0, done.stderr
    again = bench(plugin_env, "run", "--track", "example", "--out", str(out), "-q")
    assert again.returncode == 0, again.stderr
    assert re.search(rf"\b{JOBS} jobs: 0 ran, {JOBS} already done, 0 failed\b", again.stderr), again.stderr
    assert len(stored(out)) == JOBS


def test_reports_render_the_tracks_cells(example_run, plugin_env):
    out, done = example_run
    assert done.returncode == 0, done.stderr
    report = bench(plugin_env, "report", str(out), "--format", "json")
    assert report.returncode == 0, report.stderr
    cells = json.loads(report.stdout)["cells"]
    assert len(cells) == len(DEFAULT_DECAYS) + 1  # a cell per weight decay, the refined one included
    assert {c["track"] for c in cells} == {"example"} and all(c["status"] == "ok" and c["seeds"] == SEEDS for c in cells)
    assert all(0 <= c["metrics"]["test_accuracy"] <= 1 and c["metrics"]["train_loss"] > 0 for c in cells)
    assert max(c["metrics"]["test_accuracy"] for c in cells) > 0.85  # a linear model does learn digits


def test_the_tracks_tables_render_in_every_format(example_run):
    """The renderers take the track's own tables (no registration needed here: cells come from the stored records)."""
    from bench.store import Store
    from reports.html import leaderboard_html
    from reports.latex import leaderboard_latex

    out, done = example_run
    assert done.returncode == 0, done.stderr
    track = ExampleTrack()
    with Store(out / "results.db", create=False) as store:
        cells = track.cells(store.records(), store.outcomes())
    tables = track.tables(cells)
    assert [t.title for t in tables] == ["Accuracy against L2 weight decay (digits)"]
    assert [row[1] for row in tables[0].rows].count("refined") == 1
    assert all(len(row) == len(values) == len(tables[0].headers) for row, values in zip(tables[0].rows, tables[0].values, strict=True))
    markdown = track.markdown(cells)  # the default: reports.leaderboard.tables_markdown of the track's tables
    assert markdown.startswith("# Leaderboard") and "\n## Accuracy against L2 weight decay (digits)\n" in markdown
    latex = leaderboard_latex(cells, worst_case="worst-case", explanations=track.explanations, tables=tables)
    assert "\\caption{Accuracy against L2 weight decay (digits)." in latex and "\\begin{tabular}" in latex
    html = leaderboard_html(cells, worst_case="worst-case", explanations=track.explanations, tables=tables)
    assert html.count("<tr>") == len(cells) + 1 and f"{JOBS} jobs" in html


def test_a_typo_in_the_tracks_section_is_one_line(plugin_env, tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text('track = "example"\nweight_decay = [0.1, 0.01]\n')
    done = bench(plugin_env, "run", "--config", str(spec), "--out", str(tmp_path / "run"), "-q")
    assert done.returncode == 2
    assert done.stderr.startswith("error: spec.weight_decay: unknown field; did you mean 'weight_decays'?")
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "results.db").exists()


def test_bench_list_shows_the_plugin_track(plugin_env):
    done = bench(plugin_env, "list", "tracks")
    assert done.returncode == 0, done.stderr
    assert re.search(r"^example\s+Example: accuracy of a linear model", done.stdout, re.MULTILINE), done.stdout


def test_the_track_imports_only_the_public_modules_of_the_harness():
    tree = ast.parse(TRACK_FILE.read_text())
    imported = [(node.module, [a.name for a in node.names]) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [(alias.name, []) for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    ours = [(module, names) for module, names in imported if module and module.split(".")[0] in ("bench", "reports", "attacks", "defenses", "models")]
    assert ours, "the example track should use the harness"
    for module, names in ours:
        assert module in PUBLIC or module == "reports" or module.startswith("reports."), f"imports {module}"
        if module == "bench.runner":
            assert names == ["job_key"], f"imports {names} from bench.runner"


# -- the contract, in this process ---------------------------------------------------
def spec_of(track: ExampleTrack, tmp_path: Path, **raw) -> RunSpec:
    section = track.parse({**track.default_spec(), **raw}, base_dir=tmp_path)
    return RunSpec("example", "digits", {}, None, 0, "cpu", 256, TrainingSpec(), section, seeds=SEEDS)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"weight_decays": []}, "spec.weight_decays: must be a non-empty list of numbers > 0, got []"),
        ({"weight_decays": [0.1, -1]}, "spec.weight_decays[1]: must be a number > 0, got -1"),
        ({"weight_decays": [0.1, "big"]}, "spec.weight_decays[1]: must be a number > 0, got 'big'"),
        ({"weight_decays": [0.1, 0.1]}, "spec.weight_decays: repeats a value: [0.1, 0.1]"),
        ({"steps": 0}, "spec.steps: must be >= 1, got 0"),
        ({"lr": True}, "spec.lr: must be a number > 0, got True"),
        ({"die_once": 3}, "spec.die_once: must be a file path, got 3"),
    ],
)
def test_spec_errors_name_their_field(raw, message, tmp_path):
    with pytest.raises(UserError) as error:
        spec_of(ExampleTrack(), tmp_path, **raw)
    assert str(error.value) == message


def finished_grid(jobs, accuracy, status="ok") -> dict[str, Record]:
    return {j.key: Record(j.key, "example", j.position, dict(j.labels), status, {"val_accuracy": accuracy[j.labels["weight_decay"]]}) for j in jobs}


def test_plan_adds_a_refinement_round_only_after_the_grid_is_ok(tmp_path):
    track = ExampleTrack()
    spec = spec_of(track, tmp_path, weight_decays=[1.0, 0.01, 0.1, 0.001])
    grid = track.plan(spec, {})
    assert [j.labels["weight_decay"] for j in grid] == [0.001, 0.001, 0.01, 0.01, 0.1, 0.1, 1.0, 1.0]  # sorted by parse, a job per seed
    assert all(not j.depends_on for j in grid)
    accuracy = {0.001: 0.90, 0.01: 0.94, 0.1: 0.93, 1.0: 0.80}  # best 0.01; its better neighbour 0.1
    assert track.plan(spec, finished_grid(grid[:-1], accuracy)) == grid  # not all stored: no second round yet
    assert track.plan(spec, finished_grid(grid, accuracy, status="failed")) == grid  # a failed grid job: never
    finished = finished_grid(grid, accuracy)
    planned = track.plan(spec, finished)
    assert planned[: len(grid)] == grid
    refined = planned[len(grid) :]
    assert [(j.labels["weight_decay"], j.labels["seed"], j.labels["stage"]) for j in refined] == [(0.0316228, 0, "refined"), (0.0316228, 1, "refined")]
    by_label = {(j.labels["weight_decay"], j.labels["seed"]): j.key for j in grid}
    assert [j.depends_on for j in refined] == [(by_label[0.01, s], by_label[0.1, s]) for s in (0, 1)]
    assert [j.position for j in planned] == list(range(len(planned)))
    assert track.plan(spec, {**finished, "other": Record("other", "example", 99)}) == planned  # deterministic: a resume replans the same keys
    assert len({j.key for j in planned}) == len(planned)


@pytest.fixture
def one_thread():
    """Torch on one thread for the test (tiny ops: spinning OpenMP threads only cost time on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
def test_a_refinement_job_reads_what_its_dependencies_measured(tmp_path):
    track = ExampleTrack()
    spec = spec_of(track, tmp_path, steps=50)
    grid = track.plan(spec, {})
    accuracy = dict.fromkeys(DEFAULT_DECAYS, 0.5)
    job = track.plan(spec, finished_grid(grid, accuracy))[len(grid)]
    dependencies = {key: Dependency(key, "ok", {"val_accuracy": 0.5}) for key in job.depends_on}
    result = track.run(Task("example", job, spec, dependencies), Cache())
    assert result.status == "ok" and len(result.outcomes) == result.metrics["n"] == 360
    assert result.metrics["val_gain"] == pytest.approx(result.metrics["val_accuracy"] - 0.5)
    assert ("refinement-won" in result.flags) == (result.metrics["val_gain"] > 0)
    assert all(math.isfinite(result.metrics[m]) for m in track.metrics)


def test_the_test_hook_resolves_its_path_against_the_spec_folder(tmp_path):
    assert spec_of(ExampleTrack(), tmp_path, die_once="marker").die_once == str(tmp_path.resolve() / "marker")
    assert spec_of(ExampleTrack(), tmp_path).die_once is None
