"""The NAS track: which search strategy finds the best architecture for a budget, and does it find robust ones?

Random search is a strong baseline for architecture search (Li & Talwalkar
2019; Sciuto et al. 2019; Yang et al. 2020), and comparisons are fair only at
equal budgets, over seeds, on tables where every architecture's result is
known. For every space x objective x strategy x seed the track runs one
search of ``max(budgets)`` distinct evaluations (capped at the space's size)
and compares strategies at each budget against the table's optimum and
against random search.

Jobs (labels: role, space, dataset, objective, strategy, seed, step, arch):

- ``search``: one evaluated architecture of one search. Searches advance
  through the harness's repeated ``plan``: each call replays the stored
  results into the strategy (``bench.tracks.nas.search``) and plans the
  architectures it proposes next, so a killed search resumes where it
  stopped and replans identically. A tabular space answers from its table;
  a live space from the table jobs of that architecture (``depends_on``).
- ``table`` (spaces trained live): one architecture trained and measured with
  one training seed: the exhaustive table, cached by recipe (architecture
  hash, data, training), built once whatever searches ask for.
- ``optimum``: per space x objective, the best feasible architecture of the
  whole table and the distribution of values (regret and percentiles).

``reports.nas`` turns the records into cells; ``reports.nas_tables`` and
``reports.nas_plots`` render them.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.runner import job_key
from bench.spec import RunSpec
from bench.store import Outcome, Record
from bench.tracks import HIGHER, LOWER, Job, JobResult, Metric, Task, Track
from bench.tracks.nas import section as nas_section
from bench.tracks.nas.objective import Objective
from bench.tracks.nas.search import FAILED, MISSING, Search
from bench.tracks.nas.section import SpaceSpec
from bench.training import stable_hash
from bench.worker import Cache
from reports.nas import EXPLANATIONS

BLOCK = 1_000_000  # job positions: one block per search (and per space's table), steps inside it
RESULTS = ("val_accuracy", "test_accuracy", "robust_val_accuracy", "robust_test_accuracy", "params", "latency_ms")


class NASTrack(Track):
    name = "nas"
    plots_title = "Best found against evaluations, and the accuracy / robustness / size trade-off"
    fields = ("spaces", "strategies", "budgets", "objectives")
    replicates = True  # the header's seeds: independent searches per strategy
    dimensions = ("role", "space", "dataset", "objective", "strategy", "seed", "step", "arch")
    cell_dimensions = ("role", "space", "dataset", "objective", "strategy", "budget")
    metrics = {
        "best_value": Metric(HIGHER, "fraction", "the objective (validation) of the best architecture found within the budget, mean over seeds"),
        "regret": Metric(LOWER, "fraction", "the table's best objective minus the best found"),
        "test_value": Metric(HIGHER, "fraction", "the objective on the test split of the architecture each search picked"),
        "found_optimum": Metric(HIGHER, "fraction", "share of the seeds whose search found the table's best architecture"),
    }
    explanations = EXPLANATIONS

    def __init__(self) -> None:
        self._spaces: dict[str, Any] = {}
        self._layouts: dict[str, tuple[list[Job], list[dict[str, Any]]]] = {}
        self._searches: dict[str, tuple[Search, dict[str, Job]]] = {}

    def default_spec(self, user: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """NAS-Bench-Graph on Cora (the whole budget grid) and the live cells space on digits (budgets up to 50,
        accuracy and robust accuracy), five strategies, 5 seeds; one table job per core."""
        return {
            "dataset": "digits",
            "seed": 0,
            "seeds": 5,
            "training": {"epochs": 8, "lr": 3e-3, "batch_size": 64},
            "budgets": list(nas_section.DEFAULT_BUDGETS),
            "objectives": ["accuracy"],
            "strategies": ["random", "reinforce", "evolution", "tpe", "local"],
            "spaces": [
                {"name": "nas-bench-graph", "dataset": "cora"},
                {"name": "cells", "budgets": [10, 25, 50], "objectives": ["accuracy", "robust"]},
            ],
            "executor": {"name": "processes"},
        }

    def parse(self, raw: Mapping[str, Any], *, base_dir: Path) -> nas_section.NASSection:
        return nas_section.parse(raw, base_dir)

    # -- the spaces ---------------------------------------------------------------
    def space(self, space_spec: SpaceSpec, spec: RunSpec) -> Any:
        """The space object (its table read once per process)."""
        from bench.tracks.nas.spaces import SEARCH_SPACES

        key = stable_hash([space_spec.name, dict(space_spec.resolved), space_spec.code, spec.dataset])
        if key not in self._spaces:
            self._spaces[key] = SEARCH_SPACES.create(space_spec.name, context={"header_dataset": spec.dataset}, **space_spec.resolved)
        return self._spaces[key]

    def _space_identity(self, space_spec: SpaceSpec, space: Any, spec: RunSpec, cache: Cache) -> dict[str, Any]:
        live = None if space.tabular else space.training_identity(spec, cache)
        return {"space": [space_spec.name, dict(space_spec.params), space_spec.code], "table": space.identity(), "live": live}

    # -- jobs ---------------------------------------------------------------------
    def plan(self, spec: RunSpec, finished: Mapping[str, Record]) -> list[Job]:
        fixed, searches = self._layout(spec)
        jobs = list(fixed)
        for search in searches:
            jobs += self._advance(search, finished)
        return jobs

    def _layout(self, spec: RunSpec) -> tuple[list[Job], list[dict[str, Any]]]:
        """What a spec plans whatever the results: the table and optimum jobs, and every search to advance (once per spec)."""
        canonical = spec.canonical()
        if canonical in self._layouts:
            return self._layouts[canonical]
        cache = Cache()
        jobs: list[Job] = []
        searches: list[dict[str, Any]] = []
        block = 0
        for space_spec in spec.spaces:
            space = self.space(space_spec, spec)
            identity = self._space_identity(space_spec, space, spec, cache)
            labels = {"space": space_spec.label, "dataset": space.dataset}
            table: dict[str, list[str]] = {}  # arch key -> its table jobs (live spaces)
            if not space.tabular:
                block += 1
                for index, (key, arch) in enumerate(space.architectures()):
                    for train_seed in range(space.train_seeds):
                        job = Job(
                            job_key(self.name, {"role": "table", **identity, "arch": key, "seed": train_seed}),
                            block * BLOCK + index * space.train_seeds + train_seed,
                            {"role": "table", **labels, "objective": None, "strategy": "table", "seed": train_seed, "step": None, "arch": key},
                            {"kind": "table", "space": space_spec, "arch": arch, "arch_key": key},
                        )
                        jobs.append(job)
                        table.setdefault(key, []).append(job.key)
            budget = min(max(space_spec.budgets), space.size())
            for objective in space_spec.objectives:
                block += 1
                jobs.append(
                    Job(
                        job_key(self.name, {"role": "optimum", **identity, "objective": asdict(objective)}),
                        block * BLOCK,
                        {"role": "optimum", **labels, "objective": objective.label, "strategy": "exhaustive", "seed": None, "step": None, "arch": None},
                        {"kind": "optimum", "space": space_spec, "objective": objective},
                        depends_on=tuple(k for keys in table.values() for k in keys),
                        gpu=False,
                    )
                )
                for strategy in spec.strategies:
                    for seed in range(spec.seed, spec.seed + spec.seeds):
                        block += 1
                        searches.append(
                            {
                                "id": stable_hash({"search": identity, "objective": asdict(objective), "strategy": strategy.identity, "seed": seed}),
                                "space": space,
                                "strategy": strategy,
                                "seed": seed,
                                "budget": budget,
                                "block": block,
                                "labels": {**labels, "objective": objective.label, "strategy": strategy.label, "seed": seed},
                                "payload": {"kind": "search", "space": space_spec, "objective": objective, "budget": budget, "budgets": space_spec.budgets},
                                "table": table,
                            }
                        )
        self._layouts[canonical] = (jobs, searches)
        return jobs, searches

    def _advance(self, search: Mapping[str, Any], finished: Mapping[str, Record]) -> list[Job]:
        """The search's evaluations so far and next (its ``Search`` kept between rounds, replayed from the records on a resume)."""
        from bench.tracks.nas.strategies import STRATEGIES

        search_id, space, strategy = search["id"], search["space"], search["strategy"]
        if search_id not in self._searches:
            made = STRATEGIES.create(strategy.name, context={"sizes": space.sizes, "seed": search["seed"]}, **strategy.params)
            made.restrict([arch for _, arch in space.architectures()])
            self._searches[search_id] = (Search(made, space.canonical, search["budget"]), {})
        state, jobs = self._searches[search_id]

        def evaluation(key: str) -> str:
            return job_key(self.name, {"search": search_id, "arch": key})

        def result(key: str) -> Any:
            record = finished.get(evaluation(key))
            if record is None:
                return MISSING
            return record.metrics.get("value") if record.status == "ok" else FAILED

        state.advance(result)
        for proposal in state.proposals[len(jobs) :]:
            payload = {**search["payload"], "arch": proposal.arch, "arch_key": proposal.key, "asks": proposal.asks}
            payload["strategy_seconds"] = proposal.strategy_seconds
            labels = {"role": "search", **search["labels"], "step": proposal.step, "arch": space.label(proposal.arch)}
            depends = tuple(search["table"].get(proposal.key, ()))
            position = search["block"] * BLOCK + proposal.step
            jobs[proposal.key] = Job(evaluation(proposal.key), position, labels, payload, depends_on=depends, gpu=False, local=True)
        return list(jobs.values())

    def run(self, task: Task, cache: Cache) -> JobResult:
        start = time.perf_counter()
        payload = task.job.payload
        space = self.space(payload["space"], task.spec)  # the track object is the worker's (bench.worker caches it)
        kind = payload["kind"]
        if kind == "table":
            results = space.measure(payload["arch"], task.job.labels["seed"], task.spec, cache)
            metrics = {"role": "table", "arch_key": payload["arch_key"], **results}
        elif kind == "search":
            results = space.lookup(payload["arch_key"]) if space.tabular else _mean_results([d.metrics for d in task.dependencies.values()])
            metrics = {"role": "search", **_scored(payload["objective"], results), "arch_key": payload["arch_key"]}
            metrics.update({k: payload[k] for k in ("budget", "asks", "strategy_seconds")}, budgets=list(payload["budgets"]))
        else:
            metrics = {"role": "optimum", **_optimum(space, payload["objective"], task)}
        return JobResult(metrics=metrics, seconds=time.perf_counter() - start)

    # -- rendering ----------------------------------------------------------------
    def cells(self, records: Sequence[Record], outcomes: Mapping[str, Sequence[Outcome]]) -> list[dict[str, Any]]:
        from reports.nas import aggregate

        return aggregate(records)

    def markdown(self, cells: Sequence[Mapping[str, Any]]) -> str:
        from reports.nas_tables import nas_markdown

        return nas_markdown(cells)

    def summary(self, cells: Sequence[Mapping[str, Any]]) -> list[str]:
        from reports.nas_tables import summary_lines

        return summary_lines(cells)

    def tables(self, cells: Sequence[Mapping[str, Any]]) -> list[Any] | None:
        from reports.nas_tables import tables

        return tables(cells)

    def figures(self, cells: Sequence[Mapping[str, Any]]) -> list[Any]:
        from reports.nas_plots import figures

        return figures(cells)

    def images(self, cells: Sequence[Mapping[str, Any]]) -> list[Any]:
        from reports.nas_plots import figures

        return figures(cells)


def _scored(objective: Objective, results: Mapping[str, Any]) -> dict[str, Any]:
    """An architecture's results with the objective's value on validation (what searches see) and on test."""
    value = objective.value(results, "val")
    return {
        "value": value,
        "feasible": objective.feasible(results),
        "test_value": objective.value(results, "test") if value is not None else None,
        **{k: results.get(k) for k in RESULTS},
    }


def _mean_results(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The mean of an architecture's table jobs over training seeds (None where a seed lacks the result)."""
    found: dict[str, Any] = {}
    for name in RESULTS:
        values = [row.get(name) for row in rows]
        found[name] = statistics.fmean(values) if values and all(v is not None for v in values) else None
    return found


def _optimum(space: Any, objective: Objective, task: Task) -> dict[str, Any]:
    """The table's best feasible architecture under ``objective`` and the distribution of values (101 quantiles)."""
    if space.tabular:
        rows = [(key, label, results) for key, label, results in space.entries()]
    else:
        grouped: dict[str, list[Mapping[str, Any]]] = {}
        for dependency in task.dependencies.values():
            grouped.setdefault(dependency.metrics["arch_key"], []).append(dependency.metrics)
        rows = [(key, key, _mean_results(found)) for key, found in grouped.items()]
    scored = [(key, label, _scored(objective, results)) for key, label, results in rows]
    feasible = sorted((s for s in scored if s[2]["value"] is not None), key=lambda s: (-s[2]["value"], s[0]))
    if not feasible:
        raise RuntimeError(f"no architecture of the table is feasible under '{objective.label}'")
    key, label, best = feasible[0]
    values = sorted(s[2]["value"] for s in feasible)
    quantiles = [values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))] for q in range(101)]
    tests = [s[2]["test_value"] for s in feasible if s[2]["test_value"] is not None]
    return {
        **best,
        "arch_key": key,
        "arch": label,
        "n_archs": len(scored),
        "n_feasible": len(feasible),
        "quantiles": quantiles,
        "best_test_value": max(tests) if tests else None,
    }
