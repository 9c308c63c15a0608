"""The default executor: every task in this process, one at a time, in the order submitted."""

from __future__ import annotations

from collections import deque

from bench.executors.base import Executor
from bench.tracks import JobResult, Task
from bench.worker import Cache, execute


class SerialExecutor(Executor):
    slots = 1

    def __init__(self) -> None:
        self.cache = Cache()
        self._queue: deque[Task] = deque()

    def submit(self, task: Task) -> None:
        self._queue.append(task)

    def wait(self) -> list[tuple[Task, JobResult]]:
        task = self._queue.popleft()
        return [(task, execute(task, self.cache))]
