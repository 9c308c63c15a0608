"""A tiny track for the Ray executor's tests, importable by Ray's worker processes (a test module is not).

Its one job kind squares ``payload["x"]`` and adds a ``torch.rand`` draw (so
the seed ``execute`` derives from the job key shows), after doing what the
payload asks: kill its own process once (``crash_once``: a marker file),
always (``crash_always``), or raise (``raise``). Provenance says where it
ran: process id, the cache object's id and ``BENCH_CACHE``.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.tracks import Job, JobResult, Task, Track


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
