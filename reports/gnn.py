"""The GNN track's leaderboard: graph networks and graph defenses under structure, feature and point attacks, over seeds.

From the stored records (one per model x defense x attack x mode x budget x
dataset x seed; ``mode`` is ``adaptive``, the attack ran against the whole
model with its defense, or ``transfer``, the perturbation was computed on a
surrogate and applied) this module builds, in plan order:

- one cell per model x defense x attack x mode x budget x dataset: means over
  the seeds that finished (``ok``) and their 95 % Student-t intervals over
  seeds (``bench.stats.mean_interval``, clipped to [0, 1]);
- then one worst-case cell (``attack = WORST_CASE``, ``mode = "all"``) per
  model x defense x budget unit x budget x dataset: per seed, a node (or test
  graph) counts as robust only if it is robust in every ok job of that group
  and seed (read from the per-example outcomes), so it is never above any
  single attack; accuracy per seed, then mean and interval over seeds;
- flags only several cells together show: ``gradient-masking`` (the adaptive
  attack leaves more than ``MASKING_GAP`` less robust accuracy than the same
  attack transferred; both cells get it) and ``below-mlp`` (under attack the
  graph network falls below a graph-free model under the same attack and
  budget, for edge flips its clean accuracy; the cell gets it and ``mlp_accuracy``).

``reports.gnn_tables`` renders the page (tables, summary lines, markdown);
``gradient_masking`` gives the track's ``derive`` the same verdict per job.
Only numbers a re-run reproduces are top-level in a cell's ``metrics`` (the gate holds them all); wall-clock
time sits under ``metrics["timing"]``, what the attack changed under ``metrics["perturbation"]``. Nothing is measured here.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from bench.stats import mean_interval

TRACK = "gnn"
WORST_CASE = "worst-case"  # the attack label of the per-example worst case, as every track names it (bench.reporting.WORST_CASE)
ALL_MODES = "all"  # the mode label of a worst-case cell: it takes adaptive and transferred attacks together
ADAPTIVE, TRANSFER = "adaptive", "transfer"
CELL_LABELS = ("model", "defense", "attack", "mode", "budget", "dataset")  # a cell: every label of a record but its seed
WORST_CASE_LABELS = ("model", "defense", "budget_unit", "budget", "dataset")  # a worst case: every attack and mode of these
MASKING_GAP = 0.05  # adaptive more than this below transferred: the transferred robustness was gradient masking
PERCENT_UNITS = {"edges": "edges", "points": "points"}  # budgets that are fractions, shown as percent of these
UNIT_TITLES = {"edges": "edge flips", "eps": "perturbation eps", "points": "dropped points"}
BELOW_MLP_MARK = "↓MLP"
_TOLERANCE = 1e-9  # float noise in a comparison of means: "more than 5 points" is never 5.000000000000004
_DERIVED = frozenset({"gradient-masking", "below-mlp"})  # computed here across cells, never taken from a job's flags

EXPLANATIONS = {
    "gradient-masking": "the adaptive attack leaves more than 5 points less robust accuracy than the same attack transferred from the "
    "undefended surrogate: the defense's robustness under non-adaptive attacks was an artifact (gradient masking)",
    "below-mlp": "under attack, the graph network falls below a graph-free model (the MLP) under the same attack and budget (for edge "
    "flips, which cannot move it: its clean accuracy) on the same data: "
    "the graph now hurts more than it helps",
    "seeds-incomplete": "some seeds of this cell failed or were invalid; the numbers are over the others",
    "worst-case-incomplete": "some attack of this worst case did not finish ok in some seed, stored no outcomes, or attacked other "
    "targets: the worst case covers only the attacks and targets they share (an upper bound)",
    "threat-model-violated": "the attack's perturbed graph broke its threat model (more flips than the budget, a directed or self-loop "
    "edge, features outside the ball); the job is invalid",
    "transfer-only": "the model is not differentiable in its edges: structure gradient attacks ran on a GCN surrogate and were "
    "transferred; a lower bound on its vulnerability",
}


# -- names ---------------------------------------------------------------------
def name(model: str, defense: str) -> str:
    """'gcn', 'gcn with svd(rank=10)': the defense unless none."""
    return model if defense == "none" else f"{model} with {defense}"


def budget_text(budget: float, unit: str | None) -> str:
    """'5 % of edges', '10 % of points', 'eps 0.1'; 'budget 0.05' where the unit is unknown (every job of the attack failed)."""
    if unit in PERCENT_UNITS:
        return f"{100 * budget:g} % of {PERCENT_UNITS[unit]}"
    return f"eps {budget:g}" if unit is not None else f"budget {budget:g}"


def budget_short(budget: float, unit: str | None) -> str:
    """'5 %', 'eps 0.1': a budget in a column header."""
    return f"{100 * budget:g} %" if unit in PERCENT_UNITS else f"eps {budget:g}"


def attack_text(attack: str, mode: str, surrogate: str | None = None) -> str:
    """'prbcd', 'prbcd, transferred from gcn'."""
    if mode != TRANSFER:
        return attack
    return f"{attack}, transferred" + (f" from {surrogate}" if surrogate else "")


def is_worst_case(cell: Mapping[str, Any]) -> bool:
    return cell["attack"] == WORST_CASE


def row_order(cells: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], int]:
    """(model, defense) -> its rank: models in plan order, within a model defense 'none' first, then the defenses in plan order."""
    models = list(dict.fromkeys(c["model"] for c in cells))
    defenses = list(dict.fromkeys(c["defense"] for c in cells))
    pairs = dict.fromkeys((c["model"], c["defense"]) for c in cells)
    ranked = sorted(pairs, key=lambda p: (models.index(p[0]), p[1] != "none", defenses.index(p[1])))
    return {pair: i for i, pair in enumerate(ranked)}


# -- numbers over seeds --------------------------------------------------------
def _clipped(low: float | None, high: float | None) -> tuple[float | None, float | None]:
    """An accuracy's interval never leaves [0, 1] (a t-interval knows nothing of a number's range); (None, None) with one seed."""
    if low is None or high is None:
        return None, None
    return max(0.0, low), min(1.0, high)


def _mean(values: Sequence[float | None]) -> float | None:
    """The mean of the values a seed has (None where a seed could not measure it); None when none has one."""
    found = [v for v in values if v is not None]
    return statistics.fmean(found) if found else None


def _accuracies(clean: Sequence[float], robust: Sequence[float], drops: Sequence[float | None]) -> dict[str, Any]:
    """Means over seeds, their clipped t-intervals, the relative drop (mean of the seeds' drops) and the seed count."""
    clean_mean, *clean_bounds = mean_interval(clean)
    robust_mean, *robust_bounds = mean_interval(robust)
    clean_low, clean_high = _clipped(*clean_bounds)
    robust_low, robust_high = _clipped(*robust_bounds)
    return {
        "clean_accuracy": clean_mean,
        "robust_accuracy": robust_mean,
        "relative_drop": _mean(drops),
        "clean_accuracy_low": clean_low,
        "clean_accuracy_high": clean_high,
        "robust_accuracy_low": robust_low,
        "robust_accuracy_high": robust_high,
        "seeds": len(clean),
    }


def _std(values: Sequence[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _headline(cell: dict[str, Any]) -> dict[str, Any]:
    """The cell's top-level accuracies and intervals (what exports and the harness read) from its metrics."""
    metrics = cell["metrics"]

    def bounds(field: str) -> list[float] | None:
        low, high = metrics.get(f"{field}_low"), metrics.get(f"{field}_high")
        return None if low is None or high is None else [low, high]

    cell.update(
        clean_accuracy=metrics.get("clean_accuracy"),
        robust_accuracy=metrics.get("robust_accuracy"),
        clean_interval=bounds("clean_accuracy"),
        robust_interval=bounds("robust_accuracy"),
    )
    return cell


# -- cells ---------------------------------------------------------------------
def _units(records: Sequence[Any]) -> dict[str, str]:
    """attack -> its budget unit, from every record that stored one (a failed job stores none: its attack's other jobs say it)."""
    found: dict[str, str] = {}
    for record in records:
        unit = (record.metrics or {}).get("budget_unit")
        if unit is not None:
            found.setdefault(record.labels.get("attack"), unit)
    return found


def _base(first: Any, members: Sequence[Any], ok: Sequence[Any], flags: set[str], **labels: Any) -> dict[str, Any]:
    seeds = [r.labels.get("seed") for r in ok]
    return {
        "track": first.track,
        **labels,
        "norm": None,
        "eps": None,
        "n": None,
        "clean_accuracy": None,
        "robust_accuracy": None,
        "clean_interval": None,
        "robust_interval": None,
        "mlp_accuracy": None,
        "mlp_model": None,
        "flags": sorted(flags),
        "seconds": sum(r.seconds or 0.0 for r in members),
        "status": "ok" if ok else first.status,
        "error": next((r.error for r in members if r.error), None),
        "params": {"seeds": seeds},
        "seeds": seeds,
        "key": None,
        "keys": [r.key for r in members],
        "metrics": {},
    }


def _attack_cell(members: Sequence[Any], units: Mapping[str, str]) -> dict[str, Any]:
    """One attack x mode x budget of a model x defense x dataset, over its seeds."""
    first = members[0]
    ok = [r for r in members if r.status == "ok"]
    flags = {f for r in members for f in r.flags} - _DERIVED
    if ok and len(ok) < len(members):
        flags.add("seeds-incomplete")
    unit = next((r.metrics.get("budget_unit") for r in members if (r.metrics or {}).get("budget_unit")), units.get(first.labels["attack"]))
    kind = next((r.metrics.get("kind") for r in members if (r.metrics or {}).get("kind")), None)
    cell = _base(first, members, ok, flags, **{k: first.labels[k] for k in CELL_LABELS}, budget_unit=unit, kind=kind)
    if not ok:
        return cell
    cell["n"] = ok[0].metrics.get("n_targets")
    clean, robust = [r.metrics["clean_accuracy"] for r in ok], [r.metrics["robust_accuracy"] for r in ok]
    allowed = [r.metrics.get("allowed") for r in ok]
    cell["metrics"] = {
        **_accuracies(clean, robust, [r.metrics.get("relative_drop") for r in ok]),
        "budget_unit": unit,
        "kind": kind,
        "level": ok[0].metrics.get("level"),
        "graph_free": any(bool(r.metrics.get("graph_free")) for r in ok),
        "surrogate": next((r.metrics.get("surrogate") for r in ok if r.metrics.get("surrogate")), None),
        "std": {"clean_accuracy": _std(clean), "robust_accuracy": _std(robust)},
        "perturbation": {
            "changed": _mean([r.metrics.get("changed") for r in ok]),
            "allowed": _mean(allowed),
            "n_targets": ok[0].metrics.get("n_targets"),
        },
        "timing": {
            "attack_seconds": _mean([r.metrics.get("attack_seconds") for r in ok]),
            "train_seconds": _mean([r.metrics.get("train_seconds") for r in ok]),
        },
    }
    return _headline(cell)


def _seed_worst_case(jobs: Sequence[Any], outcomes: Mapping[str, Sequence[Any]]) -> tuple[float, float, int, bool] | None:
    """(clean, worst-case accuracy, n, whether the jobs attacked the same targets) of one seed's jobs; None with no outcomes or no shared target."""
    rows = [{o.example: o.values for o in outcomes[r.key]} for r in jobs]
    shared = set(rows[0]).intersection(*rows[1:])
    if not shared:
        return None
    same = all(len(row) == len(shared) for row in rows)
    clean = sum(bool(rows[0][i]["clean"]) for i in shared)  # the model's clean prediction: the same in every job of the seed
    robust = sum(all(bool(row[i]["robust"]) for row in rows) for i in shared)
    return clean / len(shared), robust / len(shared), len(shared), same


def _worst_case_cell(members: Sequence[Any], outcomes: Mapping[str, Sequence[Any]], unit: str) -> dict[str, Any]:
    """Every attack and mode of one model x defense x budget unit x budget x dataset, example by example, then over seeds."""
    first = members[0]
    by_seed: dict[Any, list[Any]] = {}
    for record in members:
        by_seed.setdefault(record.labels.get("seed"), []).append(record)
    flags = {f for r in members for f in r.flags} - _DERIVED - {"seeds-incomplete"}
    per_seed: list[tuple[Any, tuple[float, float, int, bool]]] = []
    used: list[Any] = []
    for seed, jobs in by_seed.items():
        usable = [r for r in jobs if r.status == "ok" and outcomes.get(r.key)]
        found = _seed_worst_case(usable, outcomes) if usable else None
        if found is None:
            continue
        if len(usable) < len(jobs) or not found[3]:
            flags.add("worst-case-incomplete")
        per_seed.append((seed, found))
        used += usable
    if len(per_seed) < len(by_seed):
        flags.add("seeds-incomplete")
    labels = {"model": first.labels["model"], "defense": first.labels["defense"], "attack": WORST_CASE, "mode": ALL_MODES}
    labels.update(budget=first.labels["budget"], dataset=first.labels["dataset"], budget_unit=unit)
    kinds = sorted({r.metrics.get("kind") for r in members if (r.metrics or {}).get("kind")})
    cell = _base(first, members, [], flags, **labels, kind=", ".join(kinds) or None)
    cell.update(status="ok" if per_seed else first.status if all(r.status == first.status for r in members) else "failed")
    cell["seeds"] = cell["params"]["seeds"] = [seed for seed, _ in per_seed]
    if not per_seed:
        return cell
    cell["error"] = None  # the failed jobs' errors are their own cells'; this one stands on the others
    clean = [found[0] for _, found in per_seed]
    robust = [found[1] for _, found in per_seed]
    drops = [1 - r / c if c > 0 else None for c, r in zip(clean, robust, strict=True)]
    cell["n"] = per_seed[0][1][2]
    means: dict[tuple[str, str], list[float]] = {}
    surrogates: dict[tuple[str, str], str | None] = {}
    for record in used:
        pair = (record.labels["attack"], record.labels["mode"])
        means.setdefault(pair, []).append(record.metrics["robust_accuracy"])
        surrogates.setdefault(pair, record.metrics.get("surrogate"))
    strongest = min(means, key=lambda pair: statistics.fmean(means[pair]))
    cell["metrics"] = {
        **_accuracies(clean, robust, drops),
        "budget_unit": unit,
        "kind": cell["kind"],
        "level": next((r.metrics.get("level") for r in used), None),
        "graph_free": any(bool(r.metrics.get("graph_free")) for r in used),
        "surrogate": None,
        "std": {"clean_accuracy": _std(clean), "robust_accuracy": _std(robust)},
        "worst_case": {
            "attacks": [f"{attack} ({mode})" for attack, mode in means],
            "strongest_attack": strongest[0],
            "strongest_mode": strongest[1],
            "strongest_surrogate": surrogates[strongest],
            "per_seed": [found[1] for _, found in per_seed],
        },
        "perturbation": {"n_targets": cell["n"]},
        "timing": {"attack_seconds": sum(r.metrics.get("attack_seconds") or 0.0 for r in used) / len(per_seed)},
    }
    return _headline(cell)


def _attack_cells(ordered: Sequence[Any], units: Mapping[str, str]) -> list[dict[str, Any]]:
    """One cell per attack x mode x budget (every label of a record but its seed), in plan order."""
    members: dict[tuple, list[Any]] = {}
    for record in ordered:
        members.setdefault(tuple(record.labels.get(k) for k in CELL_LABELS), []).append(record)
    return [_attack_cell(found, units) for found in members.values()]


def aggregate(records: Sequence[Any], outcomes: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The cells, in plan order: one per attack x mode x budget (over seeds), then one worst case per model x defense x unit x budget;
    then ``gradient-masking`` and ``below-mlp`` set across them."""
    ordered = sorted(records, key=lambda r: r.position)
    units = _units(ordered)
    cells = _attack_cells(ordered, units)
    groups: dict[tuple, list[Any]] = {}
    for record in ordered:
        unit = (record.metrics or {}).get("budget_unit") or units.get(record.labels.get("attack"))
        if unit is not None:
            key = (record.labels.get("model"), record.labels.get("defense"), unit, record.labels.get("budget"), record.labels.get("dataset"))
            groups.setdefault(key, []).append(record)
    cells += [_worst_case_cell(found, outcomes, key[2]) for key, found in groups.items()]
    return _cross_flags(cells)


# -- flags across cells --------------------------------------------------------
def _masked(adaptive: float, transferred: float) -> bool:
    return transferred - adaptive > MASKING_GAP + _TOLERANCE


def masked_pairs(cells: Sequence[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """(adaptive cell, transfer cell) of the same model, defense, attack, budget and dataset where the adaptive attack leaves
    more than ``MASKING_GAP`` less robust accuracy than the transferred one; in the adaptive cells' order."""
    transferred = {
        tuple(c[k] for k in CELL_LABELS if k != "mode"): c for c in cells if c["mode"] == TRANSFER and c["status"] == "ok" and c["robust_accuracy"] is not None
    }
    pairs = []
    for cell in cells:
        if cell["mode"] != ADAPTIVE or cell["status"] != "ok" or cell["robust_accuracy"] is None:
            continue
        other = transferred.get(tuple(cell[k] for k in CELL_LABELS if k != "mode"))
        if other is not None and _masked(cell["robust_accuracy"], other["robust_accuracy"]):
            pairs.append((cell, other))
    return pairs


def graph_free_reference(cells: Sequence[Mapping[str, Any]]) -> dict[str, tuple[str, float]]:
    """dataset -> (graph-free model, its mean clean accuracy): the best undefended graph-free model of the dataset.

    A model's clean accuracy is the same in every attack's job of a seed, so it is read from the cell of its
    with the most seeds (the first such in plan order).
    """
    best: dict[tuple[str, str], Mapping[str, Any]] = {}
    for cell in cells:
        metrics = cell.get("metrics") or {}
        if cell["status"] != "ok" or cell["defense"] != "none" or not metrics.get("graph_free") or is_worst_case(cell):
            continue
        key = (cell["dataset"], cell["model"])
        if key not in best or metrics["seeds"] > best[key]["metrics"]["seeds"]:
            best[key] = cell
    found: dict[str, tuple[str, float]] = {}
    for (dataset, model), cell in best.items():
        accuracy = cell["metrics"]["clean_accuracy"]
        if dataset not in found or accuracy > found[dataset][1]:
            found[dataset] = (model, accuracy)
    return found


def _cross_flags(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``gradient-masking`` on both cells of each masked pair; ``mlp_accuracy`` (and ``below-mlp`` when under it) on the cells of graph networks:
    the graph-free model's accuracy under the same attack and budget (for edge flips, which cannot move it, its clean accuracy), else its
    clean accuracy."""
    for adaptive, transferred in masked_pairs(cells):
        for cell in (adaptive, transferred):
            cell["flags"] = sorted({*cell["flags"], "gradient-masking"})
    reference = graph_free_reference(cells)
    attacked: dict[tuple, dict[str, Any]] = {}  # the best graph-free model under each attack and budget
    for cell in cells:
        if cell["status"] == "ok" and cell["metrics"].get("graph_free") and cell["defense"] == "none":
            key = (cell["dataset"], cell["attack"], cell["budget_unit"], cell["budget"])
            if key not in attacked or cell["robust_accuracy"] > attacked[key]["robust_accuracy"]:
                attacked[key] = cell
    for cell in cells:
        if cell["status"] != "ok" or cell["metrics"].get("graph_free") or cell["dataset"] not in reference:
            continue
        same = attacked.get((cell["dataset"], cell["attack"], cell["budget_unit"], cell["budget"]))
        model, accuracy = (same["model"], same["robust_accuracy"]) if same is not None else reference[cell["dataset"]]
        cell.update(mlp_accuracy=accuracy, mlp_model=model)
        if cell["robust_accuracy"] < accuracy - _TOLERANCE:
            cell["flags"] = sorted({*cell["flags"], "below-mlp"})
    return cells


def gradient_masking(records: Sequence[Any]) -> dict[str, list[str]]:
    """Job key -> ['gradient-masking'] for the ok transfer jobs of each masked pair (the track's ``derive``): the number that was an artifact."""
    ordered = sorted(records, key=lambda r: r.position)
    units = _units(ordered)
    cells = _attack_cells(ordered, units)
    by_key = {r.key: r for r in ordered}
    return {key: ["gradient-masking"] for _, transferred in masked_pairs(cells) for key in transferred["keys"] if by_key[key].status == "ok"}
