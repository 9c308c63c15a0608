"""Jobs a track marks ``local`` run in the driver, and the track plans again after them: a search of table lookups advances
while a worker trains (the NAS track's searches and its exhaustive table)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.executors.base import Executor
from bench.runner import job_key, run
from bench.spec import build
from bench.store import Store
from bench.tracks import TRACKS, Job, JobResult, Task, Track
from bench.worker import Cache, execute

LOCAL_RUNS: list[int] = []  # the step of every local job run, in order


@dataclass(frozen=True)
class ChainSection:
    steps: int = 5


class ChainTrack(Track):
    """One slow job for a worker, and a chain of local steps: step i + 1 is planned once step i is stored."""

    name = "local-test"
    fields = ("steps",)
    dimensions = ("kind", "i")

    def default_spec(self, user: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return {"dataset": "digits", "steps": 5}

    def parse(self, raw: Mapping[str, Any], *, base_dir: Path) -> ChainSection:
        return ChainSection(raw.get("steps", 5))

    def plan(self, spec: Any, finished: Mapping[str, Any]) -> list[Job]:
        jobs = [Job(job_key(self.name, {"slow": 0}), 0, {"kind": "slow", "i": 0})]
        for i in range(spec.steps):
            jobs.append(Job(job_key(self.name, {"local": i}), i + 1, {"kind": "local", "i": i}, local=True))
            if jobs[-1].key not in finished:
                break
        return jobs

    def run(self, task: Task, cache: Any) -> JobResult:
        if task.job.labels["kind"] == "local":
            LOCAL_RUNS.append(task.job.labels["i"])
        return JobResult(metrics={"pid": os.getpid()})

    def cells(self, records: Sequence[Any], outcomes: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
        return []


class Recording(Executor):
    """One slot; records what it was given and how many local steps had run when it was first waited on."""

    slots = 1

    def __init__(self) -> None:
        self.submitted: list[str] = []
        self.local_runs_at_wait: list[int] = []
        self.queue: list[Task] = []
        self.cache = Cache()

    def submit(self, task: Task) -> None:
        self.submitted.append(task.job.key)
        self.queue.append(task)

    def wait(self) -> list[tuple[Task, JobResult]]:
        self.local_runs_at_wait.append(len(LOCAL_RUNS))
        task = self.queue.pop(0)
        return [(task, execute(task, self.cache))]


@pytest.fixture
def chain_track():
    TRACKS.register("local-test", ChainTrack, description="local jobs test track")
    LOCAL_RUNS.clear()
    try:
        yield
    finally:
        TRACKS._entries.pop("local-test", None)


def test_local_jobs_run_in_the_driver_and_advance_while_a_worker_is_busy(chain_track, tmp_path):
    spec = build({"track": "local-test", "steps": 5}, base_dir=tmp_path)
    executor = Recording()
    summary = run(spec, tmp_path / "run", executor=executor)
    assert summary.ran == 6 and not summary.failed
    assert executor.submitted == [job_key("local-test", {"slow": 0})]  # a local job is never shipped
    assert LOCAL_RUNS == [0, 1, 2, 3, 4]  # the whole chain, planned step by step ...
    assert executor.local_runs_at_wait[0] == 5  # ... before the runner first waited on the worker's job
    with Store(tmp_path / "run" / "results.db", read_only=True) as store:
        pids = {r.labels["kind"]: r.metrics["pid"] for r in store.records()}
    assert pids["local"] == os.getpid()

    LOCAL_RUNS.clear()
    assert run(spec, tmp_path / "run", executor=Recording()).ran == 0  # resumed: nothing runs again
    assert LOCAL_RUNS == []
