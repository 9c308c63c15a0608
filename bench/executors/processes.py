"""Tasks spread over worker processes of this machine: every core busy without a cluster.

``[executor] name = "processes"`` keeps up to ``workers`` processes (default:
the CPUs over ``num_cpus``), each running tasks through
``bench.worker.execute`` with ``num_cpus`` torch threads and a ``Cache`` of
its own that lasts across its tasks. Each worker has its own pipe: the driver
sends it one task, waits on every pipe and every process at once
(``multiprocessing.connection.wait``), and reads the result back. A worker
that dies (killed, out of memory) fails only the job it ran; it is replaced
for the jobs still to come, and ``wait`` never raises. Processes are started
with ``spawn`` (a forked child of a process that ran OpenMP can hang) and get
the driver's ``sys.path`` as it was when they started. The driver alone
writes the store, as with every executor, so results equal the serial
executor's: each job is a pure function of its task.

On a machine with several GPUs each worker is pinned to one of them
(``CUDA_VISIBLE_DEVICES`` set before it touches CUDA; the GPU with the fewest
workers so far): ``workers = <number of GPUs>`` gives one worker per GPU,
more workers share them.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import sys
import time
from collections import deque
from typing import Any

from bench.errors import one_line
from bench.executors.base import Executor, track_path
from bench.tracks import TRACKS, JobResult, Task
from bench.worker import Cache, execute

log = logging.getLogger(__name__)

POLL_S = 1.0  # how long one wait blocks, so that the driver stays responsive to Ctrl-C


def _serve(conn: Any, path: list[str], threads: int, gpu: str | None = None) -> None:
    """A worker: the driver's import path and torch threads, one Cache for its life; a task in, a result out, until the pipe closes."""
    if gpu is not None:  # before CUDA is initialized: this worker's "cuda" is that GPU
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    import torch

    sys.path[:] = path
    torch.set_num_threads(threads)
    cache = Cache()
    while True:
        try:
            task, track = conn.recv()
        except (EOFError, OSError):
            return
        if track is not None and task.track not in TRACKS:
            TRACKS.register(task.track, track)
        result = execute(task, cache)
        try:
            conn.send(result)
        except Exception as error:  # a result that does not pickle: the job's failure
            conn.send(JobResult(status="failed", error=f"its result could not be sent back: {one_line(error)}", seconds=result.seconds))


class _Worker:
    """One worker process, its end of the pipe, and the task it runs (None: idle)."""

    def __init__(self, context: Any, path: list[str], threads: int, gpu: str | None = None) -> None:
        self.conn, child = context.Pipe()
        self.gpu = gpu
        self.process = context.Process(target=_serve, args=(child, path, threads, gpu), daemon=True)
        self.process.start()
        child.close()
        self.task: tuple[Task, float] | None = None

    def stop(self) -> None:
        """An idle worker ends itself when its pipe closes (its interpreter shuts down cleanly, releasing what it holds,
        e.g. semaphores, which a terminated one leaks); one mid-job is terminated."""
        with contextlib.suppress(Exception):
            self.conn.close()
        with contextlib.suppress(Exception):
            if self.task is None:
                self.process.join(timeout=5)
            if self.process.is_alive():
                self.process.terminate()
                self.process.join(timeout=5)


class ProcessesExecutor(Executor):
    """Runs each task in one of ``slots`` worker processes of this machine, started as tasks come."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.threads = max(1, int(spec.num_cpus))
        self.slots = int(spec.workers) if spec.workers is not None else max(1, (os.cpu_count() or 1) // self.threads)
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        self._queue: deque[tuple[Task, float]] = deque()
        self._finished: list[tuple[Task, JobResult]] = []
        self._tracks: dict[str, str | None] = {}
        self._gpus = visible_gpus()

    def submit(self, task: Task) -> None:
        if task.track not in self._tracks:
            self._tracks[task.track] = track_path(task.track)
        self._queue.append((task, time.perf_counter()))
        self._dispatch()

    def _dispatch(self) -> None:
        while self._queue:
            idle = next((w for w in self._workers if w.task is None), None)
            if idle is None and len(self._workers) < self.slots:
                idle = _Worker(self._context, list(sys.path), self.threads, self._next_gpu())
                self._workers.append(idle)
            if idle is None:
                return
            task, submitted = self._queue.popleft()
            try:
                idle.conn.send((task, self._tracks[task.track]))
            except Exception as error:  # a task that does not pickle
                self._finished.append((task, JobResult(status="failed", error=f"could not run it in a worker process: {one_line(error)}")))
                continue
            idle.task = (task, submitted)

    def _next_gpu(self) -> str | None:
        """The GPU with the fewest live workers (None on a machine with fewer than two)."""
        if len(self._gpus) < 2:
            return None
        return min(self._gpus, key=lambda gpu: sum(w.gpu == gpu for w in self._workers))

    def wait(self) -> list[tuple[Task, JobResult]]:
        busy = [w for w in self._workers if w.task is not None]
        if not busy and not self._finished:
            raise RuntimeError("wait() with no task submitted")
        while busy and not self._finished:
            ready = set(multiprocessing.connection.wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=POLL_S))
            for worker in busy:
                if worker.conn not in ready and worker.process.sentinel not in ready:
                    continue
                task, submitted = worker.task
                worker.task = None
                try:
                    result = worker.conn.recv()
                except (EOFError, OSError):  # died mid-job: this job fails, the worker is replaced
                    worker.process.join(timeout=5)
                    message = f"the worker process running it died (exit code {worker.process.exitcode})"
                    log.warning("job %s failed: %s", dict(task.job.labels), message)
                    result = JobResult(status="failed", error=message, seconds=time.perf_counter() - submitted)
                    worker.stop()
                    self._workers.remove(worker)
                self._finished.append((task, result))
            busy = [w for w in self._workers if w.task is not None]
        finished, self._finished = self._finished, []
        self._dispatch()
        return finished

    def close(self) -> None:
        """Stop every worker (one mid-job is terminated: its job is not stored and runs again on resume)."""
        workers, self._workers = self._workers, []
        self._queue.clear()
        self._finished.clear()
        for worker in workers:
            worker.stop()


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` names them (indices or UUIDs); none without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return []
    named = os.environ.get("CUDA_VISIBLE_DEVICES")
    if named:
        return [name.strip() for name in named.split(",") if name.strip()][: torch.cuda.device_count()]
    return [str(i) for i in range(torch.cuda.device_count())]
