"""The driver: plans jobs until the track proposes nothing new, schedules them by ``depends_on``, stores each one.

Generic over tracks and executors. The track plans (``plan(spec, finished)``,
called again with the stored records until it returns no new key) and runs
jobs (in whatever process the executor chose); the runner alone writes the
store. A job is submitted only once every job it depends on is stored; a job
whose dependency failed is stored as failed, naming it, and is never run. Jobs
already in the store (a killed run, a re-run) are skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import bench
from bench.errors import UserError
from bench.executors import Executor, make_executor
from bench.fields import fingerprints
from bench.fingerprint import changes
from bench.preflight import check_examples, check_models
from bench.spec import RunSpec
from bench.store import Record, Store, as_stored
from bench.tracks import TRACKS, Dependency, Job, JobResult, Task, Track
from bench.training import stable_hash
from bench.worker import Cache, execute, resolve_device, versions

log = logging.getLogger(__name__)

__all__ = ["Reporter", "Summary", "job_key", "resolve_device", "run"]


def job_key(track: str, identity: Mapping) -> str:
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

    def grow(self, total: int) -> None:
        """A later round of planning added jobs: ``total`` is the new number planned."""

    def job_started(self, job: Job) -> None: ...

    def job_finished(self, job: Job, record: Record) -> None: ...

    def stop(self) -> None: ...


def begin(store: Store, spec: RunSpec, device: torch.device, *, force: bool = False) -> None:
    """Mark the store as this spec's run. A folder holding another spec's run is refused, and so is one holding results
    of another version of a component (an edited model, defense or attack, new checkpoint contents) unless ``force``:
    then the run goes on and ``finish`` drops the old version's jobs once every job of this one is stored."""
    previous = store.get_meta("spec")
    current = spec.canonical()
    if previous is not None and previous != current:
        raise UserError(f"'{store.path.parent}' already holds a run of a different spec; pass another --out to start a new run")
    stale = _stale(store, fingerprints(spec)) if previous is not None else {}
    if stale and not force:
        what, changed = next(iter(stale.items()))
        dimension, _, label = what.partition(":")
        more = f" (and {len(stale) - 1} more)" if len(stale) > 1 else ""
        raise UserError(
            f"'{store.path.parent}' holds results of another version of {dimension} '{label}'{more}: {' and '.join(changed)} changed since; "
            f"run into a new --out, or pass --force to drop its old results and run it afresh"
        )
    if stale:
        log.info("--force: %s changed; the old results go once this run is complete", "; ".join(f"{k}: {' and '.join(v)}" for k, v in stale.items()))
    else:  # a forced run records the new fingerprints only when complete: killed before, its folder is refused again
        store.set_meta("components", fingerprints(spec))
    if previous is None:
        store.set_meta("spec", current)
        store.set_meta("track", spec.track)
        store.set_meta("started_at", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    store.set_meta("versions", versions())
    store.set_meta("device", str(device) if device.type != "cuda" else torch.cuda.get_device_name(device))
    store.set_meta("executor", spec.executor.name)


def _stale(store: Store, current: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """Components whose stored results came from other code or checkpoint contents than now ("model:label" -> what changed)."""
    before = store.get_meta("components")
    if before is None:  # a folder from before fingerprints were stored: any result it holds is of unknown code
        return {"model:" + str(label): ["its code (not recorded)"] for label in {r.labels.get("model") for r in store.records(derived=False)} if label}
    return {name: [f"its {what}" if what == "code" else "its checkpoint's contents" for what in changed] for name, changed in changes(before, current).items()}


def finish(store: Store, spec: RunSpec, planned: set[str]) -> int:
    """After a complete ``--force`` run: drop every stored job this run did not plan (the old versions'); how many."""
    dropped = store.delete_jobs([r.key for r in store.records(derived=False) if r.key not in planned])
    store.set_meta("components", fingerprints(spec))
    if dropped:
        log.info("--force: dropped %d jobs of the components' old versions", dropped)
    return dropped


def record_of(track: Track, job: Job, result: JobResult) -> Record:
    """The stored form of a job and what running it gave."""
    return Record(
        key=job.key,
        track=track.name,
        position=job.position,
        labels=dict(job.labels),
        status=result.status,
        metrics=dict(result.metrics),
        flags=sorted(set(result.flags)),
        error=result.error,
        seconds=result.seconds,
        params=dict(job.payload.get("params", {})),
        provenance=dict(result.provenance),
    )


def _plan(track: Track, spec: RunSpec, finished: Mapping[str, Record], planned: Mapping[str, Job]) -> list[Job]:
    """The next round: jobs the track proposes now that were not planned before (keys must be unique within a round)."""
    jobs = track.plan(spec, finished)
    seen: set[str] = set()
    for job in jobs:
        if job.key in seen:
            raise RuntimeError(f"track '{track.name}' planned job {job.key} ({dict(job.labels)}) twice")
        seen.add(job.key)
    return [job for job in jobs if job.key not in planned]


def run(spec: RunSpec, out_dir: Path, *, reporter: Reporter | None = None, executor: Executor | None = None, force: bool = False) -> Summary:
    """Run every planned job of ``spec`` not yet in ``out_dir``'s store (``force``: resume although components changed; their old results go)."""
    reporter = reporter or Reporter()
    started = time.perf_counter()
    device = resolve_device(spec.device)
    track: Track = TRACKS.create(spec.track)
    path = out_dir / "results.db"
    existing = Store(path, create=False) if path.is_file() else None
    try:
        finished = {r.key: r for r in existing.records(derived=False)} if existing is not None else {}
        first = _plan(track, spec, finished, {})
    finally:
        if existing is not None:
            existing.close()
    cache = Cache()
    if any(job.key not in _done(finished) for job in first):  # bad input found with the data in hand, before anything is written
        check_examples(spec, cache)
        check_models(spec, cache)
        track.validate(spec, cache)
    with Store(path) as store:
        begin(store, spec, device, force=force)
        for key, value in track.run_meta(spec, cache).items():
            store.set_meta(key, value)
        summary = Summary(out_dir, 0, 0, 0)
        workers = _Workers(spec, executor, cache)
        try:
            planned = _drive(track, spec, store, workers, first, finished, summary, reporter)
        finally:
            reporter.stop()
            workers.close()
        if force:
            finish(store, spec, planned)
        store.set_derived_flags(track.derive(store.records(derived=False), store.outcomes()))
        store.set_meta("finished_at", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    summary.seconds = time.perf_counter() - started
    return summary


class _Workers:
    """The run's executor, started only when a job is to run (a finished folder starts no cluster)."""

    def __init__(self, spec: RunSpec, given: Executor | None, local: Cache | None = None) -> None:
        self.spec, self.given, self.started = spec, given, None
        self.local = local or Cache()  # the driver's memo, for the jobs it runs itself (``Job.local``)

    def get(self) -> Executor:
        if self.given is not None:
            return self.given
        if self.started is None:
            self.started = make_executor(self.spec.executor)
        return self.started

    def close(self) -> None:
        if self.started is not None:
            self.started.close()


def _done(finished: Mapping[str, Record]) -> set[str]:
    """Keys of stored jobs that need no re-run (failed jobs are retried)."""
    return {key for key, record in finished.items() if record.status != "failed"}


def _drive(
    track: Track, spec: RunSpec, store: Store, workers: _Workers, first: list[Job], finished: dict[str, Record], summary: Summary, reporter: Reporter
) -> set[str]:
    """Plan rounds until nothing is new; within a round, submit each job whose dependencies are all stored; the keys planned.

    ``finished`` (key -> stored record) is read from the store once and kept up to date as jobs are stored: a search
    that plans one architecture per round reads its results without reading the whole store every round."""
    planned: dict[str, Job] = {}
    done = _done(finished)

    def replan() -> list[Job]:
        """Jobs the track proposes now, from results stored since it last planned (searches advance within a round)."""
        new = _plan(track, spec, finished, planned)
        for job in new:
            planned[job.key] = job
        todo = [job for job in new if job.key not in finished or finished[job.key].status == "failed"]
        if new:
            summary.planned += len(new)
            summary.skipped += len(new) - len(todo)
            reporter.grow(summary.planned)
        return todo

    jobs = first
    while jobs:
        for job in jobs:
            planned[job.key] = job
        todo = [job for job in jobs if job.key not in done]
        if summary.planned == 0:
            reporter.start(len(jobs), len(jobs) - len(todo))
        else:
            reporter.grow(summary.planned + len(jobs))
        summary.planned += len(jobs)
        summary.skipped += len(jobs) - len(todo)
        if done and todo and summary.planned == len(jobs):
            log.info("resuming %s: %d of %d jobs already done", store.path.parent, len(jobs) - len(todo), len(jobs))
        if todo:
            _schedule(track, spec, store, workers, todo, planned, finished, summary, reporter, replan)
        done = _done(finished)
        jobs = _plan(track, spec, finished, planned)
    return set(planned)


def _schedule(
    track: Track,
    spec: RunSpec,
    store: Store,
    workers: _Workers,
    todo: list[Job],
    planned: Mapping[str, Job],
    finished: dict[str, Record],
    summary: Summary,
    reporter: Reporter,
    replan: Callable[[], list[Job]],
) -> None:
    """Run ``todo``: each job once every job it depends on is stored; ``local`` jobs here in the driver, the rest on the
    executor's slots. After local jobs the track plans again, so a search of table lookups advances while the
    executor's workers train (without local jobs, the next round waits for this one)."""
    executor = workers.get() if any(not job.local for job in todo) else None
    waiting = sorted(todo, key=lambda job: job.position)
    if executor is not None and executor.slots > 1:  # several at once: the longest chain of dependants first (training starts early)
        depth = _chain_lengths(todo)
        waiting.sort(key=lambda job: (-depth[job.key], job.position))
    status = {key: r.status for key, r in finished.items()}
    pending = {job.key for job in waiting}
    in_flight: dict[str, Job] = {}

    def finish(job: Job, result: JobResult) -> None:
        record = record_of(track, job, result)
        store.put(record, result.outcomes, result.artifacts)
        finished[job.key] = as_stored(record)
        status[job.key] = record.status
        pending.discard(job.key)
        summary.ran += 1
        if record.status == "failed":
            summary.failed.append(record)
        reporter.job_finished(job, record)

    while waiting or in_flight:
        progressed = ran_here = False
        for job in list(waiting):
            missing = [k for k in job.depends_on if k not in planned]
            failed = [k for k in job.depends_on if status.get(k) == "failed"]
            if missing or failed:
                waiting.remove(job)
                reporter.job_started(job)
                finish(job, JobResult(status="failed", error=_dependency_error(job, missing, failed, planned, store)))
                progressed = True
                continue
            if any(k in pending or k not in status for k in job.depends_on):
                continue  # a dependency is still to run (or running)
            if job.local:
                waiting.remove(job)
                reporter.job_started(job)
                finish(job, execute(Task(track.name, job, spec, _dependencies(store, job.depends_on)), workers.local))
                progressed = ran_here = True
                continue
            if executor is None:
                executor = workers.get()
            if len(in_flight) >= executor.slots:
                continue
            waiting.remove(job)
            reporter.job_started(job)
            executor.submit(Task(track.name, job, spec, _dependencies(store, job.depends_on)))
            in_flight[job.key] = job
            progressed = True
        if ran_here:
            new = replan()
            pending.update(job.key for job in new)
            waiting.extend(sorted(new, key=lambda job: job.position))
            continue
        if in_flight:
            for task, result in executor.wait():
                finish(in_flight.pop(task.job.key), result)
        elif not progressed:  # nothing runs and nothing can start: a dependency that will never be stored
            for job in waiting:
                finish(job, JobResult(status="failed", error=f"waits for jobs that never ran: {', '.join(k for k in job.depends_on if k in pending)}"))
            waiting.clear()


def _chain_lengths(jobs: Sequence[Job]) -> dict[str, int]:
    """For each job, the number of jobs in the longest chain of dependants that starts at it (itself included)."""
    dependants: dict[str, list[str]] = {job.key: [] for job in jobs}
    for job in jobs:
        for key in job.depends_on:
            if key in dependants:
                dependants[key].append(job.key)
    length: dict[str, int] = {}

    def visit(key: str, path: frozenset[str]) -> int:
        if key not in length:
            below = [visit(k, path | {key}) for k in dependants[key] if k not in path]  # a cycle is cut, never followed
            length[key] = 1 + max(below, default=0)
        return length[key]

    for job in jobs:
        visit(job.key, frozenset())
    return length


def _dependency_error(job: Job, missing: Sequence[str], failed: Sequence[str], planned: Mapping[str, Job], store: Store) -> str:
    if missing:
        return f"depends on job {missing[0]}, which the track never planned"
    record = store.records(derived=False, keys=[failed[0]])[0]
    what = " / ".join(str(v) for v in planned[failed[0]].labels.values() if v is not None)
    return f"not run: the job it depends on ({what}) failed: {record.error}"


def _dependencies(store: Store, keys: Sequence[str]) -> dict[str, Dependency]:
    if not keys:
        return {}
    records = {r.key: r for r in store.records(derived=False, keys=list(keys))}
    outcomes = store.outcomes(list(keys))
    return {key: Dependency(key, records[key].status, records[key].metrics, tuple(dict(o.values) for o in outcomes.get(key, ()))) for key in keys}
