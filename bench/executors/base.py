"""The executor contract: submit picklable tasks, wait for finished ones."""

from __future__ import annotations

from abc import ABC, abstractmethod

from bench.errors import UserError
from bench.tracks import TRACKS, JobResult, Task


class Executor(ABC):
    """Runs tasks; ``slots`` is how many may be in flight at once."""

    slots: int = 1

    @abstractmethod
    def submit(self, task: Task) -> None: ...

    @abstractmethod
    def wait(self) -> list[tuple[Task, JobResult]]:
        """Block until at least one submitted task finished; return every finished one (a failure is a failed result)."""

    def close(self) -> None:
        """Release workers; the executor is not used afterwards."""
        return None

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def track_path(name: str) -> str | None:
    """``module:qualname`` of the track registered as ``name`` when a worker may not know it (defined outside ``bench``), else None."""
    try:
        target = TRACKS.get(name)
    except UserError:
        return None  # the worker reports the unknown track as the job's failure
    module, qualname = getattr(target, "__module__", None), getattr(target, "__qualname__", None)
    if not module or not qualname or "<locals>" in qualname or module == "bench" or module.startswith("bench."):
        return None
    return f"{module}:{qualname}"
