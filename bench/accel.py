"""What makes a run fast on a GPU without changing what it measures: precision, memory format, batch back-off.

* ``autocast(precision, device)``: ``"bf16"`` runs forward and backward passes
  under ``torch.autocast`` with bfloat16 (convolutions and matrix products in
  bf16, losses and reductions in float32); ``"float32"`` (the default) changes
  nothing. Attacks still return float32 points, verified and re-predicted in
  float32: the robust accuracy is the float32 model's.
* ``memory_format(model, device, setting)``: ``channels_last`` for
  convolutional models on CUDA (``"auto"``), where tensor cores want NHWC.
* ``BatchSizes``: a batch that runs out of CUDA memory is split in two and
  retried; the size that fits is remembered per key (model and attack) for
  the rest of the worker's run, so later batches start there.
* ``policy(...)``: how the attacks of one job run (precision, batch size, the
  worker's ``BatchSizes``, the job's model key), set once by the track around
  the job and read by every attack the harness runs in it (``attack_points``,
  the sanity checks, ``bench.guard.predict``): no setting is threaded through
  every check by hand.

A leaf of the harness (torch only): attacks, the guard and the tracks use it.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn

log = logging.getLogger(__name__)
T = TypeVar("T")

PRECISIONS = ("float32", "bf16")
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")


@contextmanager
def autocast(precision: str, device: torch.device | str) -> Iterator[None]:
    """bf16 autocast on ``device``'s type for ``precision == "bf16"``; nothing otherwise."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    if precision == "float32":
        yield
        return
    with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16):
        yield


def convolutional(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def wants_channels_last(model: nn.Module, device: torch.device | str, setting: str = "auto") -> bool:
    """``channels_last`` when asked for, or (``auto``) for a convolutional model on CUDA."""
    if setting not in MEMORY_FORMATS:
        raise ValueError(f"unknown memory format {setting!r}; known: {', '.join(MEMORY_FORMATS)}")
    if setting == "auto":
        return torch.device(device).type == "cuda" and convolutional(model)
    return setting == "channels_last"


def memory_format(model: nn.Module, device: torch.device | str, setting: str = "auto") -> nn.Module:
    """The model in the memory format ``setting`` calls for (in place; returned for chaining)."""
    if wants_channels_last(model, device, setting):
        model.to(memory_format=torch.channels_last)
    return model


def out_of_memory(error: BaseException) -> bool:
    """A CUDA (or other accelerator) allocation failure, which a smaller batch may avoid."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


class BatchSizes:
    """Per key, the batch size that last fit: starts at the caller's, halves on out-of-memory, never grows back."""

    def __init__(self) -> None:
        self._sizes: dict[Hashable, int] = {}
        self.halvings: dict[Hashable, int] = {}

    def size(self, key: Hashable, start: int) -> int:
        return min(start, self._sizes.get(key, start))

    def halve(self, key: Hashable, current: int) -> int:
        smaller = max(1, current // 2)
        self._sizes[key] = smaller
        self.halvings[key] = self.halvings.get(key, 0) + 1
        log.warning("out of memory at batch size %d for %s: retrying at %d", current, key, smaller)
        return smaller

    def map(self, key: Hashable, index: torch.Tensor, start: int, fn: Callable[[torch.Tensor], T]) -> list[T]:
        """``fn`` over consecutive chunks of ``index`` (a 1-d tensor), each at most the key's size; a chunk that runs
        out of memory is retried at half the size with the random state it started with, so the numbers are those
        of a run that started at the smaller size (the results are those of the chunks that ran, in order)."""
        out: list[T] = []
        position = 0
        while position < len(index):
            size = self.size(key, start)
            chunk = index[position : position + size]
            state = _random_state(index.device)
            try:
                out.append(fn(chunk))
            except Exception as error:
                if not out_of_memory(error) or size == 1:
                    raise
                _restore(state)
                release()
                self.halve(key, size)
                continue
            position += len(chunk)
        return out


def _random_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None, torch.device]:
    """The generators a chunk draws from: the CPU's, and the device's on CUDA."""
    return torch.random.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None, device


def _restore(state: tuple[torch.Tensor, torch.Tensor | None, torch.device]) -> None:
    cpu, cuda, device = state
    torch.random.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda, device)


def release() -> None:
    """Hand cached CUDA blocks back after an out-of-memory error, so the smaller batch finds room."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass(frozen=True)
class Policy:
    """How the harness runs the attacks and predictions of one job."""

    precision: str = "float32"  # attacks' forward and backward passes (predictions are always float32)
    batch_size: int = 256  # the spec's: where batches start
    sizes: BatchSizes = field(default_factory=BatchSizes)  # the worker's memory of sizes that fit
    key: Hashable = None  # the model (and defense) the job attacks: sizes are remembered per (key, attack)


_DEFAULT = Policy()  # outside any job (a notebook's attack): the process's batch-size memory
_POLICY: contextvars.ContextVar[Policy | None] = contextvars.ContextVar("bench_accel_policy", default=None)


def current() -> Policy:
    return _POLICY.get() or _DEFAULT


@contextmanager
def policy(**changes: Any) -> Iterator[Policy]:
    """The current policy with ``changes``, for the duration of the block."""
    token = _POLICY.set(dataclasses.replace(current(), **changes))
    try:
        yield current()
    finally:
        _POLICY.reset(token)


def batched(name: str, n: int, device: torch.device, fn: Callable[[torch.Tensor], T], *, batch_size: int | None = None) -> list[T]:
    """``fn(indices)`` over batches of ``range(n)`` under the current policy: its batch size (or ``batch_size``), halved
    and remembered per (model key, ``name``) on out-of-memory."""
    p = current()
    return p.sizes.map((p.key, name), torch.arange(n, device=device), batch_size or p.batch_size, fn)


def attack_points(attack: Any, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``attack(model, x, y)`` in batches of the current policy, under its precision: the adversarial points, in order."""
    if not len(x):
        return attack(model, x, y)
    p = current()

    def run(index: torch.Tensor) -> torch.Tensor:
        with autocast(p.precision, x.device):
            return attack(model, x[index], y[index])

    return torch.cat(batched(attack.describe() if hasattr(attack, "describe") else type(attack).__name__, len(x), x.device, run))
