"""A tiny track for the Ray executor's tests, importable by Ray's worker processes (a test module is not).

Its one job kind squares ``payload["x"]`` and adds a ``torch.rand`` draw (so
the seed ``execute`` derives from the job key shows), after doing what the
payload asks: kill its own process once (``crash_once``: a marker file),
always (``crash_always``), or raise (``raise``). Provenance says where it
ran: process id, the cache object's id and ``BENCH_CACHE``. ``make_task`` and
``run_all`` drive an executor the way the runner does (the executor tests share them).
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.tracks import Job, JobResult, Task, Track
from bench.training import stable_hash


@dataclass(frozen=True)
class TinySpec:
    """What ``bench.worker.execute`` reads from a task's spec."""

    device: str = "cpu"
    seed: int = 0


def kill_self() -> None:
    """Die the way an out-of-memory kill does: no exception, no cleanup."""
    os.kill(os.getpid(), signal.SIGKILL)


class RayTestTrack(Track):
    """Jobs are given by the tests; ``run`` is the only part used."""

    name = "ray-test"
    dimensions = ("x",)

    def default_spec(self, user: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return dict(user or {})

    def parse(self, raw: Mapping[str, Any], *, base_dir: Path) -> Any:
        return TinySpec()

    def plan(self, spec: Any, finished: Mapping[str, Any]) -> list[Job]:
        return []

    def run(self, task: Task, cache: Any) -> JobResult:
        payload = task.job.payload
        if "crash_once" in payload and not Path(payload["crash_once"]).exists():
            Path(payload["crash_once"]).touch()
            kill_self()
        if payload.get("crash_always"):
            kill_self()
        if "raise" in payload:
            raise ValueError(payload["raise"])
        x = payload["x"]
        provenance = {"pid": os.getpid(), "cache": id(cache), "bench_cache": os.environ.get("BENCH_CACHE")}
        return JobResult(metrics={"value": x * x + torch.rand(1).item()}, provenance=provenance)

    def cells(self, records: Sequence[Any], outcomes: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
        return []


def make_task(track: str, position: int, **payload: Any) -> Task:
    """A test task of ``track``; its key (hence its seed) follows from its position and payload."""
    key = stable_hash([track, position, payload], length=24)
    return Task(track, Job(key=key, position=position, labels={"x": payload.get("x")}, payload=payload), TinySpec())


def run_all(executor: Any, tasks: Sequence[Task]) -> dict[str, JobResult]:
    """Drive ``tasks`` as the runner does (at most ``slots`` in flight); every task must come back exactly once."""
    waiting, in_flight, returned = list(tasks), 0, []
    while waiting or in_flight:
        while waiting and in_flight < executor.slots:
            executor.submit(waiting.pop(0))
            in_flight += 1
        finished = executor.wait()
        assert finished, "wait() returned nothing"
        in_flight -= len(finished)
        returned.extend(finished)
    assert Counter(t.job.key for t, _ in returned) == Counter(t.job.key for t in tasks), "a task was lost or came back twice"
    return {t.job.key: result for t, result in returned}
