"""Tasks spread over worker processes of this machine: every core busy without a cluster.

``[executor] name = "processes"`` starts ``workers`` processes (default: the
CPUs over ``num_cpus``), each running tasks through ``bench.worker.execute``
with ``num_cpus`` torch threads and a ``Cache`` of its own that lasts across
its tasks. Processes are started with ``spawn`` (a forked child of a process
that ran OpenMP can hang) and get the driver's ``sys.path`` and the
environment. A worker that dies fails the task it ran, and the pool is made
anew for the tasks still to come; ``wait`` never raises. The driver alone
writes the store, as with every executor, so results equal the serial
executor's: each job is a pure function of its task.
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import logging
import multiprocessing
import os
import sys
import time
from typing import Any

from bench.errors import one_line
from bench.executors.base import Executor, track_path
from bench.tracks import TRACKS, JobResult, Task
from bench.worker import Cache, execute

log = logging.getLogger(__name__)

POLL_S = 1.0  # how long one wait blocks, so that the driver stays responsive to Ctrl-C

# The memo of the worker process this module is imported in, made by its initializer (the driver never fills it).
_CACHE: Cache | None = None


def _start_worker(path: list[str], threads: int) -> None:
    """A new worker: the driver's import path, its torch threads, an empty memo."""
    import torch

    global _CACHE
    sys.path[:] = path
    torch.set_num_threads(threads)
    _CACHE = Cache()


def _run(task: Task, track: str | None) -> JobResult:
    if track is not None and task.track not in TRACKS:
        TRACKS.register(task.track, track)
    return execute(task, _CACHE if _CACHE is not None else Cache())


class ProcessesExecutor(Executor):
    """Runs each task in one of ``slots`` worker processes of this machine."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.threads = max(1, int(spec.num_cpus))
        self.slots = int(spec.workers) if spec.workers is not None else max(1, (os.cpu_count() or 1) // self.threads)
        self._pool: futures.ProcessPoolExecutor | None = None
        self._in_flight: dict[futures.Future, tuple[Task, float]] = {}
        self._tracks: dict[str, str | None] = {}

    def _workers(self) -> futures.ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context("spawn")
            self._pool = futures.ProcessPoolExecutor(self.slots, mp_context=context, initializer=_start_worker, initargs=(list(sys.path), self.threads))
            log.info("processes: %d workers with %d torch thread(s) each", self.slots, self.threads)
        return self._pool

    def submit(self, task: Task) -> None:
        if task.track not in self._tracks:
            self._tracks[task.track] = track_path(task.track)
        future = self._workers().submit(_run, task, self._tracks[task.track])
        self._in_flight[future] = (task, time.perf_counter())

    def wait(self) -> list[tuple[Task, JobResult]]:
        if not self._in_flight:
            raise RuntimeError("wait() with no task submitted")
        done: set[futures.Future] = set()
        while not done:
            done, _ = futures.wait(self._in_flight, timeout=POLL_S, return_when=futures.FIRST_COMPLETED)
        finished = []
        for future in done:
            task, submitted = self._in_flight.pop(future)
            finished.append((task, self._result(future, task, submitted)))
        return finished

    def _result(self, future: futures.Future, task: Task, submitted: float) -> JobResult:
        try:
            return future.result()
        except Exception as error:  # the worker died (killed, out of memory) or the task did not pickle: this job fails, the run goes on
            if isinstance(error, futures.process.BrokenProcessPool):
                self._pool = None  # broken for good: the next submit starts a new one
                message = f"the worker process running it died: {one_line(error)}"
            else:
                message = f"could not run it in a worker process: {one_line(error)}"
            log.warning("job %s failed: %s", dict(task.job.labels), message)
            return JobResult(status="failed", error=message, seconds=time.perf_counter() - submitted)

    def close(self) -> None:
        """Cancel what waits, stop the workers (a worker mid-job is terminated: its job is not stored and runs again on resume)."""
        pool, self._pool = self._pool, None
        self._in_flight.clear()
        if pool is None:
            return
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            with contextlib.suppress(Exception):
                process.terminate()
