"""The executor contract: submit picklable tasks, wait for finished ones."""

from __future__ import annotations

from abc import ABC, abstractmethod

from bench.tracks import JobResult, Task


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
