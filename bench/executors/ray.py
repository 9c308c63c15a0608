"""Tasks spread over a Ray cluster: a local one started here, or the one at ``[executor] address``.

Each task is one Ray task running ``bench.worker.execute`` in a Ray worker
process, asking for ``num_cpus`` CPUs (its torch threads) and, for a job that
may use one, ``num_gpus`` GPUs. A task whose worker dies (killed, out of
memory) is tried again by Ray up to ``retries`` times; after that, or for any
other failure Ray reports, it comes back as a failed result: ``wait`` never
raises and never loses a task. The driver alone writes the store.

A local cluster gets every CPU of this machine and keeps Ray's token
authentication (Ray's default for a new local cluster: it sets
``RAY_AUTH_MODE=token`` in this process and keeps its token in
``~/.ray/auth_token``; ``RAY_AUTH_MODE=disabled`` opts out). The token is
what guards it: Ray 2.60 turns ``_node_ip_address="127.0.0.1"`` into the
host's address, and its gRPC servers listen on every interface. Its workers
get the driver's ``sys.path`` (as ``PYTHONPATH``) and the environment
variables in ``PASSED_ENV``, so a worker imports what the driver can and
reads the same caches.

Workers are reused, GPU tasks' too (``max_calls`` is left unlimited), so
that the worker's ``Cache`` lasts: on a node with several GPUs a reused
worker stays on the GPU it first initialized CUDA with.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import time
from typing import Any

import ray
import torch

from bench.errors import UserError
from bench.executors.base import Executor, track_path
from bench.tracks import TRACKS, JobResult, Task
from bench.worker import Cache, execute

log = logging.getLogger(__name__)

PASSED_ENV = ("BENCH_CACHE", "HF_HUB_OFFLINE", "OMP_NUM_THREADS")  # driver environment variables a local cluster's workers see
POLL_S = 1.0  # how long one ray.wait blocks, so that the driver stays responsive to Ctrl-C

# The only module state: the memo of the Ray worker process this module is imported in, created by its first task and
# shared by every later task of that process (the driver never fills it). A value in it is the value a job would compute.
_CACHE: Cache | None = None


def _worker_cache() -> Cache:
    """This worker process's ``Cache``, created once."""
    global _CACHE
    if _CACHE is None:
        _CACHE = Cache()
    return _CACHE


def _run(task: Task, track_path: str | None, num_cpus: float) -> JobResult:
    """The body of a Ray task (in a worker): the torch threads it asked for, the track registered if only the driver knew it, then ``execute``."""
    torch.set_num_threads(max(1, int(num_cpus)))
    if track_path is not None and task.track not in TRACKS:
        TRACKS.register(task.track, track_path)
    return execute(task, _worker_cache())


def worker_env() -> dict[str, str]:
    """What a local cluster's workers get: the driver's import path as ``PYTHONPATH`` and the variables in ``PASSED_ENV`` that are set."""
    paths: list[str] = []
    for entry in sys.path:
        path = os.path.abspath(entry or os.getcwd())
        if os.path.exists(path) and path not in paths:
            paths.append(path)
    env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def reachable(address: str, timeout: float = 3.0) -> None:
    """A ``HOST:PORT`` that nothing answers on is a ``UserError`` at once (Ray itself retries it for minutes)."""
    host, sep, port = address.rpartition(":")
    if address == "auto" or not sep:
        return
    if not port.isdigit():
        raise UserError(f"--executor ray: the address {address!r} is not 'auto' or HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as error:
        reason = error.strerror or error
        raise UserError(f"--executor ray: nothing answers at {address!r} ({reason}); start the cluster (ray start --head) or fix --address") from None


def one_line(error: BaseException) -> str:
    """``Type: first line of the message``."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def failure(error: BaseException, retries: int) -> str:
    """One line saying why Ray gave up on a task."""
    if isinstance(error, ray.exceptions.RayTaskError):  # the task itself raised (execute catches ordinary exceptions)
        return one_line(error.cause if isinstance(error.cause, BaseException) else error)
    if isinstance(error, ray.exceptions.WorkerCrashedError | ray.exceptions.OutOfMemoryError | ray.exceptions.NodeDiedError):
        tries = "once" if retries == 0 else f"{retries + 1} times (retries = {retries})"
        return f"the Ray worker running it died, {tries}: {one_line(error)}"
    return f"Ray could not run it: {one_line(error)}"


class RayExecutor(Executor):
    """Runs each task as a Ray task; ``slots`` is ``[executor] workers``, else the cluster's CPUs over ``num_cpus``."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self._connected = False  # this executor connected this process to Ray: close() disconnects (a joined cluster runs on)
        self._in_flight: dict[Any, tuple[Task, float]] = {}  # ObjectRef -> (task, when submitted)
        self._finished: list[tuple[Task, JobResult]] = []  # failures found at submit, handed out by the next wait
        self._track_paths: dict[str, str | None] = {}
        try:
            self._start()
            self.slots = self._check()
        except BaseException:
            self.close()
            raise
        self._remote = ray.remote(_run)

    def _start(self) -> None:
        if ray.is_initialized():
            log.info("ray: using the cluster this process is already connected to")
            return
        if self.spec.address is not None:
            reachable(self.spec.address)
            try:
                ray.init(address=self.spec.address, log_to_driver=False, logging_level=logging.WARNING, ignore_reinit_error=True)
                self._connected = True
            except (ConnectionError, RuntimeError, ValueError) as error:
                raise UserError(f"--executor ray: cannot join the Ray cluster at {self.spec.address!r}: {str(error).splitlines()[0]}") from None
            return
        self._connected = True
        started = time.perf_counter()
        ray.init(
            num_cpus=os.cpu_count(),
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            log_to_driver=False,
            logging_level=logging.WARNING,
            ignore_reinit_error=True,
            runtime_env={"env_vars": worker_env()},
        )
        log.info("ray: started a local cluster with %s CPUs in %.1f s", os.cpu_count(), time.perf_counter() - started)

    def _check(self) -> int:
        """The slots; a ``UserError`` for a job size the cluster can never place (its tasks would pend forever)."""
        resources = ray.cluster_resources()
        cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
        if self.spec.num_gpus > 0 and gpus < self.spec.num_gpus:
            raise UserError(f"--executor ray: the spec asks num_gpus={self.spec.num_gpus:g} per job, the cluster has {gpus:g} GPUs")
        if cpus < self.spec.num_cpus:
            raise UserError(f"--executor ray: the spec asks num_cpus={self.spec.num_cpus:g} per job, the cluster has {cpus:g} CPUs")
        if self.spec.workers is not None:
            return int(self.spec.workers)
        return max(1, int(cpus // self.spec.num_cpus))

    def submit(self, task: Task) -> None:
        if task.track not in self._track_paths:
            self._track_paths[task.track] = track_path(task.track)
        num_gpus = self.spec.num_gpus if task.job.gpu else 0
        options = {"num_cpus": self.spec.num_cpus, "num_gpus": num_gpus, "max_retries": self.spec.retries}
        try:
            ref = self._remote.options(**options).remote(task, self._track_paths[task.track], self.spec.num_cpus)
        except Exception as error:  # e.g. a task that does not pickle: its failure, not the run's
            log.warning("job %s not submitted: %s: %s", dict(task.job.labels), type(error).__name__, error)
            self._finished.append((task, JobResult(status="failed", error=f"Ray could not submit it: {one_line(error)}")))
            return
        self._in_flight[ref] = (task, time.perf_counter())

    def wait(self) -> list[tuple[Task, JobResult]]:
        if not self._in_flight and not self._finished:
            raise RuntimeError("wait() with no task submitted")
        refs = list(self._in_flight)
        if refs and not self._finished:
            while not ray.wait(refs, num_returns=1, timeout=POLL_S)[0]:
                pass
        ready = ray.wait(refs, num_returns=len(refs), timeout=0)[0] if refs else []
        finished, self._finished = self._finished, []
        for ref in ready:
            task, submitted = self._in_flight.pop(ref)
            finished.append((task, self._result(ref, task, submitted)))
        return finished

    def _result(self, ref: Any, task: Task, submitted: float) -> JobResult:
        try:
            return ray.get(ref)
        except Exception as error:  # after Ray's retries: the job fails, the run goes on
            message = failure(error, self.spec.retries)
            log.warning("job %s failed: %s", dict(task.job.labels), message)
            return JobResult(status="failed", error=message, seconds=time.perf_counter() - submitted)

    def close(self) -> None:
        """Cancel what is still running; shut the cluster down if this executor started it (disconnect if it joined one)."""
        for ref in self._in_flight:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        self._in_flight.clear()
        self._finished.clear()
        if self._connected:
            self._connected = False
            ray.shutdown()  # stops the processes of a cluster started here; only disconnects from a joined one
