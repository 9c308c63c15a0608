"""The driver: plan rounds until nothing is new, schedule by depends_on, fail dependants of a failed job, resume."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench import fields, runner
from bench import spec as specs
from bench.runner import job_key
from bench.tracks import HIGHER, TRACKS, Job, JobResult, Metric, Task, Track

ORDER: list[str] = []  # the order jobs ran in (this process: the serial executor)


@dataclass(frozen=True)
class ChainSection:
    length: int
    fail: tuple[int, ...]
    dangling: bool


class ChainTrack(Track):
    """Job i depends on job i + 1 (planned after it); a later round adds a job after the chain's values are stored."""

    name = "runner-chain"
    fields = ("length", "fail", "dangling")
    dimensions = ("step",)
    metrics = {"value": Metric(HIGHER)}

    def default_spec(self, user: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return {"length": 3}

    def parse(self, raw: Mapping[str, Any], *, base_dir: Path) -> ChainSection:
        return ChainSection(fields.integer(raw, "length", 3, 1), tuple(raw.get("fail", ())), bool(raw.get("dangling", False)))

    def plan(self, spec: Any, finished: Mapping[str, Any]) -> list[Job]:
        n = spec.length
        keys = [job_key(self.name, {"step": i, "n": n}) for i in range(n)]
        jobs = [Job(keys[i], i, {"step": i}, {"step": i}, depends_on=(keys[i + 1],) if i + 1 < n else ()) for i in range(n)]
        if spec.dangling:
            jobs.append(Job(job_key(self.name, {"dangling": True}), n, {"step": "dangling"}, {"step": -1}, depends_on=("0" * 24,)))
        if all(k in finished and finished[k].status == "ok" for k in keys):  # round two: once the chain is stored whole, as a search would
            total = sum(finished[k].value or 0 for k in keys)
            jobs.append(Job(job_key(self.name, {"after": total}), n + 1, {"step": f"after-{total}"}, {"step": -2}, depends_on=(keys[0],)))
        return jobs

    def run(self, task: Task, cache: Any) -> JobResult:
        step = task.job.payload["step"]
        ORDER.append(str(task.job.labels["step"]))
        if step in task.spec.fail:
            raise RuntimeError(f"step {step} broke")
        below = sum(d.metrics["value"] for d in task.dependencies.values())
        return JobResult(metrics={"value": below + 1})

    def cells(self, records, outcomes):
        return [{"track": self.name, "step": r.step, "status": r.status, "metrics": r.metrics, "flags": r.flags, "key": r.key} for r in records]


@pytest.fixture(autouse=True)
def chain_track():
    if "runner-chain" not in TRACKS:
        TRACKS.register("runner-chain", ChainTrack)
    ORDER.clear()


def chain_spec(**fields):
    return specs.build({"track": "runner-chain", "length": 3, **fields})


def stored(out: Path) -> dict[str, tuple[str, Any, Any]]:
    with sqlite3.connect(out / "results.db") as db:
        rows = db.execute("SELECT labels, status, metrics, error FROM jobs ORDER BY position").fetchall()
    return {str(json.loads(labels)["step"]): (status, json.loads(metrics).get("value"), error) for labels, status, metrics, error in rows}


def test_a_job_runs_only_after_what_it_depends_on_and_later_rounds_are_planned(tmp_path):
    summary = runner.run(chain_spec(), tmp_path)
    assert ORDER == ["2", "1", "0", "after-6"]  # dependencies first, whatever the positions; then the second round
    assert stored(tmp_path) == {"0": ("ok", 3, None), "1": ("ok", 2, None), "2": ("ok", 1, None), "after-6": ("ok", 4, None)}
    assert (summary.planned, summary.ran, summary.skipped) == (4, 4, 0)
    ORDER.clear()
    again = runner.run(chain_spec(), tmp_path)  # resume replans the same rounds from the store and runs nothing
    assert ORDER == [] and (again.planned, again.ran, again.skipped) == (4, 0, 4)


def test_a_failed_dependency_fails_its_dependants_with_the_reason_and_they_never_run(tmp_path):
    summary = runner.run(chain_spec(fail=[1]), tmp_path)
    assert ORDER == ["2", "1"]
    found = stored(tmp_path)
    assert found["1"] == ("failed", None, "RuntimeError: step 1 broke")
    status, value, error = found["0"]
    assert status == "failed" and value is None and error.startswith("not run: the job it depends on (1) failed: RuntimeError: step 1 broke")
    assert not any(step.startswith("after") for step in found)  # the next round needs the whole chain
    assert [r.step for r in summary.failed] == [1, 0]


def test_a_dependency_the_track_never_planned_fails_that_job_only(tmp_path):
    runner.run(chain_spec(dangling=True), tmp_path)
    found = stored(tmp_path)
    assert found["dangling"][0] == "failed" and "never planned" in found["dangling"][2]
    assert found["0"][0] == "ok" and "dangling" not in ORDER


def test_a_cascade_step_after_a_crashed_attack_fails_instead_of_running_on_all_points(tmp_path):
    adversarial = TRACKS.create("adversarial")
    raw = {
        "models": [{"name": "small-cnn"}],
        "attacks": [{"name": "fgsm", "eps": 0.1}, {"name": "tests.helpers:RaisingAttack", "eps": 0.1}, {"name": "pgd", "eps": 0.1, "steps": 3}],
        "n_examples": 20,
        "checks": False,
        "training": {"epochs": 1},
    }
    runner.run(specs.build(specs.merge(adversarial.default_spec(raw), raw, {})), tmp_path)
    with sqlite3.connect(tmp_path / "results.db") as db:
        rows = db.execute("SELECT attack, status, error, n FROM adversarial_jobs ORDER BY position").fetchall()
    assert [(attack, status) for attack, status, _, _ in rows] == [("fgsm", "ok"), ("tests.helpers:RaisingAttack", "failed"), ("pgd", "failed")]
    assert "this attack always crashes" in rows[1][2]
    assert rows[2][2].startswith("not run: the job it depends on") and "this attack always crashes" in rows[2][2] and rows[2][3] is None


def test_with_several_workers_the_longest_chains_of_dependants_go_first():
    from bench.runner import _chain_lengths

    jobs = [
        Job("a", 0, {}),
        Job("b", 1, {}, depends_on=("a",)),
        Job("c", 2, {}, depends_on=("b",)),
        Job("d", 3, {}),
        Job("e", 4, {}, depends_on=("a", "d")),
        Job("f", 5, {}, depends_on=("g",)),  # depends on a job planned after it
        Job("g", 6, {}),
    ]
    assert _chain_lengths(jobs) == {"a": 3, "b": 2, "c": 1, "d": 2, "e": 1, "f": 1, "g": 2}
