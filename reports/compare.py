"""``bench compare RUN_A RUN_B``: what changed, cell by cell.

Cells are matched by what identifies them (the track and its cell
dimensions: model, defense, attack, dataset, norm, eps for the adversarial
track); for each pair every metric the track declares, the status and the
flags are compared. A metric declared per fewer dimensions (clean accuracy: per
model, defense and dataset) gets one line per value of those, not one per cell.
Cells found in only one run are listed, not dropped.

A changed accuracy also says whether the change is significant (two-sided
p, ``*`` below ``ALPHA``): exact McNemar on the per-example outcomes when
both runs give them for that cell on the same points (``vectors_before`` and
``vectors_after``, read from the run folders' stores), else Fisher's exact
test on the counts (accuracy x ``n``), as for two JSON leaderboards.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.stats import ALPHA, mcnemar, unpaired
from reports.leaderboard import NORM_TITLES, ROW_FIELDS, markdown_table, percent

METRICS = {"clean_accuracy": ("model", "defense", "dataset"), "robust_accuracy": None}  # metric -> its scope (None: every dimension)
TESTED = ("clean_accuracy", "robust_accuracy")  # fractions of a cell's n points: a change in them is tested
PAIRED, UNPAIRED = "McNemar", "Fisher"
_TITLES = {"clean_accuracy": "clean %", "robust_accuracy": "robust %", "status": "status", "flags": "flags"}
SIGNIFICANCE_NOTE = (
    f"p: two-sided; * significant at {ALPHA:g} (exact McNemar on the same points where both runs stored them per example, else Fisher exact on the counts)."
)

Vectors = Mapping[tuple, Mapping[str, Mapping[int, bool]]]  # cell key (its values of the compared fields) -> metric -> example -> outcome


@dataclass(frozen=True)
class Change:
    """One field of one cell that differs between the runs."""

    row: tuple  # the values of the comparison's fields
    field: str  # a metric | status | flags
    before: Any
    after: Any
    p_value: float | None = None  # two-sided, for a changed accuracy both runs measured
    test: str | None = None  # PAIRED | UNPAIRED

    @property
    def delta(self) -> float | None:
        if self.field not in ("status", "flags") and self.before is not None and self.after is not None:
            return self.after - self.before
        return None

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < ALPHA


@dataclass(frozen=True)
class Comparison:
    changes: tuple[Change, ...]
    only_before: tuple[tuple, ...]
    only_after: tuple[tuple, ...]
    compared: int  # cells found in both runs
    changed: int  # of those, cells with at least one change
    fields: tuple[str, ...] = ROW_FIELDS  # what identifies a cell: the track, then its cell dimensions
    scopes: Mapping[str, tuple[str, ...] | None] = field(default_factory=lambda: dict(METRICS))  # each compared metric's scope


def _metric(cell: Mapping[str, Any], name: str) -> Any:
    value = cell.get(name, (cell.get("metrics") or {}).get(name))
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _vector(vectors: Vectors | None, key: tuple, metric: str, value: float) -> Mapping[int, bool] | None:
    """The per-example outcomes behind ``value``, if given and they do give it."""
    found = (vectors or {}).get(key, {}).get(metric)
    if not found or abs(sum(map(bool, found.values())) - value * len(found)) > 0.5:
        return None
    return found


def significance(
    key: tuple, metric: str, a: Mapping[str, Any], b: Mapping[str, Any], *, vectors_before: Vectors | None = None, vectors_after: Vectors | None = None
) -> tuple[float | None, str | None]:
    """(two-sided p, test) of a changed accuracy: paired exact McNemar when both runs give its outcomes on the same points, else Fisher exact on the counts."""
    value_a, value_b = _metric(a, metric), _metric(b, metric)
    if metric not in TESTED or value_a is None or value_b is None:
        return None, None
    va, vb = _vector(vectors_before, key, metric, value_a), _vector(vectors_after, key, metric, value_b)
    if va is not None and vb is not None and sorted(va) == sorted(vb):
        examples = sorted(va)
        return mcnemar([va[i] for i in examples], [vb[i] for i in examples]).p_value, PAIRED
    n_a, n_b = a.get("n"), b.get("n")
    if not (isinstance(n_a, int) and isinstance(n_b, int) and n_a > 0 and n_b > 0):
        return None, None
    counts = [min(n, max(0, round(value * n))) for value, n in ((value_a, n_a), (value_b, n_b))]
    return unpaired(counts[0], n_a, counts[1], n_b), UNPAIRED


def compare_cells(
    before: Sequence[Mapping[str, Any]],
    after: Sequence[Mapping[str, Any]],
    *,
    fields: Sequence[str] = ROW_FIELDS,
    metrics: Mapping[str, tuple[str, ...] | None] | None = None,
    vectors_before: Vectors | None = None,
    vectors_after: Vectors | None = None,
) -> Comparison:
    """Cells matched by ``fields``; ``metrics``: the names to compare with their scope (default: clean and robust accuracy).

    ``vectors_before`` and ``vectors_after``: per cell (keyed by its values of
    ``fields``), per accuracy, the per-example outcomes ``{example index:
    bool}`` behind it (``bench.tracks.adversarial.ranking.cell_vectors``);
    where both runs give them on the same points, a change is tested paired.
    """
    scopes = dict(METRICS if metrics is None else metrics)
    old = {tuple(c.get(k) for k in fields): c for c in before}
    new = {tuple(c.get(k) for k in fields): c for c in after}
    changes = []
    changed = 0
    common = [k for k in old if k in new]
    for key in common:
        a, b = old[key], new[key]
        found = [
            Change(key, m, _metric(a, m), _metric(b, m), *significance(key, m, a, b, vectors_before=vectors_before, vectors_after=vectors_after))
            for m in scopes
            if not _same(_metric(a, m), _metric(b, m))
        ]
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
        tuple(fields),
        scopes,
    )


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= 1e-12


def _show(field: str, value: Any) -> str:
    if field == "flags":
        return ", ".join(value) or "-"
    if field == "status":
        return str(value)
    if field.endswith("accuracy"):  # a fraction, shown in percent as the leaderboard does
        return percent(value) or "-"
    return "-" if value is None else f"{value:.4g}"


def _delta(field: str, delta: float | None) -> str:
    if delta is None:
        return ""
    return f"{100 * delta:+.1f}" if field.endswith("accuracy") else f"{delta:+.4g}"


def _p(change: Change) -> str:
    """'0.021*': the p-value, starred when significant; '' where nothing was tested."""
    if change.p_value is None:
        return ""
    shown = "<0.001" if change.p_value < 0.001 else f"{change.p_value:.2g}"
    return shown + ("*" if change.significant else "")


def _shown(name: str, value: Any) -> str:
    if value is None:
        return ""
    if name == "norm":
        return NORM_TITLES.get(value, value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _row_cells(key: tuple, fields: Sequence[str]) -> list[str]:
    return [_shown(name, value) for name, value in zip(fields, key, strict=True) if name != "track"]


def comparison_markdown(comparison: Comparison, *, before: str, after: str) -> str:
    """A table of the changes (A and B side by side, with the difference in points), then the cells of only one run."""
    lines = [f"# Changes: {before} -> {after}", ""]
    headers = [f for f in comparison.fields if f != "track"]
    for metric, scope in comparison.scopes.items():  # a scoped metric: one line per value of its scope, not one per cell
        if scope is None:
            continue
        scoped: dict[tuple, list[str]] = {}
        for change in (c for c in comparison.changes if c.field == metric):
            row = dict(zip(comparison.fields, change.row, strict=True))
            shown = [_show(metric, change.before), _show(metric, change.after), _delta(metric, change.delta), _p(change), change.test or ""]
            values = [_shown(d, row.get(d)) for d in scope]
            scoped.setdefault(tuple(values + shown), values + shown)
        if scoped:
            title = _TITLES.get(metric, metric)
            headers = [*scope, f"{title} A", f"{title} B", "B - A", "p", "test"]
            table = markdown_table(list(scoped.values()), headers, html_entities=False)
            lines += [f"## {metric.replace('_', ' ').capitalize()}", "", table, ""]
    cells = [c for c in comparison.changes if comparison.scopes.get(c.field) is None]
    if cells:
        lines += ["## Cells", ""]
        table = []
        for change in cells:
            shown = [_show(change.field, change.before), _show(change.field, change.after), _delta(change.field, change.delta), _p(change), change.test or ""]
            table.append(_row_cells(change.row, comparison.fields) + [_TITLES.get(change.field, change.field), *shown])
        lines += [markdown_table(table, [*headers, "what", "A", "B", "B - A", "p", "test"], html_entities=False), ""]
    if any(c.p_value is not None for c in comparison.changes):
        lines += [SIGNIFICANCE_NOTE, ""]
    if not comparison.changes:
        lines += ["No cell changed.", ""]
    for title, keys in ((f"Only in A ({before})", comparison.only_before), (f"Only in B ({after})", comparison.only_after)):
        if keys:
            table = markdown_table([_row_cells(k, comparison.fields) for k in keys], headers, html_entities=False)
            lines += [f"## {title}", "", table, ""]
    lines.append(
        f"{comparison.compared} cells in both runs: {comparison.changed} changed, {comparison.compared - comparison.changed} unchanged; "
        f"{len(comparison.only_before)} only in A, {len(comparison.only_after)} only in B."
    )
    return "\n".join(lines) + "\n"


def comparison_json(comparison: Comparison) -> str:
    def row(key: tuple) -> dict[str, Any]:
        return dict(zip(comparison.fields, key, strict=True))

    return json.dumps(
        {
            "changes": [
                {"row": row(c.row), "field": c.field, "a": c.before, "b": c.after, "delta": c.delta}
                | {"p": c.p_value, "test": c.test, "significant": c.significant}
                for c in comparison.changes
            ],
            "only_in_a": [row(k) for k in comparison.only_before],
            "only_in_b": [row(k) for k in comparison.only_after],
            "compared": comparison.compared,
            "changed": comparison.changed,
        },
        indent=2,
    )
