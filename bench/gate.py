"""The CI gate: ``bench baseline`` writes the numbers to hold, ``bench check`` runs the spec and compares.

A baseline file (``bench.baseline``: its format, writing and validation) holds
every metric of every leaderboard cell of a run. ``check`` refuses a baseline
of another track or spec (exit 2), runs the spec into a stable folder (finished
jobs are reused, trained models come from the cache) and reports each metric
that fell by more than its tolerance, and rows that are missing or new, and
the package versions that differ from the baseline's (reported, not gated).
Running a check (the spec, its folder, then ``compare``) is ``bench.checking``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.baseline import (  # re-exported (see __all__): importers of the gate find the baseline's names here too
    BASELINE_FORMAT,
    BASELINE_VERSION,
    GATED_METRICS,
    Baseline,
    BaselineRow,
    baseline_metrics,
    baseline_text,
    cell_flags,
    cell_metrics,
    make_baseline,
    match_spec,
    portable_spec,
    read_baseline,
    row_fields,
    row_label,
    spec_hash,
    value_kind,
    write_baseline,
)
from bench.errors import UserError
from bench.tracks import HIGHER, LOWER, TRACKS

DEFAULT_TOLERANCE = 0.02
VERSIONED = ("torch", "torchvision", "torchattacks", "adversarial-robustness-toolbox", "timm", "frontier-bench", "python")  # reported when they differ
_EPSILON = 1e-9  # a drop of exactly the tolerance holds, whatever the float rounding

__all__ = [
    "BASELINE_FORMAT",
    "BASELINE_VERSION",
    "Baseline",
    "BaselineRow",
    "CheckResult",
    "DEFAULT_TOLERANCE",
    "GATED_METRICS",
    "Regression",
    "Tolerances",
    "VERSIONED",
    "baseline_metrics",
    "baseline_text",
    "cell_flags",
    "cell_metrics",
    "compare",
    "declared_metrics",
    "make_baseline",
    "match_spec",
    "parse_tolerances",
    "portable_spec",
    "read_baseline",
    "row_fields",
    "row_label",
    "spec_hash",
    "version_changes",
    "write_baseline",
]


# -- values --------------------------------------------------------------------
@dataclass(frozen=True)
class Tolerances:
    """Largest allowed drop per metric (absolute: 0.02 is 2 points of accuracy)."""

    default: float = DEFAULT_TOLERANCE
    per_metric: Mapping[str, float] = field(default_factory=dict)

    def of(self, metric: str) -> float:
        return self.per_metric.get(metric, self.default)

    def describe(self) -> str:
        return ", ".join([f"tolerance {self.default:g}"] + [f"{m} {v:g}" for m, v in sorted(self.per_metric.items())])


@dataclass(frozen=True)
class Regression:
    row: tuple
    label: str
    metric: str
    baseline: str
    now: str
    allowed: str


@dataclass(frozen=True)
class CheckResult:
    regressions: tuple[Regression, ...]
    missing_rows: tuple[str, ...]  # in the baseline, not in this run: fails the gate
    new_rows: tuple[str, ...]  # in this run, not in the baseline: reported, not gated
    rows_checked: int
    metrics_checked: int
    tolerances: Tolerances
    baseline: str = ""
    run_dir: str = ""
    jobs_ran: int = 0
    jobs_reused: int = 0
    new_flags: tuple[str, ...] = ()  # "row: flag, ..." for new advisory flags (the track's ``advisory``): reported, not gated
    version_changes: tuple[str, ...] = ()  # "torch 2.14.1 -> 2.15.0" for each package of ``VERSIONED`` that differs: reported, not gated

    @property
    def passed(self) -> bool:
        return not self.regressions and not self.missing_rows


# -- metrics of a cell ---------------------------------------------------------
def declared_metrics(track: Any, cells: Sequence[Mapping[str, Any]]) -> dict[str, tuple[str, ...] | None]:
    """The metrics of these cells that the track declares (name -> its scope): what ``compare`` compares."""
    present = dict.fromkeys(name for cell in cells for name in cell_metrics(cell))
    return {name: track.metric(name).scope for name in present if track.declares(name)}


# -- tolerances ----------------------------------------------------------------
def parse_tolerances(default: float, items: Sequence[str], *, known: Sequence[str]) -> Tolerances:
    """``--tolerance`` and ``--tolerance-for METRIC=VALUE`` as a ``Tolerances``; bad values are user errors."""
    if not math.isfinite(default) or default < 0:
        raise UserError(f"--tolerance must be a number >= 0, got {default}")
    per_metric = {}
    for item in items:
        metric, sep, value = item.partition("=")
        metric = metric.strip()
        if not sep or not metric:
            raise UserError(f"--tolerance-for '{item}': expected METRIC=VALUE, e.g. robust_accuracy=0.05")
        if metric not in known:
            raise UserError(f"--tolerance-for '{item}': unknown metric '{metric}'; the baseline's metrics: {', '.join(known)}")
        try:
            number = float(value)
        except ValueError:
            raise UserError(f"--tolerance-for '{item}': '{value}' is not a number") from None
        if not math.isfinite(number) or number < 0:
            raise UserError(f"--tolerance-for '{item}': must be a number >= 0")
        per_metric[metric] = number
    return Tolerances(default, per_metric)


# -- the comparison ------------------------------------------------------------
def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def version_changes(baseline_versions: Mapping[str, Any] | None, run_versions: Mapping[str, Any] | None) -> tuple[str, ...]:
    """``torch 2.14.1 -> 2.15.0`` for each package of ``VERSIONED`` whose version differs; nothing when either side recorded none."""
    if not isinstance(baseline_versions, Mapping) or not isinstance(run_versions, Mapping) or not baseline_versions or not run_versions:
        return ()
    changes = []
    for package in VERSIONED:
        before, after = baseline_versions.get(package), run_versions.get(package)
        if before != after:
            changes.append(f"{package} {before or 'not installed'} -> {after or 'not installed'}")
    return tuple(changes)


def _every(dimensions: Sequence[str]) -> str:
    """'every eps', 'every attack and eps', 'every attack, norm and eps'."""
    listed = dimensions[0] if len(dimensions) == 1 else f"{', '.join(dimensions[:-1])} and {dimensions[-1]}"
    return f"every {listed}"


def _check_run_matches(baseline: Baseline, cells: Sequence[Mapping[str, Any]], fields: Sequence[str], now: Mapping[tuple, Any]) -> None:
    """The baseline's rows against what this run's cells hold: key fields of the kind the cells hold, and metrics the run produces."""
    name = f"baseline '{baseline.path}'"
    for k in fields[1:]:
        kinds = {value_kind(c.get(k)) for c in cells} - {None}
        if len(kinds) != 1:
            continue  # no cell holds the field, or the track mixes kinds in it: nothing to hold a row to
        (expected,) = kinds
        for i, row in enumerate(baseline.rows):
            value = row.row[fields.index(k)]
            if value is not None and value_kind(value) != expected:
                raise UserError(f"{name}: rows[{i}].{k} must be {expected} or null, got {value!r}")
    produced = {metric for c in cells for metric, value in cell_metrics(c).items() if value is not None}
    for metric in dict.fromkeys(m for row in baseline.rows for m, value in row.metrics.items() if value is not None):
        if metric in produced:
            continue
        measured = [now.get(row.row) for row in baseline.rows if row.metrics.get(metric) is not None]
        if any(cell is not None and cell.get("status") == "ok" for cell in measured):  # a row that failed now is a regression, not this
            raise UserError(f"{name} holds metric '{metric}', which this run does not produce; it produces: {', '.join(sorted(produced)) or 'no metrics'}")


def compare(
    baseline: Baseline, cells: Sequence[Mapping[str, Any]], tolerances: Tolerances, track: Any = None, *, versions: Mapping[str, Any] | None = None
) -> CheckResult:
    """Every baseline metric against this run's cell of the same row, as the track declares them; pure, no I/O.

    ``versions``: the run's package versions (run meta ``versions``); those that differ from the baseline's are reported.
    A baseline that does not fit the run (a key field of another kind, a metric the run does not produce) is a ``UserError``.
    """
    track = track or TRACKS.create(baseline.track)
    fields = row_fields(track)
    now = {track.cell_key(c): c for c in cells}
    _check_run_matches(baseline, cells, fields, now)
    regressions: list[Regression] = []
    missing: list[str] = []
    scoped_seen: set[tuple] = set()  # a metric declared per fewer dimensions (clean accuracy: per model): one line, not one per cell
    advisory: list[str] = []
    checked = 0
    for row in baseline.rows:
        label = row_label(track, fields, row.row)
        cell = now.get(row.row)
        if cell is None:
            missing.append(label)
            continue
        if row.status == "ok" and cell["status"] != "ok":
            regressions.append(Regression(row.row, label, "status", row.status, str(cell["status"]), "ok"))
        added = sorted(set(cell_flags(cell)) - set(row.flags))
        gated = [f for f in added if f not in track.advisory]
        if gated:
            regressions.append(Regression(row.row, label, "flags", ", ".join(row.flags) or "-", ", ".join(gated), "no new flags"))
        if len(gated) < len(added):
            advisory.append(f"{label}: {', '.join(f for f in added if f in track.advisory)}")
        current = cell_metrics(cell)
        for metric, before in row.metrics.items():
            after = current.get(metric)
            if before is None or after is None:
                continue  # a cell that failed is caught by its status; a baseline without a number holds nothing
            checked += 1
            tolerance = tolerances.of(metric)
            declared = track.metric(metric)
            if declared.direction == HIGHER and after < before - tolerance - _EPSILON:
                allowed = f">= {before - tolerance:.4f}"
            elif declared.direction == LOWER and after > before + tolerance + _EPSILON:
                allowed = f"<= {before + tolerance:.4f}"
            elif declared.direction not in (HIGHER, LOWER) and abs(after - before) > tolerance + _EPSILON:
                allowed = f"{before:.4f} +- {tolerance:g}"
            else:
                continue
            where = label  # this row's own label, whatever an earlier metric of the row was labelled
            if declared.scope is not None:
                values = dict(zip(fields, row.row, strict=True))
                scoped = (metric, *(values.get(d) for d in ("track", *declared.scope)), before, after)
                if scoped in scoped_seen:
                    continue
                scoped_seen.add(scoped)
                rest = [d for d in fields[1:] if d not in declared.scope]
                if rest:  # a scope of every dimension is the row itself: its own label
                    where = " / ".join(str(values.get(d)) for d in declared.scope) + f" ({_every(rest)})"
            regressions.append(Regression(row.row, where, metric, _fmt(before), _fmt(after), allowed))
    known = {row.row for row in baseline.rows}
    new = [row_label(track, fields, key) for key in now if key not in known]
    return CheckResult(
        tuple(regressions),
        tuple(missing),
        tuple(new),
        len(baseline.rows) - len(missing),
        checked,
        tolerances,
        str(baseline.path),
        new_flags=tuple(advisory),
        version_changes=version_changes(baseline.versions, versions),
    )
