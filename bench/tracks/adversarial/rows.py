"""Leaderboard rows from the stored jobs.

A cell per attack job and per certified radius; per row, the per-example worst case with its verdict and rank;
and the flags only several jobs of a row show together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bench.store import Outcome, Record
from bench.tracks.adversarial import sanity
from bench.tracks.adversarial.ranking import rank_cells, vector_key, worst_case_vector
from bench.tracks.adversarial.verdict import verdict

WORST_CASE = "worst-case"
SANITY = "sanity-checks"
CERTIFIED = "certified"
MASKING_GAP = 0.05  # "much more robustness" under plain attacks than under the adaptive one
CORE_METRICS = ("n", "clean_accuracy", "robust_accuracy")  # stored beside the attack's own metrics; cells show them as columns
SETTINGS = ("draws", "prediction")  # how the job predicted (a cell field), not a result


def derive(records: Sequence[Record], outcomes: Mapping[str, Sequence[Outcome]]) -> dict[str, list[str]]:
    """Flags only several jobs of one row show together: robustness rising with eps, an adaptive attack far beyond plain ones.

    The model checks' flags stay with the sanity job that measured them (once per model, defense and norm);
    the worst-case cell of each row lists them as ``model_flags``.
    """
    derived: dict[str, list[str]] = {}
    rows: dict[tuple, dict[float, list[Record]]] = {}
    for record in records:
        if record.attack not in (SANITY, CERTIFIED):
            rows.setdefault((record.model, record.defense, record.dataset, record.norm), {}).setdefault(record.eps, []).append(record)
    for by_eps in rows.values():
        worst = [(eps, _worst_case(members, outcomes)[0]) for eps, members in by_eps.items()]
        for eps in sanity.monotone_check([(eps, accuracy) for eps, accuracy in worst if accuracy is not None]):
            for record in by_eps[eps]:
                derived.setdefault(record.key, []).append("not-monotone-in-eps")
        for members in by_eps.values():
            if _masking(members):
                for record in members:
                    derived.setdefault(record.key, []).append("gradient-masking")
    return derived


def cells(records: Sequence[Record], outcomes: Mapping[str, Sequence[Outcome]]) -> list[dict[str, Any]]:
    measured = [r for r in records if r.attack not in (SANITY, CERTIFIED)]
    cells = [_cell(record) for record in measured]
    for record in records:  # certified accuracy at each radius, beside the attacks at that L2 eps
        if record.attack == CERTIFIED and record.status == "ok":
            for radius, accuracy in record.metrics["certified_accuracy"].items():
                cells.append({**_cell(record), "eps": float(radius), "robust_accuracy": accuracy, "metrics": {"certified": True}, "key": None})
    groups: dict[tuple, list[Record]] = {}
    for record in measured:
        groups.setdefault((record.model, record.defense, record.dataset, record.norm, record.eps), []).append(record)
    checked = {(r.model, r.defense, r.norm): _model_flags(r) for r in records if r.attack == SANITY}
    worst, vectors = [], {}
    for members in groups.values():
        cell = _worst_case_cell(members, outcomes, checked.get((members[0].model, members[0].defense, members[0].norm), []))
        worst.append(cell)
        vectors[vector_key(cell)] = worst_case_vector(members, outcomes)
    rank_cells(worst, vectors)  # per dataset, norm and eps, with the rows paired McNemar cannot tell apart
    return cells + worst


def _model_flags(record: Record) -> list[str]:
    """The sanity job's flags, plus where the model contradicts what its defense declares."""
    flags = list(record.flags)
    if record.metrics.get("declared_differentiable") and "masked-gradients" in flags:
        flags.append("differentiable-claim-false")
    if record.metrics.get("declared_randomized") is False and "randomized" in flags:
        flags.append("randomness-undeclared")
    return flags


def _masking(members: Sequence[Record]) -> bool:
    """The adaptive attack breaks more than MASKING_GAP beyond every plain attack before it."""
    for adaptive in (r for r in members if r.metrics.get("adaptive") and r.status == "ok"):
        plain = [r.robust_accuracy for r in members if not r.metrics.get("adaptive") and r.status == "ok" and r.position < adaptive.position]
        if plain and min(plain) - adaptive.robust_accuracy > MASKING_GAP:
            return True
    return False


def _cell(record: Record) -> dict[str, Any]:
    return {
        "track": record.track,
        "model": record.model,
        "defense": record.defense,
        "attack": record.attack,
        "dataset": record.dataset,
        "norm": record.norm,
        "eps": record.eps,
        **{k: record.metrics.get(k) for k in CORE_METRICS},
        "flags": list(record.flags),
        "seconds": record.seconds,
        "status": record.status,
        "error": record.error,
        "params": record.params,
        "metrics": {k: v for k, v in record.metrics.items() if k not in CORE_METRICS and k not in SETTINGS},
        "draws": record.metrics.get("draws") or 1,
        "training": record.provenance.get("training"),  # a training-time defense's recipe (None: standard training)
        "key": record.key,
    }


def _worst_case(members: Sequence[Record], outcomes: Mapping[str, Sequence[Outcome]]) -> tuple[float | None, int | None, list[Record]]:
    """Per example, robust only if it survived every valid attack: (accuracy, n, the valid attacks)."""
    valid = [r for r in members if r.status == "ok" and r.key in outcomes]
    vector = worst_case_vector(members, outcomes)
    if vector is None:
        return None, None, valid
    n = len(vector)
    return (sum(vector.values()) / n if n else 0.0), n, valid


def _worst_case_cell(members: Sequence[Record], outcomes: Mapping[str, Sequence[Outcome]], model_flags: Sequence[str]) -> dict[str, Any]:
    """The row's worst case, its verdict, and the flags of the model checks it stands on (``model_flags``, measured once per model x defense x norm)."""
    accuracy, n, valid = _worst_case(members, outcomes)
    flags = {f for r in members for f in r.flags}
    if len(valid) < len(members):
        flags.add("worst-case-incomplete")
    first = members[0]
    said, details = verdict(members, flags=sorted(flags), model_flags=model_flags)
    return {
        **{k: getattr(first, k) for k in ("track", "model", "defense", "dataset", "norm", "eps")},
        "attack": WORST_CASE,
        "n": n,
        "clean_accuracy": valid[0].clean_accuracy if valid else None,
        "robust_accuracy": accuracy,
        "flags": sorted(flags),
        "seconds": sum(r.seconds or 0.0 for r in members),
        "status": "ok" if accuracy is not None else "failed",
        "error": None,
        "params": {"attacks": [r.attack for r in valid]},
        "metrics": {"cascade": any(r.metrics.get("cascade") for r in members)},
        "draws": max(int(r.metrics.get("draws") or 1) for r in members),
        "key": None,
        "model_flags": list(model_flags),
        "training": first.provenance.get("training"),
        "verdict": said,
        "verdict_details": details,
    }
