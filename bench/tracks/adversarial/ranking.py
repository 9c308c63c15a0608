"""Ranks of the worst-case rows, and the per-example outcomes that ranks and ``bench compare`` test on.

Rows (model / defense) are ranked per dataset, norm and eps by worst-case
robust accuracy; each ranked cell also lists the rows that paired exact
McNemar on the same points does not tell apart from it (``bench.stats``).

The track calls, in ``cells()``, where it builds a worst-case cell per group
of records (model, defense, dataset, norm, eps)::

    worst, vectors = [], {}
    for members in groups.values():
        cell = _worst_case_cell(members, outcomes, ...)
        worst.append(cell)
        vectors[vector_key(cell)] = worst_case_vector(members, outcomes)
    rank_cells(worst, vectors)
    cells += worst

and each ranked cell gains ``rank`` (competition rank: 1, 2, 2, 4), ``rank_of``
(how many rows were ranked with it) and ``tied_with`` (row ids). A vector is
either a sequence of booleans (example i at index i) or a mapping from the
example's index to its boolean, as ``worst_case_vector`` returns it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from bench.stats import ALPHA, rank
from bench.store import Outcome, Record
from reports.leaderboard import row_id

log = logging.getLogger(__name__)

WORST_CASE = "worst-case"
OUTCOME_OF = {"robust_accuracy": "robust", "clean_accuracy": "clean_correct"}  # the per-example value behind each accuracy

VectorKey = tuple[str, str | None, float | None, str]  # (dataset, norm, eps, row id)
Vector = Sequence[bool] | Mapping[int, bool]

__all__ = ["OUTCOME_OF", "VectorKey", "cell_vectors", "rank_cells", "row_id", "vector_key", "worst_case_vector"]


def vector_key(cell: Mapping[str, Any]) -> VectorKey:
    """The key of a cell's per-example vector in ``rank_cells``: (dataset, norm, eps, row id)."""
    return cell["dataset"], cell["norm"], cell["eps"], row_id(cell)


def worst_case_vector(members: Sequence[Record], outcomes: Mapping[str, Sequence[Outcome]]) -> dict[int, bool] | None:
    """Per example index, robust only if it survived every valid attack of the row at this eps (the worst-case cell's number, per point).

    None where the worst-case cell has no number: no valid attack, or attacks stored on different points.
    """
    valid = [r for r in members if r.status == "ok" and r.key in outcomes]
    if not valid:
        return None
    per_example = [{o.example: bool(o.robust) for o in outcomes[r.key]} for r in valid]
    examples = sorted(per_example[0])
    if not all(sorted(p) == examples for p in per_example):
        return None
    return {i: all(p[i] for p in per_example) for i in examples}


def _aligned(vectors: Mapping[str, Vector]) -> dict[str, list[bool]] | None:
    """The vectors as lists over the same points, or None when they were measured on different points."""
    as_maps = [dict(v) if isinstance(v, Mapping) else dict(enumerate(v)) for v in vectors.values()]
    examples = sorted(as_maps[0]) if as_maps else []
    if any(sorted(m) != examples for m in as_maps):
        return None
    return {name: [bool(m[i]) for i in examples] for name, m in zip(vectors, as_maps, strict=True)}


def rank_cells(cells: list[dict[str, Any]], vectors: Mapping[VectorKey, Vector], *, alpha: float = ALPHA) -> None:
    """Set ``rank``, ``rank_of`` and ``tied_with`` on the worst-case ``cells``, ranked per (dataset, norm, eps).

    ``vectors`` maps ``vector_key(cell)`` to the cell's per-example worst-case
    robust booleans. A cell that is not ok or has no vector is left unranked,
    and so is a group of fewer than two rankable rows (a rank of 1 of 1 says
    nothing). Raises ValueError when a vector does not give its cell's robust
    accuracy, or two cells of one group share a row id.
    """
    groups: dict[tuple, dict[str, dict[str, Any]]] = {}
    for cell in cells:
        key = vector_key(cell)
        if cell.get("status") != "ok" or cell.get("robust_accuracy") is None or vectors.get(key) is None:
            continue
        group = groups.setdefault(key[:3], {})
        if key[3] in group:
            raise ValueError(f"rank_cells: two cells for row '{key[3]}' at {key[:3]}; pass the worst-case cells only")
        group[key[3]] = cell
    for where, members in groups.items():
        if len(members) < 2:
            continue
        aligned = _aligned({name: vectors[(*where, name)] for name in members})
        if aligned is None:
            log.warning("rows at %s were measured on different points: not ranked", where)
            continue
        for name, cell in members.items():
            vector = aligned[name]
            if vector and abs(sum(vector) - cell["robust_accuracy"] * len(vector)) > 0.5:
                raise ValueError(f"rank_cells: the outcomes of '{name}' at {where} give {sum(vector)}/{len(vector)}, the cell says {cell['robust_accuracy']}")
        for name, found in rank(aligned, alpha).items():
            members[name].update(rank=found.position, rank_of=len(members), tied_with=list(found.tied))


def cell_vectors(
    cells: Sequence[Mapping[str, Any]],
    records: Sequence[Record],
    outcomes: Mapping[str, Sequence[Outcome]],
    *,
    fields: Sequence[str],
) -> dict[tuple, dict[str, dict[int, bool]]]:
    """Per cell (keyed by its values of ``fields``, as ``reports.compare`` matches cells), per accuracy, the per-example outcomes behind it.

    A job's cell takes its job's stored ``robust`` and ``clean_correct``; a
    worst-case cell the per-example worst case over the attacks it lists in
    ``params["attacks"]``. Cells with neither (certified accuracy, failed
    jobs, other tracks' aggregates) are left out: ``compare`` tests those from
    counts.
    """
    by_row: dict[tuple, dict[str, Record]] = {}
    for record in records:
        by_row.setdefault(tuple(record.labels.get(k) for k in ("model", "defense", "dataset", "norm", "eps")), {})[record.labels.get("attack")] = record
    found: dict[tuple, dict[str, dict[int, bool]]] = {}
    for cell in cells:
        if cell.get("status") != "ok":
            continue
        if cell.get("key") and cell["key"] in outcomes:
            jobs = [outcomes[cell["key"]]]
            members = None
        elif cell.get("attack") == WORST_CASE and (cell.get("params") or {}).get("attacks"):
            row = by_row.get(tuple(cell.get(k) for k in ("model", "defense", "dataset", "norm", "eps")), {})
            members = [row[a] for a in cell["params"]["attacks"] if a in row]
            if len(members) < len(cell["params"]["attacks"]) or not all(m.key in outcomes for m in members):
                continue
            jobs = [outcomes[m.key] for m in members]
        else:
            continue
        vectors: dict[str, dict[int, bool]] = {}
        if all("robust" in o.values for job in jobs for o in job):
            robust = worst_case_vector(members, outcomes) if members is not None else {o.example: bool(o.robust) for o in jobs[0]}
            if robust is not None:
                vectors["robust_accuracy"] = robust
        if all("clean_correct" in o.values for o in jobs[0]):
            vectors["clean_accuracy"] = {o.example: bool(o.clean_correct) for o in jobs[0]}
        if vectors:
            found[tuple(cell.get(k) for k in fields)] = vectors
    return found
