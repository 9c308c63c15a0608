"""The uncertainty track's leaderboard: cells aggregated over seeds, tables, and Ovadia et al.'s orderings checked.

``aggregate`` turns stored records (one per model x estimator x seed) into
one cell per model x estimator: every number the mean over seeds, its
standard deviation in ``metrics["std"]``, per-shift-level metrics in
``metrics["shift"]`` and summed reliability bins in ``metrics["reliability"]``.
Everything here reads stored numbers; nothing is measured again.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from reports.escaping import markdown_text
from reports.leaderboard import Table

SUMMARY = ("accuracy", "nll", "brier", "ece", "aurc")
SHIFT_METRICS = ("accuracy", "nll", "brier", "ece")
TITLES = {"accuracy": "accuracy %", "nll": "NLL", "brier": "Brier", "ece": "ECE %", "aurc": "AURC"}
PERCENT = ("accuracy", "ece")
LOWER_IS_BETTER = ("nll", "brier", "ece", "aurc")


def _flat(metrics: Mapping[str, Any]) -> dict[str, float]:
    """One seed's headline numbers under flat names (the CI gate reads these)."""
    flat = {k: metrics["in_distribution"][k] for k in SUMMARY}
    for label, found in metrics.get("ood", {}).items():
        flat[f"ood_auroc_{label}"] = found["auroc"]
        flat[f"ood_aupr_{label}"] = found["aupr"]
        if found.get("auroc_epistemic") is not None:
            flat[f"ood_auroc_epistemic_{label}"] = found["auroc_epistemic"]
    for label, found in metrics.get("adversarial", {}).items():
        flat[f"adv_auroc_{label}"] = found["auroc"]
        if found.get("auroc_epistemic") is not None:
            flat[f"adv_auroc_epistemic_{label}"] = found["auroc_epistemic"]
        flat[f"adv_accuracy_{label}"] = found["accuracy"]
    return flat


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def aggregate(records: Sequence[Any]) -> list[dict[str, Any]]:
    """One cell per model x estimator x dataset, in plan order, from the records of its seeds."""
    groups: dict[tuple, list[Any]] = {}
    for record in records:
        groups.setdefault((record.model, record.estimator, record.dataset), []).append(record)
    return [_cell(members) for members in groups.values()]


def _cell(members: Sequence[Any]) -> dict[str, Any]:
    first = members[0]
    ok = [r for r in members if r.status == "ok"]
    cell: dict[str, Any] = {
        "track": first.track,
        "model": first.model,
        "defense": first.estimator,
        "estimator": first.estimator,
        "attack": "uncertainty",
        "dataset": first.dataset,
        "norm": None,
        "eps": None,
        "n": ok[0].n if ok else None,
        "clean_accuracy": None,
        "robust_accuracy": None,
        "flags": sorted({f for r in members for f in r.flags} | ({"seeds-incomplete"} if ok and len(ok) < len(members) else set())),
        "seconds": sum(r.seconds or 0.0 for r in members),
        "status": "ok" if ok else members[0].status,
        "error": next((r.error for r in members if r.error), None),
        "params": {"seeds": [r.params.get("seed") for r in ok]},
        "seeds": [r.params.get("seed") for r in ok],
        "metrics": {},
        "key": None,
        "keys": [r.key for r in members],
    }
    if not ok:
        return cell
    flats = [_flat(r.metrics) for r in ok]
    names = [k for k in flats[0] if all(k in f for f in flats)]
    pairs = {k: _mean_std([f[k] for f in flats]) for k in names}
    metrics: dict[str, Any] = {k: v[0] for k, v in pairs.items()}
    metrics["std"] = {k: v[1] for k, v in pairs.items()}
    metrics["shift"] = {
        name: [_level(entry["level"], [r.metrics["shift"][name][i] for r in ok]) for i, entry in enumerate(entries)]
        for name, entries in ok[0].metrics.get("shift", {}).items()
    }
    metrics["entropy"] = {k: statistics.fmean(r.metrics["in_distribution"][k] for r in ok) for k in ("total", "aleatoric", "epistemic")}
    bins = [r.metrics["in_distribution"]["reliability"] for r in ok]
    metrics["reliability"] = {k: [sum(values) for values in zip(*(b[k] for b in bins), strict=True)] for k in ("count", "correct", "confidence")}
    temperatures = [r.metrics["temperature"] for r in ok if "temperature" in r.metrics]
    if temperatures:
        metrics["fitted"] = {"temperature": statistics.fmean(temperatures)}
    cell["metrics"] = metrics
    cell["clean_accuracy"] = metrics["accuracy"]
    return cell


def _level(level: float, found: Sequence[Mapping[str, float]]) -> dict[str, float]:
    out = {"level": level}
    for key in SHIFT_METRICS:
        out[key], out[f"{key}_std"] = _mean_std([f[key] for f in found])
    return out


# -- display -------------------------------------------------------------------
def _show(metric: str, mean: float | None, std: float | None = None) -> str:
    if mean is None:
        return "n/a"
    scale, digits = (100, 1) if metric in PERCENT or metric.startswith("adv_accuracy") else (1, 3)
    text = f"{scale * mean:.{digits}f}"
    return text + (f" ± {scale * std:.{digits}f}" if std is not None else "")


def _labels(cells: Sequence[Mapping[str, Any]], prefix: str) -> list[str]:
    """The OOD sets or attacks the cells hold (``prefix`` ``ood_auroc_`` or ``adv_auroc_``), in first-seen order."""
    found: dict[str, None] = {}
    for cell in cells:
        for key in cell.get("metrics") or {}:
            if key.startswith(prefix) and not key.startswith(prefix.replace("auroc_", "auroc_epistemic_")):
                found[key[len(prefix) :]] = None
    return list(found)


def _summary_table(dataset: str, cells: Sequence[Mapping[str, Any]]) -> Table:
    oods, attacks = _labels(cells, "ood_auroc_"), _labels(cells, "adv_auroc_")
    columns = [(k, TITLES[k]) for k in SUMMARY] + [(f"ood_auroc_{o}", f"OOD AUROC {o}") for o in oods]
    for a in attacks:
        columns += [(f"adv_auroc_{a}", f"adv AUROC {a} (entropy)"), (f"adv_auroc_epistemic_{a}", f"adv AUROC {a} (epistemic)")]
    rows, values = [], []
    for cell in cells:
        metrics, std = cell.get("metrics") or {}, (cell.get("metrics") or {}).get("std") or {}
        if cell["status"] != "ok":
            rows.append((cell["model"], cell["estimator"], *([cell["status"]] * len(columns))))
            values.append((None, None, *([None] * len(columns))))
            continue
        spread = len(cell.get("seeds") or ()) > 1  # one seed has no spread to show
        rows.append((cell["model"], cell["estimator"], *(_show(k, metrics.get(k), std.get(k) if spread else None) for k, _ in columns)))
        values.append((None, None, *(metrics.get(k) for k, _ in columns)))
    seeds = sorted({len(c.get("seeds") or ()) for c in cells})
    sizes = ", ".join(str(n) for n in sorted({c["n"] for c in cells if c["n"]}))
    note = (
        f"Mean ± std over {', '.join(map(str, seeds))} seed{'s' if seeds != [1] else ''}; n = {sizes} test points. "
        "OOD and adversarial-detection AUROC score inputs by total predictive entropy (every estimator); "
        "the epistemic column scores by mutual information, which `none` and `temperature` do not have (n/a: a single deterministic prediction). "
        "Adversarial inputs come from each attack aimed at the estimator's own predictive distribution "
        "(mc-dropout: its deterministic network); detection AUROC compares them with the clean inputs."
    )
    headers = ("model", "estimator", *(t for _, t in columns))
    return Table(f"{dataset}: in distribution, OOD and adversarial detection", headers, tuple(rows), tuple(values), note)


def _shift_tables(dataset: str, cells: Sequence[Mapping[str, Any]]) -> list[Table]:
    shifts = list(dict.fromkeys(name for c in cells for name in (c.get("metrics") or {}).get("shift", {})))
    tables = []
    for shift in shifts:
        with_shift = [c for c in cells if shift in (c.get("metrics") or {}).get("shift", {})]
        levels = [entry["level"] for entry in with_shift[0]["metrics"]["shift"][shift]]
        for metric in ("accuracy", "ece"):
            rows, values = [], []
            for cell in with_shift:
                entries = cell["metrics"]["shift"][shift]
                clean = cell["metrics"].get(metric)
                rows.append((cell["model"], cell["estimator"], _show(metric, clean), *(_show(metric, e[metric]) for e in entries)))
                values.append((None, None, clean, *(e[metric] for e in entries)))
            headers = ("model", "estimator", "clean", *(f"{level:g}" for level in levels))
            tables.append(Table(f"{dataset}: {TITLES[metric]} under shift '{shift}' (mean over seeds)", headers, tuple(rows), tuple(values)))
    return tables


def uncertainty_tables(cells: Sequence[Mapping[str, Any]]) -> list[Table]:
    tables = []
    for dataset in dict.fromkeys(c["dataset"] for c in cells):
        members = [c for c in cells if c["dataset"] == dataset]
        tables.append(_summary_table(dataset, members))
        tables += _shift_tables(dataset, [c for c in members if c["status"] == "ok"])
    return tables


def orderings(cells: Sequence[Mapping[str, Any]]) -> list[str]:
    """Ovadia et al.'s orderings, checked on the stored numbers: who degrades least under each shift, and does temperature's ECE erode."""
    lines = []
    ok = [c for c in cells if c["status"] == "ok"]
    for shift in dict.fromkeys(name for c in ok for name in c["metrics"].get("shift", {})):
        members = [c for c in ok if shift in c["metrics"]["shift"]]
        for metric in ("accuracy", "nll", "ece"):
            mean = {f"{c['estimator']}": statistics.fmean(e[metric] for e in c["metrics"]["shift"][shift]) for c in members}
            ranked = sorted(mean, key=mean.get, reverse=metric not in LOWER_IS_BETTER)
            text = (" > " if metric not in LOWER_IS_BETTER else " < ").join(f"{name} {_show(metric, mean[name])}" for name in ranked)
            best = "ensemble is best" if ranked and ranked[0].startswith("ensemble") else f"{ranked[0]} is best, not the ensemble"
            lines.append(f"- {shift}, {TITLES[metric]} averaged over levels: {text} ({best})")
        for cell in members:
            if cell["estimator"].startswith("temperature"):
                entries = cell["metrics"]["shift"][shift]
                half = len(entries) // 2
                low, high = statistics.fmean(e["ece"] for e in entries[:half] or entries), statistics.fmean(e["ece"] for e in entries[half:])
                clean = cell["metrics"]["ece"]
                verdict = "erodes as shift grows" if min(low, high) > clean else "does not erode"
                lines.append(
                    f"- {shift}, temperature scaling's ECE: clean {_show('ece', clean)}, "
                    f"milder half of the levels {_show('ece', low)}, stronger half {_show('ece', high)}: its calibration {verdict}"
                )
    return lines


def uncertainty_markdown(cells: Sequence[Mapping[str, Any]]) -> str:
    if not cells:
        return "# Leaderboard\n\nNo results yet.\n"
    lines = [f"# Leaderboard: {markdown_text(cells[0]['track'])} track", ""]
    for table in uncertainty_tables(cells):
        lines += [table.markdown()]
    found = orderings(cells)
    if found:
        lines += ["## Ovadia et al. (2019) orderings on these numbers", "", *map(markdown_text, found), ""]
    failed = [c for c in cells if c["status"] == "failed"]
    if failed:
        lines += ["## Failed jobs", "", *(markdown_text(f"- {c['model']} / {c['estimator']}: {c['error']}") for c in failed), ""]
    lines.append("Reliability diagrams: reliability-*.png in the run folder; metric-against-shift plots in leaderboard.html.")
    return "\n".join(lines) + "\n"
