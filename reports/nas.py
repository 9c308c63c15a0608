"""The NAS track's leaderboard: search strategies compared at equal budgets of evaluated architectures, over seeds.

The track stores one record per evaluated architecture (``role = "search"``; a search is one space x dataset x objective
x strategy x seed, ``step`` the 1-based index of the distinct architecture), one exhaustive result per space x dataset x
objective (``role = "optimum"``: the best feasible validation objective of the whole table, its quantiles) and, for the
live-trained ``cells`` space, one record per architecture x training seed (``role = "table"``). This module builds, in first-seen order:

- per space x dataset x objective x strategy x budget ``b`` (the searches'
  ``budgets``, capped at the space size): per seed the best feasible validation
  value among its first ``b`` evaluations, the architecture it picks (ties: the
  earliest), that pick's test value, the regret against the table optimum and
  its percentile in the table; then means and 95 % Student-t intervals over
  seeds (``bench.stats.mean_interval``) and a verdict against random search at
  the same budget: one-sided Mann-Whitney U on the per-seed best values
  (seeds are independent searches, so the test is unpaired), alpha 0.05;
- one ``exhaustive`` cell per space x dataset x objective: the optimum itself;
- one ``pareto`` cell per space x dataset with table records: every trained architecture (averaged over its training seeds),
  whether it is on the front of (test accuracy max, robust test accuracy max, params min), and the architectures each
  strategy picked at its largest budget, under ``series`` (for the plot; never a CSV column).

Only numbers a re-run reproduces are top-level in a cell's ``metrics`` (the gate
holds them); wall-clock time sits under ``metrics["timing"]``. Nothing is measured here.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from bench.stats import mean_interval

TRACK = "nas"
SEARCH, OPTIMUM, TABLE, PARETO = "search", "optimum", "table", "pareto"  # cell roles (the first three are also record roles)
REFERENCE = "random"  # the strategy every other is judged against
EXHAUSTIVE = "exhaustive"
GROUP_LABELS = ("space", "dataset", "objective")
ALPHA = 0.05
FOUND_TOLERANCE = 1e-12  # a best within this of the optimum found it
BETTER, WORSE, NOT_BETTER, REFERENCE_VERDICT = "better than random search", "worse than random search", "not better than random search", "reference"
HIGHER, LOWER = ("test_accuracy", "robust_test_accuracy"), ("params",)  # the Pareto front's objectives

EXPLANATIONS = {
    "search-incomplete": "an evaluation of some search failed; that search stopped there and its budgets beyond it are not reported",
    "seeds-incomplete": "some seeds' searches did not reach this budget (they failed earlier); the numbers are over the others",
    "budget-not-reached": "some search ended before this budget (its strategy proposed no new architecture); its best is over the "
    "evaluations it made (see evaluations)",
    "no-optimum": "no exhaustive table result for this space, dataset and objective: regret, found optimum and percentile are unknown",
    "space-exhausted": "a requested budget is larger than the space: reported at the space size (every architecture)",
    "no-feasible": "some seed found no feasible architecture (within the params or latency constraint) in this budget; "
    "best and regret are over the others, the verdict counts it as the worst",
    "table-incomplete": "some trainings of the table failed; each architecture is averaged over the trainings that finished",
}


def group_key(cell: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """(space, dataset, objective): one table and one best-so-far figure."""
    return cell["space"], cell["dataset"], cell["objective"]


def is_search(cell: Mapping[str, Any]) -> bool:
    return cell.get("role") == SEARCH


def _mean(values: Sequence[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return statistics.fmean(found) if found else None


def _interval(values: Sequence[float | None], floor: float | None = None, ceiling: float | None = None) -> tuple[float | None, float | None, float | None]:
    """(mean, low, high) over the values that are not None, the bounds clipped into [floor, ceiling]; all None without values."""
    found = [v for v in values if v is not None]
    if not found:
        return None, None, None
    mean, low, high = mean_interval(found)
    if low is not None and floor is not None:
        low = max(floor, low)
    if high is not None and ceiling is not None:
        high = min(ceiling, high)
    return mean, low, high


def percentile(value: float, quantiles: Sequence[float]) -> float:
    """The share of the table at or below ``value`` (0..1), interpolated in its 0..100th percentiles."""
    if not quantiles or value < quantiles[0]:
        return 0.0
    if value >= quantiles[-1]:
        return 1.0
    i = bisect.bisect_right(quantiles, value) - 1  # quantiles[i] <= value < quantiles[i + 1]
    return (i + (value - quantiles[i]) / (quantiles[i + 1] - quantiles[i])) / (len(quantiles) - 1)


def verdict(mine: Sequence[float | None], reference: Sequence[float | None]) -> tuple[str, float]:
    """(verdict, p) of per-seed best values against random search's: one-sided Mann-Whitney U both ways (unpaired: the seeds are
    independent searches), alpha 0.05; a seed without a feasible architecture counts as the worst. p is the test's in the verdict's direction."""
    from scipy.stats import mannwhitneyu

    a = [-math.inf if v is None else v for v in mine]
    b = [-math.inf if v is None else v for v in reference]
    greater = float(mannwhitneyu(a, b, alternative="greater").pvalue)
    less = float(mannwhitneyu(a, b, alternative="less").pvalue)
    greater, less = (1.0 if math.isnan(p) else p for p in (greater, less))
    if greater < ALPHA:
        return BETTER, greater
    if less < ALPHA:
        return WORSE, less
    return NOT_BETTER, greater


# -- searches ------------------------------------------------------------------
def _step(record: Any) -> int:
    return record.labels.get("step") or 0


def _feasible_value(record: Any) -> float | None:
    """The validation value of a feasible evaluation; None for an infeasible one."""
    value = record.metrics.get("value")
    return value if record.metrics.get("feasible", True) and value is not None else None


class _Search:
    """One seed's search: its ok evaluations up to the first one that failed, the budget it planned."""

    def __init__(self, seed: Any, records: Sequence[Any]) -> None:
        ordered = sorted(records, key=lambda r: (_step(r), r.position))
        self.seed, self.records = seed, ordered
        self.stop = next((r for r in ordered if r.status != "ok"), None)
        self.ok = [r for r in ordered if r.status == "ok" and (self.stop is None or _step(r) < _step(self.stop))]
        self.reached = max((_step(r) for r in self.ok), default=0)
        self.budget = next((r.metrics.get("budget") for r in self.ok if r.metrics.get("budget") is not None), None)

    def covers(self, budget: int, cap: int | None) -> bool:
        """Whether the search speaks for this budget: every evaluation up to it finished, or the search ended (not failed) before it."""
        if self.stop is not None:
            return budget <= self.reached
        planned = self.budget if self.budget is not None else self.reached
        return budget <= (planned if cap is None else min(planned, cap))

    def at(self, budget: int, optimum: Mapping[str, Any] | None) -> dict[str, Any]:
        """The search's best feasible evaluation within ``budget``: its value, step, pick, test value, regret, percentile."""
        used = [r for r in self.ok if _step(r) <= budget]
        feasible = [r for r in used if _feasible_value(r) is not None]
        pick = max(feasible, key=lambda r: (r.metrics["value"], -_step(r)), default=None)
        best = None if pick is None else pick.metrics["value"]
        regret = None if optimum is None or best is None else optimum["value"] - best
        quantiles = (optimum or {}).get("quantiles")
        last = used[-1].metrics if used else {}
        return {
            "seed": self.seed,
            "best_value": best,
            "step": None if pick is None else _step(pick),
            "arch": None if pick is None else pick.labels.get("arch"),
            "arch_key": None if pick is None else pick.metrics.get("arch_key"),
            "test_value": None if pick is None else pick.metrics.get("test_value"),
            "regret": regret,
            "found": None if optimum is None else regret is not None and regret <= FOUND_TOLERANCE,
            "percentile": percentile(best, quantiles) if quantiles and best is not None else None,
            "evaluations": len(used),
            "asks": last.get("asks"),
            "strategy_seconds": sum(r.metrics.get("strategy_seconds") or 0.0 for r in used),
        }


def _series(searches: Sequence[_Search], budget: int, cap: int | None) -> dict[str, Any]:
    """Best-so-far against evaluations, mean and t-interval over the seeds that speak for each step (a search that ended early keeps its best)."""
    steps = list(range(1, budget + 1))
    curves = []
    for search in searches:
        values = {_step(r): _feasible_value(r) for r in search.ok}
        running, best = [], None
        for step in steps:
            value = values.get(step)
            best = value if value is not None and (best is None or value > best) else best
            running.append(best)
        curves.append((search, running))
    mean, low, high = [], [], []
    for i, step in enumerate(steps):
        m, lo, hi = _interval([running[i] for search, running in curves if search.covers(step, cap)])
        mean.append(m)
        low.append(lo)
        high.append(hi)
    return {"steps": steps, "mean": mean, "low": low, "high": high}


def _base(first: Any, members: Sequence[Any], flags: set[str], **labels: Any) -> dict[str, Any]:
    return {
        "track": first.track,
        **labels,
        "norm": None,
        "eps": None,
        "n": None,
        "clean_accuracy": None,
        "robust_accuracy": None,
        "flags": sorted(flags),
        "seconds": sum(r.seconds or 0.0 for r in members),
        "status": "ok",
        "error": next((r.error for r in members if r.error), None),
        "params": {"seeds": []},
        "seeds": [],
        "key": None,
        "keys": [r.key for r in members],
        "metrics": {},
        "series": {},
    }


def _search_cell(group: tuple, strategy: str, budget: int, searches: Sequence[_Search], optimum: Mapping[str, Any] | None, cap: int | None,
                 flags: set[str]) -> dict[str, Any]:  # fmt: skip
    covering = [s for s in searches if s.covers(budget, cap)]
    members = [r for s in searches for r in s.records if _step(r) <= budget]
    per_seed = [s.at(budget, optimum) for s in covering]
    flags = set(flags)
    if len(covering) < len(searches):
        flags.add("seeds-incomplete")
    if any(p["evaluations"] < budget for p in per_seed):
        flags.add("budget-not-reached")
    if any(p["best_value"] is None for p in per_seed):
        flags.add("no-feasible")
    opt = optimum or {}
    best = _interval([p["best_value"] for p in per_seed], ceiling=opt.get("value"))
    regret = _interval([p["regret"] for p in per_seed], floor=0.0)
    test = _interval([p["test_value"] for p in per_seed], ceiling=opt.get("best_test_value"))
    cell = _base(members[0], members, flags, role=SEARCH, **dict(zip(GROUP_LABELS, group, strict=True)), strategy=strategy, budget=budget)
    seeds = [s.seed for s in covering]
    cell.update(seeds=seeds, params={"seeds": seeds})
    cell["metrics"] = {
        **{f"best_value{suffix}": v for suffix, v in zip(("", "_low", "_high"), best, strict=True)},
        **{f"regret{suffix}": v for suffix, v in zip(("", "_low", "_high"), regret, strict=True)},
        **{f"test_value{suffix}": v for suffix, v in zip(("", "_low", "_high"), test, strict=True)},
        "found_optimum": None if optimum is None else sum(bool(p["found"]) for p in per_seed) / len(per_seed),
        "percentile": _mean([p["percentile"] for p in per_seed]),
        "evaluations": statistics.fmean(p["evaluations"] for p in per_seed),
        "asks": _mean([p["asks"] for p in per_seed]),
        "seeds": len(per_seed),
        "verdict": None,  # set across cells, against random search
        "p_value": None,
        "picks": [p["arch"] for p in per_seed],
        "per_seed": {k: [p[k] for p in per_seed] for k in ("seed", "best_value", "test_value", "step", "arch_key")},
        "timing": {"strategy_seconds": _mean([p["strategy_seconds"] for p in per_seed])},
    }
    cell["series"] = _series(covering, budget, cap)
    return cell


def _strategy_cells(group: tuple, strategy: str, records: Sequence[Any], optimum: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The cells of one strategy, budgets ascending; a strategy with no budget to report gets one failed cell (budget None)."""
    by_seed: dict[Any, list[Any]] = {}
    for record in records:
        by_seed.setdefault(record.labels.get("seed"), []).append(record)
    searches = [_Search(seed, found) for seed, found in by_seed.items()]
    cap = (optimum or {}).get("n_archs")
    requested = sorted({b for r in records if r.status == "ok" for b in (r.metrics.get("budgets") or [r.metrics.get("budget")]) if b is not None})
    budgets = sorted({b if cap is None else min(b, cap) for b in requested})
    flags = {f for r in records for f in r.flags} | ({"search-incomplete"} if any(s.stop is not None for s in searches) else set())
    if optimum is None:
        flags.add("no-optimum")
    cells = []
    for budget in budgets:
        if any(s.covers(budget, cap) for s in searches):
            capped = {"space-exhausted"} if cap is not None and budget == cap and any(b > cap for b in requested) else set()
            cells.append(_search_cell(group, strategy, budget, searches, optimum, cap, flags | capped))
    if not cells:
        stopped = next((s.stop for s in searches if s.stop is not None), records[0])
        cell = _base(stopped, records, flags, role=SEARCH, **dict(zip(GROUP_LABELS, group, strict=True)), strategy=strategy, budget=None)
        cell["status"] = stopped.status if stopped.status != "ok" else "failed"
        return [cell]
    error = next((r.error for r in records if r.error), None)
    for cell in cells:
        cell["error"] = error  # a failed evaluation stopped a search of this strategy: every budget of it says why
    seen = {k for c in cells for k in c["keys"]}
    cells[-1]["keys"] += [r.key for r in records if r.key not in seen]  # every record stands behind some cell
    return cells


def _optimum_cell(group: tuple, record: Any) -> dict[str, Any]:
    cell = _base(record, [record], set(record.flags), role=OPTIMUM, **dict(zip(GROUP_LABELS, group, strict=True)), strategy=EXHAUSTIVE, budget=None)
    if record.status != "ok":
        cell["status"] = record.status
        return cell
    m = record.metrics
    cell["budget"] = m.get("n_archs")
    cell["metrics"] = {
        "best_value": m["value"],
        "test_value": m.get("test_value"),
        "best_test_value": m.get("best_test_value"),
        "regret": 0.0,
        "found_optimum": 1.0,
        "percentile": 1.0,
        "n_archs": m.get("n_archs"),
        "n_feasible": m.get("n_feasible"),
        "val_accuracy": m.get("val_accuracy"),
        "test_accuracy": m.get("test_accuracy"),
        "arch": m.get("arch") or record.labels.get("arch"),  # the track learns it by running the job: in its metrics
        "arch_key": m.get("arch_key"),
    }
    cell["series"] = {"quantiles": list(m.get("quantiles") or [])}
    return cell


def _judge(cells: Sequence[dict[str, Any]]) -> None:
    """Each ok search cell's verdict against random search of the same group at the same budget."""
    reference = {(group_key(c), c["budget"]): c for c in cells if is_search(c) and c["strategy"] == REFERENCE and c["status"] == "ok"}
    for cell in cells:
        if not is_search(cell) or cell["status"] != "ok":
            continue
        if cell["strategy"] == REFERENCE:
            cell["metrics"]["verdict"] = REFERENCE_VERDICT
            continue
        other = reference.get((group_key(cell), cell["budget"]))
        if other is not None:
            found, p = verdict(cell["metrics"]["per_seed"]["best_value"], other["metrics"]["per_seed"]["best_value"])
            cell["metrics"].update(verdict=found, p_value=p)


# -- the Pareto front of the table ---------------------------------------------
def pareto_front(points: Sequence[Mapping[str, Any]], *, higher: Sequence[str] = HIGHER, lower: Sequence[str] = LOWER) -> list[bool]:
    """Whether each point is on the Pareto front: no other point is at least as good in every objective and better in one.
    An objective some point lacks (None) is left out for all."""
    used = [(k, 1) for k in higher] + [(k, -1) for k in lower]
    used = [(k, sign) for k, sign in used if points and all(p.get(k) is not None for p in points)]
    vectors = [tuple(sign * p[k] for k, sign in used) for p in points]

    def dominates(a: tuple, b: tuple) -> bool:
        return all(x >= y for x, y in zip(a, b, strict=True)) and a != b

    return [not any(dominates(other, mine) for other in vectors) for mine in vectors]


def _pareto_cell(space: Any, dataset: Any, records: Sequence[Any], searches: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Every trained architecture of the table (means over its training seeds), the front, and each strategy's picks at its largest budget."""
    ok = [r for r in records if r.status == "ok"]
    flags = {"table-incomplete"} if len(ok) < len(records) else set()
    cell = _base(records[0], records, flags, role=PARETO, space=space, dataset=dataset, objective=None, strategy="table", budget=None)
    by_arch: dict[Any, list[Any]] = {}
    for record in ok:
        by_arch.setdefault(record.metrics.get("arch_key") or record.labels.get("arch"), []).append(record)
    fields = ("val_accuracy", "test_accuracy", "robust_val_accuracy", "robust_test_accuracy", "params", "latency_ms")
    points = [
        {"arch": found[0].labels.get("arch"), "arch_key": key, **{f: _mean([r.metrics.get(f) for r in found]) for f in fields}, "trainings": len(found)}
        for key, found in by_arch.items()
    ]
    for point, front in zip(points, pareto_front(points), strict=True):
        point["front"] = front
    where = {p["arch_key"]: p for p in points}
    largest: dict[tuple, Mapping[str, Any]] = {}
    for search in searches:
        if search["status"] == "ok" and search["budget"] is not None:
            largest[(search["objective"], search["strategy"])] = search  # budgets ascend: the last is the largest
    picks = []
    for (objective, strategy), search in largest.items():
        keys = search["metrics"]["per_seed"]["arch_key"]
        for key, label in dict(zip(keys, search["metrics"]["picks"], strict=True)).items():
            if key is None:
                continue  # a seed without a feasible architecture picked none
            point = where.get(key, {})
            picks.append({"objective": objective, "strategy": strategy, "budget": search["budget"], "arch": point.get("arch", label), "arch_key": key,
                          "seeds": keys.count(key), **{f: point.get(f) for f in ("test_accuracy", "robust_test_accuracy", "params")}})  # fmt: skip
    cell["seeds"] = sorted({r.labels.get("seed") for r in ok}, key=str)
    cell["params"] = {"seeds": cell["seeds"]}
    cell["status"] = "ok" if ok else records[0].status
    cell["metrics"] = {"n_archs": len(points), "n_front": sum(p["front"] for p in points)} if ok else {}
    cell["series"] = {"points": points, "picks": picks}
    return cell


# -- all cells -----------------------------------------------------------------
def aggregate(records: Sequence[Any]) -> list[dict[str, Any]]:
    """The cells, in first-seen order: per space x dataset x objective, each strategy's budgets ascending, then the optimum;
    then one Pareto cell per space x dataset with table records."""
    ordered = sorted(records, key=lambda r: r.position)
    groups: dict[tuple, dict[str, list[Any]]] = {}
    optima: dict[tuple, Any] = {}
    tables: dict[tuple, list[Any]] = {}
    for record in ordered:
        role = record.labels.get("role")
        if role == TABLE:
            tables.setdefault((record.labels.get("space"), record.labels.get("dataset")), []).append(record)
            continue
        group = tuple(record.labels.get(k) for k in GROUP_LABELS)
        strategies = groups.setdefault(group, {})
        if role == OPTIMUM:
            optima.setdefault(group, record)
        elif role == SEARCH:
            strategies.setdefault(record.labels.get("strategy"), []).append(record)
    cells: list[dict[str, Any]] = []
    for group, strategies in groups.items():
        found = optima.get(group)
        optimum = found.metrics if found is not None and found.status == "ok" else None
        for strategy, members in strategies.items():
            cells += _strategy_cells(group, strategy, members, optimum)
        if found is not None:
            cells.append(_optimum_cell(group, found))
    _judge(cells)
    for (space, dataset), members in tables.items():
        searches = [c for c in cells if is_search(c) and (c["space"], c["dataset"]) == (space, dataset)]
        cells.append(_pareto_cell(space, dataset, members, searches))
    return cells
