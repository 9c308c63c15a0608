"""The NAS track through ``bench run``: NAS-Bench-Graph read offline, the live cells table, kill and resume, the gate, bad input."""

from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path

import pytest

from bench.cli import main
from bench.store import Store
from tests.bench.test_resume import kill_after

NBG = """
track = "nas"
seeds = 2
budgets = [10, 30]
strategies = ["random", "evolution", "reinforce"]
executor = "serial"

[[spaces]]
name = "nas-bench-graph"
dataset = "citeseer"
"""

CELLS = """
track = "nas"
seeds = 2
budgets = [2, 4]
strategies = ["random", "evolution"]
objectives = ["accuracy", "robust", { accuracy = 0.5, robust = 0.5, max_params = 1000 }]
executor = "serial"
training = { epochs = 2, lr = 0.003 }

[[spaces]]
name = "cells"
blocks = [0, 1]
widths = [4]
kernels = [3]
activations = ["relu", "tanh"]
skip = [false]
pooling = ["max"]
attack_steps = 3
"""


def run(spec: Path, out: Path, *args: str) -> int:
    return main(["run", "--config", str(spec), "--out", str(out), "-q", *args])


def records(run_dir: Path) -> list:
    with Store(run_dir / "results.db", read_only=True) as store:
        return store.records()


def cells(run_dir: Path, capsys) -> list[dict]:
    capsys.readouterr()
    assert main(["report", str(run_dir), "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)["cells"]


def without_timing(found: list[dict]) -> list[dict]:
    return [{**c, "seconds": None, "metrics": {k: v for k, v in c["metrics"].items() if k not in ("timing", "asks")}} for c in found]


@pytest.fixture(scope="module")
def nbg(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("nbg")
    (folder / "spec.toml").write_text(NBG)
    assert run(folder / "spec.toml", folder / "run") == 0
    return folder


def test_nas_bench_graph_is_read_offline_and_its_best_is_the_table_maximum(nbg, capsys):
    from nas_bench_graph import light_read

    table = light_read("citeseer")  # the package's own loader (an unrestricted unpickler), for reference only
    best = max(row["valid_perf"] for row in table.values())
    optimum = next(r for r in records(nbg / "run") if r.labels["role"] == "optimum")
    assert optimum.metrics["value"] == pytest.approx(best, abs=1e-12)
    assert optimum.metrics["n_archs"] == len(table) == 26206
    best_key = int(optimum.metrics["arch_key"])
    assert table[best_key]["valid_perf"] == pytest.approx(best, abs=1e-12)
    assert optimum.metrics["test_accuracy"] == pytest.approx(table[best_key]["perf"], abs=1e-12)
    exhaustive = next(c for c in cells(nbg / "run", capsys) if c["role"] == "optimum")
    assert exhaustive["metrics"]["best_value"] == pytest.approx(best, abs=1e-12)
    for record in records(nbg / "run"):  # every evaluation is the table's row of its architecture
        if record.labels["role"] == "search":
            assert record.metrics["val_accuracy"] == pytest.approx(table[int(record.metrics["arch_key"])]["valid_perf"], abs=1e-12)


def test_a_replaced_table_file_is_refused_not_run():
    from bench.tracks.nas.spaces.nas_bench_graph import _TableUnpickler

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with pytest.raises(pickle.UnpicklingError, match="refuses to load"):
        _TableUnpickler(io.BytesIO(pickle.dumps({0: Payload()}))).load()


def test_every_search_spends_exactly_its_budget_in_distinct_architectures(nbg):
    found = [r for r in records(nbg / "run") if r.labels["role"] == "search"]
    searches: dict[tuple, list] = {}
    for record in found:
        searches.setdefault((record.labels["strategy"], record.labels["seed"]), []).append(record)
    assert len(searches) == 3 * 2
    for members in searches.values():
        assert sorted(r.labels["step"] for r in members) == list(range(1, 31))
        assert len({r.metrics["arch_key"] for r in members}) == 30
        assert max(r.metrics["asks"] for r in members) >= 30  # repeats were asked, and cost nothing


def test_the_leaderboard_compares_at_each_budget_against_random_search(nbg, capsys):
    found = cells(nbg / "run", capsys)
    searches = [c for c in found if c["role"] == "search"]
    assert {(c["strategy"], c["budget"]) for c in searches} == {(s, b) for s in ("random", "evolution", "reinforce") for b in (10, 30)}
    by_seed: dict[tuple, list[float]] = {}
    for record in records(nbg / "run"):
        if record.labels["role"] == "search" and record.labels["step"] <= 10:
            by_seed.setdefault((record.labels["strategy"], record.labels["seed"]), []).append(record.metrics["value"])
    evolution = next(c for c in searches if c["strategy"] == "evolution" and c["budget"] == 10)
    assert evolution["metrics"]["best_value"] == pytest.approx((max(by_seed[("evolution", 0)]) + max(by_seed[("evolution", 1)])) / 2)
    assert evolution["metrics"]["verdict"].endswith("random search")
    assert next(c for c in searches if c["strategy"] == "random")["metrics"]["verdict"] == "reference"
    optimum = next(c for c in found if c["role"] == "optimum")["metrics"]["best_value"]
    assert evolution["metrics"]["regret"] == pytest.approx(optimum - evolution["metrics"]["best_value"], abs=1e-6)  # the JSON report rounds
    page = (nbg / "run" / "leaderboard.html").read_text()
    assert "Best found against evaluations" in page and 'id="gallery"' not in page  # a track without a gallery gets no empty section
    assert (nbg / "run" / "nas-best-so-far-nas-bench-graph-citeseer-accuracy.png").is_file()


def test_processes_give_the_serial_run(nbg, tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(NBG.replace('executor = "serial"', 'executor = "processes"'))
    assert run(spec, tmp_path / "run") == 0
    mine = {r.key: r.metrics["value"] for r in records(tmp_path / "run")}
    serial = {r.key: r.metrics["value"] for r in records(nbg / "run")}
    assert mine == serial


@pytest.mark.slow
def test_kill_and_resume_give_the_same_leaderboard(nbg, tmp_path, capsys):
    killed = tmp_path / "killed"
    stored = kill_after(nbg / "spec.toml", killed, 60)
    assert 1 <= stored < 181, f"the kill should land mid-run, {stored} jobs were stored"
    assert run(nbg / "spec.toml", killed) == 0
    assert "already done" in capsys.readouterr().err
    assert {r.key for r in records(killed)} == {r.key for r in records(nbg / "run")}
    assert without_timing(cells(killed, capsys)) == without_timing(cells(nbg / "run", capsys))


def test_the_gate_holds_the_track_to_its_baseline(nbg, tmp_path, capsys):
    baseline = tmp_path / "baseline.json"
    assert main(["baseline", str(nbg / "run"), "-o", str(baseline)]) == 0
    check = ["check", "--baseline", str(baseline), "--config", str(nbg / "spec.toml"), "--out", str(nbg / "run"), "-q"]
    assert main(check) == 0
    assert capsys.readouterr().out.startswith("bench check passed: ")
    data = json.loads(baseline.read_text())
    row = next(r for r in data["rows"] if r.get("strategy") == "evolution" and r.get("budget") == 30)
    row["metrics"]["best_value"] += 0.05  # held to a better search than it runs
    baseline.write_text(json.dumps(data))
    assert main(check) == 1
    assert "best_value" in capsys.readouterr().out


def test_the_cells_space_trains_every_architecture_once_and_searches_read_the_table(tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text(CELLS)
    assert run(spec, tmp_path / "run") == 0
    found = records(tmp_path / "run")
    table = {r.labels["arch"]: r.metrics for r in found if r.labels["role"] == "table"}
    assert set(table) == {"mlp-w4-relu", "mlp-w4-tanh", "b1-w4-k3-relu-max", "b1-w4-k3-tanh-max"}  # the MLP's kernel, skip, pooling collapse
    for metrics in table.values():
        assert 0 <= metrics["robust_val_accuracy"] <= 1 and 0 <= metrics["val_accuracy"] <= 1 and metrics["params"] > 0
    for record in found:
        if record.labels["role"] == "search" and record.labels["objective"] == "robust accuracy":
            assert record.metrics["value"] == table[record.metrics["arch_key"]]["robust_val_accuracy"]
    constrained = [r for r in found if r.labels["role"] == "optimum" and "params" in r.labels["objective"]][0]
    feasible = {arch: m for arch, m in table.items() if m["params"] <= 1000}
    assert 0 < len(feasible) < len(table), {a: m["params"] for a, m in table.items()}
    best = max(feasible, key=lambda a: 0.5 * feasible[a]["val_accuracy"] + 0.5 * feasible[a]["robust_val_accuracy"])
    assert constrained.metrics["arch_key"] == best and constrained.metrics["n_feasible"] == len(feasible)
    pareto = [c for c in cells(tmp_path / "run", capsys) if c["role"] == "pareto"]
    assert len(pareto) == 1 and len(pareto[0]["series"]["points"]) == 4

    assert run(spec, tmp_path / "again") == 0  # another folder: every architecture comes from the model cache
    assert all(r.metrics["cached"] for r in records(tmp_path / "again") if r.labels["role"] == "table")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('"evolution", "reinforce"', '"evolutoin", "reinforce"'), "spec.strategies[1]: unknown strategy 'evolutoin'; did you mean 'evolution'?"),
        (('"reinforce"]', '{ name = "reinforce", lr = -1 }]'), "spec.strategies[2].lr: must be a number > 0, got -1"),
        (('dataset = "citeseer"', 'dataset = "citeser"'), "spec.spaces[0].dataset: must be one of cora, citeseer"),
        (("budgets = [10, 30]", "budgets = [10, 0]"), "spec.budgets: must list integers >= 1 (distinct evaluations), got 0"),
        (('executor = "serial"', 'objectives = ["robust"]'), "spec.objectives[0]: the nas-bench-graph space has no robust results"),
        (('executor = "serial"', "objectives = [{ accuracy = 1, max_param = 5 }]"), "spec.objectives[0].max_param: unknown field"),
        (('name = "nas-bench-graph"', 'name = "nas-bench-grahp"'), "did you mean 'nas-bench-graph'?"),
        (('name = "nas-bench-graph"\ndataset = "citeseer"', 'name = "table"\npath = "missing.csv"'), "missing.csv' cannot be read (No such file"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, change, message):
    (tmp_path / "spec.toml").write_text(NBG.replace(*change, 1))
    assert run(tmp_path / "spec.toml", tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "run" / "results.db").exists()


def test_the_nas_registries_are_listed(capsys):
    for kind, name in (("strategies", "reinforce"), ("search-spaces", "nas-bench-graph")):
        assert main(["list", kind]) == 0
        assert name in capsys.readouterr().out
    assert main(["list", "strategies", "reinforce"]) == 0
    out = capsys.readouterr().out
    assert "baseline_decay" in out and "sizes" not in out
