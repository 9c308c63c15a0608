"""``bench compare RUN_A RUN_B``: what changed, cell by cell.

Cells are matched by what identifies them (track, model, defense, attack,
dataset, norm, eps); for each pair the accuracies, the status and the flags
are compared. Cells found in only one run are listed, not dropped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tabulate import tabulate

from reports.leaderboard import NORM_TITLES, ROW_FIELDS, percent, row_key

METRICS = ("clean_accuracy", "robust_accuracy")
_ROW_HEADERS = ["model", "defense", "attack", "dataset", "norm", "eps"]
_TITLES = {"clean_accuracy": "clean %", "robust_accuracy": "robust %", "status": "status", "flags": "flags"}


@dataclass(frozen=True)
class Change:
    """One field of one cell that differs between the runs."""

    row: tuple  # the values of ROW_FIELDS
    field: str  # clean_accuracy | robust_accuracy | status | flags
    before: Any
    after: Any

    @property
    def delta(self) -> float | None:
        if self.field in METRICS and self.before is not None and self.after is not None:
            return self.after - self.before
        return None


@dataclass(frozen=True)
class Comparison:
    changes: tuple[Change, ...]
    only_before: tuple[tuple, ...]
    only_after: tuple[tuple, ...]
    compared: int  # cells found in both runs
    changed: int  # of those, cells with at least one change


def compare_cells(before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]]) -> Comparison:
    old = {row_key(c): c for c in before}
    new = {row_key(c): c for c in after}
    changes = []
    changed = 0
    common = [k for k in old if k in new]
    for key in common:
        a, b = old[key], new[key]
        found = [Change(key, m, a.get(m), b.get(m)) for m in METRICS if not _same(a.get(m), b.get(m))]
        if a.get("status") != b.get("status"):
            found.append(Change(key, "status", a.get("status"), b.get("status")))
        if sorted(a.get("flags") or []) != sorted(b.get("flags") or []):
            found.append(Change(key, "flags", sorted(a.get("flags") or []), sorted(b.get("flags") or [])))
        changes += found
        changed += bool(found)
    return Comparison(
        tuple(changes),
        tuple(k for k in old if k not in new),
        tuple(k for k in new if k not in old),
        len(common),
        changed,
    )


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= 1e-12


def _show(field: str, value: Any) -> str:
    if field in METRICS:
        return percent(value) or "-"
    if field == "flags":
        return ", ".join(value) or "-"
    return str(value)


def _row_cells(key: tuple) -> list[str]:
    row = dict(zip(ROW_FIELDS, key, strict=True))
    eps = row["eps"]
    return [row["model"], row["defense"], row["attack"], row["dataset"], NORM_TITLES.get(row["norm"], row["norm"] or ""), "" if eps is None else f"{eps:g}"]


def comparison_markdown(comparison: Comparison, *, before: str, after: str) -> str:
    """A table of the changes (A and B side by side, with the difference in points), then the cells of only one run."""
    lines = [f"# Changes: {before} -> {after}", ""]
    clean: dict[tuple, list[str]] = {}  # one line per model x defense x dataset: clean accuracy does not depend on the attack
    for change in comparison.changes:
        if change.field == "clean_accuracy":
            row = dict(zip(ROW_FIELDS, change.row, strict=True))
            delta = change.delta
            shown = [_show(change.field, change.before), _show(change.field, change.after), "" if delta is None else f"{100 * delta:+.1f}"]
            clean.setdefault((row["model"], row["defense"], row["dataset"], *shown), [row["model"], row["defense"], row["dataset"], *shown])
    if clean:
        headers = ["model", "defense", "dataset", "clean % A", "clean % B", "B - A"]
        lines += ["## Clean accuracy", "", tabulate(list(clean.values()), headers=headers, tablefmt="github", disable_numparse=True), ""]
    cells = [c for c in comparison.changes if c.field != "clean_accuracy"]
    if cells:
        lines += ["## Cells", ""]
        table = []
        for change in cells:
            delta = change.delta
            table.append(
                _row_cells(change.row)
                + [_TITLES[change.field], _show(change.field, change.before), _show(change.field, change.after), "" if delta is None else f"{100 * delta:+.1f}"]
            )
        headers = [*_ROW_HEADERS, "what", "A", "B", "B - A"]
        lines += [tabulate(table, headers=headers, tablefmt="github", disable_numparse=True), ""]
    if not comparison.changes:
        lines += ["No cell changed.", ""]
    for title, keys in ((f"Only in A ({before})", comparison.only_before), (f"Only in B ({after})", comparison.only_after)):
        if keys:
            table = tabulate([_row_cells(k) for k in keys], headers=_ROW_HEADERS, tablefmt="github", disable_numparse=True)
            lines += [f"## {title}", "", table, ""]
    lines.append(
        f"{comparison.compared} cells in both runs: {comparison.changed} changed, {comparison.compared - comparison.changed} unchanged; "
        f"{len(comparison.only_before)} only in A, {len(comparison.only_after)} only in B."
    )
    return "\n".join(lines) + "\n"


def comparison_json(comparison: Comparison) -> str:
    def row(key: tuple) -> dict[str, Any]:
        return dict(zip(ROW_FIELDS, key, strict=True))

    return json.dumps(
        {
            "changes": [{"row": row(c.row), "field": c.field, "a": c.before, "b": c.after, "delta": c.delta} for c in comparison.changes],
            "only_in_a": [row(k) for k in comparison.only_before],
            "only_in_b": [row(k) for k in comparison.only_after],
            "compared": comparison.compared,
            "changed": comparison.changed,
        },
        indent=2,
    )
