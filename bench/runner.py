"""Plans the job matrix, skips finished jobs, runs the rest, stores each one as it finishes.

Generic over tracks: the track plans and runs jobs; the runner owns the
store, the seeds, the device, the shared model cache and failure handling.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import bench
from bench.data import DATASETS, Dataset
from bench.errors import UserError
from bench.spec import DefenseSpec, ModelSpec, RunSpec
from bench.store import Example, Outcome, Record, Store
from bench.tracks import TRACKS, Job, JobResult, Track
from bench.training import TrainedModel, obtain_model, stable_hash
from defenses import DEFENSES

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine (use --device cpu or auto)")
    return torch.device(name)


def versions() -> dict[str, str]:
    import importlib.metadata as md

    found = {"python": platform.python_version(), "frontier-bench": bench.__version__}
    for package in ("torch", "torchvision", "torchattacks", "adversarial-robustness-toolbox", "timm"):
        with contextlib.suppress(md.PackageNotFoundError):
            found[package] = md.version(package)
    return found


class Context:
    """What jobs of one run share: data, device, trained models (memoized), a scratch memo."""

    def __init__(self, spec: RunSpec, device: torch.device) -> None:
        self.spec = spec
        self.device = device
        self.memo: dict[Any, Any] = {}
        self._data: Dataset | None = None
        self._model_key: Any = None
        self._model: nn.Module | BaseException | None = None
        self.trained: dict[tuple[str, str], TrainedModel] = {}
        self.lookup: Callable[[str], Sequence[Outcome] | None] = lambda key: None  # set by the runner: the store

    def outcomes(self, key: str) -> Sequence[Outcome] | None:
        """Per-example outcomes of an earlier job of this run (None if it failed or was invalid)."""
        return self.lookup(key)

    @property
    def dataset_id(self) -> dict[str, Any]:
        """What identifies the training data in a model's recipe: name, parameters and content."""
        params = {k: v for k, v in self.spec.dataset_params.items() if k not in ("root", "download")}
        return {"name": self.spec.dataset, "params": params, "fingerprint": self.data.fingerprint}

    @property
    def data(self) -> Dataset:
        if self._data is None:
            self._data = DATASETS.create(self.spec.dataset, **self.spec.dataset_params)
        return self._data

    @property
    def data_loaded(self) -> bool:
        return self._data is not None

    def eval_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n_examples`` test points, on the run's device (the same points for every job)."""
        if "eval_set" not in self.memo:
            n = self.spec.n_examples or len(self.data.y_test)
            self.memo["eval_set"] = (self.data.x_test[:n].to(self.device), self.data.y_test[:n].to(self.device))
        return self.memo["eval_set"]

    def defense(self, defense: DefenseSpec) -> Any:
        return DEFENSES.create(defense.name, **defense.params)

    def model(self, model: ModelSpec, defense: DefenseSpec) -> nn.Module:
        """The trained (cached) model behind ``defense``; the last one built is kept for the next job."""
        key = (model, defense.name, tuple(sorted(defense.params.items())))
        if key != self._model_key:
            self._model_key = key
            try:
                chosen = self.defense(defense)
                trainer = {"objective": chosen, "objective_id": [defense.name, dict(defense.params)]} if chosen.trains else {}
                trained = obtain_model(model, self.data, self.dataset_id, self.spec.training, seed=self.spec.seed, device=self.device, **trainer)
                self.trained[model.label, defense.label] = trained
                self._model = chosen.wrap(trained.model).to(self.device)
            except Exception as error:  # remembered: the next jobs of this model fail fast with the same message
                self._model = error
        if isinstance(self._model, BaseException):
            raise self._model
        assert self._model is not None
        return self._model

    def undefended(self, model: ModelSpec) -> nn.Module:
        """The trained (cached) model with no defense, kept for the run: a transfer source for its defended versions."""
        key = ("undefended", repr(model))  # a spec holds dicts: not hashable itself
        if key not in self.memo:
            self.memo[key] = obtain_model(model, self.data, self.dataset_id, self.spec.training, seed=self.spec.seed, device=self.device).model.to(self.device)
        return self.memo[key]


def job_key(track: str, identity: dict[str, Any]) -> str:
    """The hash of everything that determines a job's result."""
    return stable_hash({"track": track, "version": bench.__version__, **identity}, length=24)


@dataclass
class Summary:
    out_dir: Path
    planned: int
    skipped: int
    ran: int
    failed: list[Record] = field(default_factory=list)
    seconds: float = 0.0


class Reporter:
    """Hooks for progress display; the CLI draws them with rich. The base class is silent."""

    def start(self, total: int, skipped: int) -> None: ...

    def job_started(self, job: Job) -> None: ...

    def job_finished(self, job: Job, record: Record) -> None: ...

    def stop(self) -> None: ...


def begin(store: Store, spec: RunSpec, device: torch.device) -> None:
    """Mark the store as this spec's run; a folder holding another spec's run is refused."""
    previous = store.get_meta("spec")
    current = spec.canonical()
    if previous is not None and previous != current:
        raise UserError(f"'{store.path.parent}' already holds a run of a different spec; pass another --out to start a new run")
    if previous is None:
        store.set_meta("spec", current)
        store.set_meta("track", spec.track)
        store.set_meta("started_at", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    store.set_meta("versions", versions())
    store.set_meta("device", str(device) if device.type != "cuda" else torch.cuda.get_device_name(device))


def run(spec: RunSpec, out_dir: Path, *, reporter: Reporter | None = None) -> Summary:
    """Run every planned job of ``spec`` not yet in ``out_dir``'s store."""
    reporter = reporter or Reporter()
    started = time.perf_counter()
    device = resolve_device(spec.device)
    track: Track = TRACKS.create(spec.track)
    jobs = track.plan(spec)
    context = Context(spec, device)
    path = out_dir / "results.db"
    done = set()
    if path.is_file():
        with Store(path, create=False) as previous:
            done = previous.finished_keys()
    todo = [job for job in jobs if job.key not in done]
    if todo:
        track.validate(spec, context)  # bad input found with the data in hand, before anything is written
    with Store(path) as store:
        begin(store, spec, device)
        context.lookup = store.outcomes_of
        if done:
            log.info("resuming %s: %d of %d jobs already done", out_dir, len(jobs) - len(todo), len(jobs))
        summary = Summary(out_dir, len(jobs), len(jobs) - len(todo), 0)
        reporter.start(len(jobs), summary.skipped)
        try:
            for job in todo:
                reporter.job_started(job)
                record, outcomes, examples = execute_with_examples(track, job, context, device)
                store.put(record, outcomes, examples)
                summary.ran += 1
                if record.status == "failed":
                    summary.failed.append(record)
                reporter.job_finished(job, record)
        finally:
            reporter.stop()
        store.set_derived_flags(track.derive(store.records(derived=False), store.outcomes()))
        store.set_meta("finished_at", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        if context.data_loaded:  # class names, for the report's gallery
            store.set_meta("classes", [str(c) for c in context.data.classes])
    summary.seconds = time.perf_counter() - started
    return summary


def execute(track: Track, job: Job, context: Context, device: torch.device) -> tuple[Record, Sequence[Outcome]]:
    """Run one job with its own seed; an exception becomes a failed record, never a stopped run."""
    record, outcomes, _ = execute_with_examples(track, job, context, device)
    return record, outcomes


def execute_with_examples(track: Track, job: Job, context: Context, device: torch.device) -> tuple[Record, Sequence[Outcome], Sequence[Example]]:
    """``execute``, plus the job's gallery examples (stored beside its record)."""
    torch.manual_seed(int(job.key[:12], 16))
    start = time.perf_counter()
    base = dict(key=job.key, position=job.position, track=track.name, **job.columns)
    provenance = {"device": str(device), "seed": context.spec.seed, "torch_threads": torch.get_num_threads()}
    try:
        result: JobResult = track.run(job, context)
    except Exception as error:  # recorded with its message; the run goes on
        log.warning("job %s failed: %s: %s", job.columns, type(error).__name__, error)
        message = f"{type(error).__name__}: {error}".splitlines()[0]
        return Record(**base, status="failed", error=message, seconds=time.perf_counter() - start, provenance=provenance), (), ()
    record = Record(
        **base,
        n=result.n,
        clean_accuracy=result.clean_accuracy,
        robust_accuracy=result.robust_accuracy,
        status=result.status,
        flags=sorted(set(result.flags)),
        seconds=result.seconds,
        params=dict(job.payload.get("params", {})),
        metrics=result.metrics,
        provenance={**provenance, **result.provenance},
    )
    return record, result.outcomes, result.examples
