"""What runs one job, in whatever process an executor chose: the worker's cache and ``execute``.

``execute(task, cache)`` seeds torch from the job key, calls the track's
``run`` and turns an exception into a failed result (the run goes on). The
``Cache`` memoizes what jobs of one worker share (the dataset, trained and
defended models, evaluation tensors), keyed by content hashes, never by
``id()`` or by the order jobs came in: a value found in the cache is the value
the job would have computed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import time
from collections.abc import Callable
from typing import Any, TypeVar

import torch

import bench
from bench.data import Dataset
from bench.errors import UserError, one_line
from bench.tracks import TRACKS, JobResult, Task
from bench.training import stable_hash

log = logging.getLogger(__name__)
T = TypeVar("T")


class Cache:
    """A worker's memo: ``get(key, make)`` computes a value once per content key."""

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}

    def get(self, key: Any, make: Callable[[], T]) -> T:
        digest = key if isinstance(key, str) else stable_hash(key, length=32)
        if digest not in self._values:
            self._values[digest] = make()
        return self._values[digest]

    def __len__(self) -> int:
        return len(self._values)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine (use --device cpu or auto)")
    return torch.device(name)


def dataset(spec: Any, cache: Cache) -> Dataset:
    """The run's dataset, loaded once per worker, from the registry its track names (images: ``bench.data.DATASETS``)."""

    def make() -> Dataset:
        from bench.catalog import registry

        kind = getattr(TRACKS.get(spec.track), "datasets", "datasets") if spec.track in TRACKS else "datasets"  # a track run unregistered: images
        return registry(kind).create(spec.dataset, **spec.dataset_params)

    return cache.get(["dataset", spec.track, spec.dataset, dict(spec.dataset_params)], make)


def dataset_id(spec: Any, cache: Cache) -> dict[str, Any]:
    """What identifies the training data in a model's recipe: name, parameters and content."""
    params = {k: v for k, v in spec.dataset_params.items() if k not in ("root", "download")}
    return {"name": spec.dataset, "params": params, "fingerprint": dataset(spec, cache).fingerprint}


def eval_set(spec: Any, cache: Cache) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n_examples`` test points, on the run's device (the same points for every job)."""

    def make() -> tuple[torch.Tensor, torch.Tensor]:
        data, device = dataset(spec, cache), resolve_device(spec.device)
        n = spec.n_examples or len(data.y_test)
        return data.x_test[:n].to(device), data.y_test[:n].to(device)

    return cache.get(["eval-set", spec.dataset, dict(spec.dataset_params), spec.n_examples, spec.device], make)


def versions() -> dict[str, str]:
    import importlib.metadata as md

    found = {"python": platform.python_version(), "frontier-bench": bench.__version__}
    for package in ("torch", "torchvision", "torchattacks", "adversarial-robustness-toolbox", "timm", "ray"):
        with contextlib.suppress(md.PackageNotFoundError):
            found[package] = md.version(package)
    return found


def seed(value: int) -> None:
    """Seed the CPU generator (and CUDA's where there is CUDA). ``torch.manual_seed`` would queue a lazy CUDA seeding
    with its call stack on a machine without CUDA: 2 ms per call, more than a tabular job takes."""
    torch.random.default_generator.manual_seed(value)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(value)


def execute(task: Task, cache: Cache) -> JobResult:
    """Run one job with its own seed; an exception becomes a failed result, never a stopped run."""
    seed(int(task.job.key[:12], 16))
    start = time.perf_counter()
    provenance = {"device": str(resolve_device(task.spec.device)), "seed": task.spec.seed, "torch_threads": torch.get_num_threads()}
    if os.environ.get("CUDA_VISIBLE_DEVICES"):  # the GPU(s) this worker was given (the processes executor pins one per worker)
        provenance["cuda_visible_devices"] = os.environ["CUDA_VISIBLE_DEVICES"]
    try:
        track = cache.get(["track", task.track], lambda: TRACKS.create(task.track))
        result = track.run(task, cache)
    except Exception as error:  # recorded with its message; the run goes on
        log.warning("job %s failed: %s: %s", dict(task.job.labels), type(error).__name__, error)
        message = one_line(error)
        flag = getattr(error, "flag", None)  # an error that says what is wrong with the model (non-finite logits): invalid, flagged
        status, flags = ("invalid", [flag]) if isinstance(flag, str) else ("failed", [])
        return JobResult(status=status, error=message, flags=flags, seconds=time.perf_counter() - start, provenance=provenance)
    result.provenance = {**provenance, **result.provenance}
    result.flags = sorted(set(result.flags))
    return result
