"""Executors run tasks; the runner (the driver) schedules them and is the single writer of the store.

An executor takes picklable ``Task`` values (``submit``), runs each through
``bench.worker.execute`` somewhere, and hands back finished ones (``wait``).
``serial`` runs them in this process, one at a time; ``processes`` in worker
processes of this machine (every core busy); ``ray`` spreads them over a Ray
cluster (``pip install -e ".[ray]"``). All give identical results:
a job is a pure function of its task.
"""

from __future__ import annotations

from typing import Any

from bench.errors import UserError
from bench.executors.base import Executor

__all__ = ["Executor", "make_executor"]


def make_executor(spec: Any) -> Executor:
    """The executor a run's ``[executor]`` names (``bench.spec.ExecutorSpec``)."""
    if spec.name == "serial":
        from bench.executors.serial import SerialExecutor

        return SerialExecutor()
    if spec.name == "ray":
        try:
            from bench.executors.ray import RayExecutor
        except ImportError as error:
            raise UserError(f'--executor ray needs ray: pip install -e ".[ray]" ({error})') from None
        return RayExecutor(spec)
    if spec.name == "processes":
        from bench.executors.processes import ProcessesExecutor

        return ProcessesExecutor(spec)
    raise UserError(f"unknown executor '{spec.name}'; executors: serial, processes, ray")
