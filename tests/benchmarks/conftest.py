"""Helpers for benchmarks: ratios against references timed in the same process, interleaved.

Absolute times on shared 2-core machines drift by 15-20 % between processes;
ratios measured round by round in one process hold much better. Nothing here
asserts a time: the figures go to ``benchmark.extra_info`` (and the JSON of
``make benchmark``) and are printed.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn


def interleaved_medians(functions: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds per function, timing them round-robin so drift hits all alike."""
    for function in functions.values():  # warm-up
        function()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def forward_backward(model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int) -> Callable[[], torch.Tensor]:
    """k x (forward + backward to the input): the hardware bound of PGD-k, the reference of its cost ratio."""

    def run():
        for _ in range(k):
            x_req = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(F.cross_entropy(model(x_req), y, reduction="sum"), x_req)
        return grad

    return run


@pytest.fixture
def rounds(benchmark) -> int:
    """Many rounds under `make benchmark`, one when benchmarks are disabled (plain `make test`)."""
    return 1 if benchmark.disabled else 15


def report(benchmark, title: str, figures: dict[str, float]) -> None:
    benchmark.extra_info.update(figures)
    print(f"\n{title}: " + ", ".join(f"{k} = {v:.3f}" for k, v in figures.items()))
