"""The CI gate: ``bench baseline`` writes the numbers to hold, ``bench check`` runs the spec and compares.

A baseline is a JSON file: a format marker and version, the track, the spec
(in a portable form: dataset folders dropped, checkpoints by file name) and
its hash, and every metric of every leaderboard cell. ``check`` refuses a
baseline of another track or spec (exit 2), runs the spec into a stable
folder (finished jobs are reused, trained models come from the cache) and
reports each metric that fell by more than its tolerance, and rows that are
missing or new. Running a check (the spec, its folder, then ``compare``) is
``bench.checking``.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bench
from bench.errors import UserError
from bench.tracks import HIGHER, LOWER, TRACKS

BASELINE_FORMAT = "frontier-bench-baseline"
BASELINE_VERSION = 1
DEFAULT_TOLERANCE = 0.02
GATED_METRICS = ("clean_accuracy", "robust_accuracy")  # plus any numeric entry of a cell's "metrics"
_EPSILON = 1e-9  # a drop of exactly the tolerance holds, whatever the float rounding


# -- values --------------------------------------------------------------------
@dataclass(frozen=True)
class BaselineRow:
    row: tuple  # the track's cell key: (track, *cell dimensions)
    status: str
    flags: tuple[str, ...]
    metrics: Mapping[str, float | None]


@dataclass(frozen=True)
class Baseline:
    path: Path
    track: str
    spec: Mapping[str, Any]
    spec_hash: str
    rows: tuple[BaselineRow, ...]


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

    @property
    def passed(self) -> bool:
        return not self.regressions and not self.missing_rows


# -- the portable spec ---------------------------------------------------------


def cell_flags(cell: Mapping[str, Any]) -> list[str]:
    """A cell's flags and the flags of the model checks its row stands on (``model_flags``): what the gate holds a row to."""
    return sorted(set(cell.get("flags") or []) | set(cell.get("model_flags") or []))


def portable_spec(canonical: str | Mapping[str, Any]) -> dict[str, Any]:
    """The spec as a baseline holds it: machine-specific paths removed (dataset folder, checkpoint folders).

    A checkpoint is named by its file name only, so a baseline made on a laptop
    holds in CI; its content is what the check measures.
    """
    data = json.loads(canonical) if isinstance(canonical, str) else json.loads(json.dumps(canonical, default=str))
    data.pop("device", None)
    if isinstance(data.get("dataset_params"), dict):
        data["dataset_params"] = {k: v for k, v in data["dataset_params"].items() if k not in ("root", "download")}
    for model in data.get("models") or []:
        if isinstance(model, dict) and model.get("checkpoint"):
            model["checkpoint"] = Path(model["checkpoint"]).name
    return data


def spec_hash(portable: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(portable, sort_keys=True, default=str).encode()).hexdigest()


# -- metrics of a cell ---------------------------------------------------------
def cell_metrics(cell: Mapping[str, Any]) -> dict[str, float | None]:
    metrics: dict[str, float | None] = {m: cell.get(m) for m in GATED_METRICS}
    for name, value in (cell.get("metrics") or {}).items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            metrics[name] = float(value)
    return metrics


def declared_metrics(track: Any, cells: Sequence[Mapping[str, Any]]) -> dict[str, tuple[str, ...] | None]:
    """The metrics of these cells that the track declares (name -> its scope): what ``compare`` compares."""
    present = dict.fromkeys(name for cell in cells for name in cell_metrics(cell))
    return {name: track.metric(name).scope for name in present if track.declares(name)}


# -- baseline files ------------------------------------------------------------
def make_baseline(run_dir: Path) -> dict[str, Any]:
    """The baseline document of a finished run folder (read from its store)."""
    from bench.reporting import load_run

    run = load_run(run_dir)
    fields = row_fields(run.track)
    if not run.records:
        raise UserError(f"'{run_dir}' holds no finished jobs to make a baseline from")
    portable = portable_spec(run.meta["spec"])
    rows = []
    for cell in run.cells:
        rows.append(
            {
                **{k: cell.get(k) for k in fields},
                "status": cell["status"],
                "flags": cell_flags(cell),
                "n": cell.get("n"),
                "metrics": cell_metrics(cell),
            }
        )
    return {
        "format": BASELINE_FORMAT,
        "version": BASELINE_VERSION,
        "track": run.meta["track"],
        "spec_hash": spec_hash(portable),
        "spec": portable,
        "bench_version": bench.__version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "source": {"run": str(run_dir), "device": run.meta.get("device"), "versions": run.meta.get("versions"), "finished_at": run.meta.get("finished_at")},
        "rows": rows,
    }


def baseline_text(document: Mapping[str, Any]) -> str:
    """Pretty JSON with one row per line, so a change of baseline reads well in a code review."""
    head = json.dumps({**document, "rows": []}, indent=2)
    rows = ",\n".join(f"    {json.dumps(row)}" for row in document["rows"])
    return head.replace('"rows": []', '"rows": [\n' + rows + "\n  ]" if rows else '"rows": []') + "\n"


def write_baseline(run_dir: Path, out: Path) -> dict[str, Any]:
    document = make_baseline(run_dir)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(baseline_text(document))
    except OSError as error:
        raise UserError(f"cannot write baseline '{out}': {error.strerror}") from None
    return document


def read_baseline(path: Path, *, track: str | None = None, rows: bool = True) -> Baseline:
    """Read and validate a baseline; anything wrong is one ``UserError`` line naming the file.

    ``track``: the track the caller will run; a baseline of another is refused before its rows are read.
    ``rows=False``: the header only (format, track, spec), with no rows.
    """
    name = f"baseline '{path}'"
    if not path.is_file():
        raise UserError(f"{name} does not exist")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise UserError(f"{name} is not valid JSON: {error}") from None
    except UnicodeDecodeError:
        raise UserError(f"{name} is not UTF-8 text") from None
    if not isinstance(data, dict) or data.get("format") != BASELINE_FORMAT:
        raise UserError(f'{name} is not a frontier-bench baseline (no "format": "{BASELINE_FORMAT}"); make one with: bench baseline RUN_DIR -o {path}')
    if data.get("version") != BASELINE_VERSION:
        raise UserError(f"{name} has baseline format version {data.get('version')!r}; this bench reads version {BASELINE_VERSION}")
    for key, kind in (("track", str), ("spec_hash", str), ("spec", dict), ("rows", list)):
        if not isinstance(data.get(key), kind):
            raise UserError(f"{name}: '{key}' is missing or not a {kind.__name__}")
    if spec_hash(data["spec"]) != data["spec_hash"]:
        raise UserError(f"{name}: spec_hash does not match its spec (edited by hand?); make a new one with bench baseline")
    if track is not None and data["track"] != track:
        raise UserError(f"baseline '{path}' is of track '{data['track']}'; this check runs track '{track}'")
    if not rows:
        return Baseline(path, data["track"], data["spec"], data["spec_hash"], ())
    if data["track"] not in TRACKS:
        raise UserError(f"{name} is of track '{data['track']}', which is not installed here")
    track = TRACKS.create(data["track"])
    fields = row_fields(track)
    found = []
    seen = set()
    for i, raw in enumerate(data["rows"]):
        where = f"{name}: rows[{i}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("metrics"), dict) or not isinstance(raw.get("status"), str):
            raise UserError(f"{where} needs 'status' (a string) and 'metrics' (an object)")
        if not isinstance(raw.get("flags", []), list) or not all(isinstance(f, str) for f in raw.get("flags", [])):
            raise UserError(f"{where}.flags must be a list of flag names")
        metrics = {}
        for metric, value in raw["metrics"].items():
            if value is not None and (not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value)):
                raise UserError(f"{where}.metrics.{metric} must be a number or null, got {value!r}")
            metrics[metric] = None if value is None else float(value)
        key = tuple(raw.get(k) for k in fields)
        if key in seen:
            raise UserError(f"{where} repeats the row {track.cell_label(dict(zip(fields, key, strict=True)))}")
        seen.add(key)
        found.append(BaselineRow(key, raw["status"], tuple(raw.get("flags") or ()), metrics))
    return Baseline(path, data["track"], data["spec"], data["spec_hash"], tuple(found))


def row_fields(track: Any) -> tuple[str, ...]:
    """The fields of a baseline row's key: the track, then the track's cell dimensions."""
    return ("track", *(track.cell_dimensions or track.dimensions))


def match_spec(baseline: Baseline, spec: Any, *, spec_source: str) -> None:
    """Refuse a baseline of another track or another spec, naming the fields that differ."""
    if baseline.track != spec.track:
        raise UserError(f"baseline '{baseline.path}' is of track '{baseline.track}'; this check runs track '{spec.track}' ({spec_source})")
    current = portable_spec(spec.canonical())
    if spec_hash(current) != baseline.spec_hash:
        differing = sorted(k for k in set(current) | set(baseline.spec) if current.get(k) != baseline.spec.get(k)) or ["?"]
        raise UserError(
            f"baseline '{baseline.path}' was made from another spec than {spec_source} (they differ in: {', '.join(differing)}); "
            "make a new baseline with: bench baseline RUN_DIR"
        )


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


def baseline_metrics(baseline: Baseline) -> list[str]:
    return sorted({m for row in baseline.rows for m in row.metrics})


# -- the comparison ------------------------------------------------------------
def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def compare(baseline: Baseline, cells: Sequence[Mapping[str, Any]], tolerances: Tolerances, track: Any = None) -> CheckResult:
    """Every baseline metric against this run's cell of the same row, as the track declares them; pure, no I/O."""
    track = track or TRACKS.create(baseline.track)
    fields = row_fields(track)
    now = {track.cell_key(c): c for c in cells}
    regressions: list[Regression] = []
    missing: list[str] = []
    scoped_seen: set[tuple] = set()  # a metric declared per fewer dimensions (clean accuracy: per model): one line, not one per cell

    def _label(key: tuple) -> str:
        return track.cell_label(dict(zip(fields, key, strict=True)))

    advisory: list[str] = []
    checked = 0
    for row in baseline.rows:
        label = _label(row.row)
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
            where = label
            if declared.scope is not None:
                values = dict(zip(fields, row.row, strict=True))
                scoped = (metric, *(values.get(d) for d in ("track", *declared.scope)), before, after)
                if scoped in scoped_seen:
                    continue
                scoped_seen.add(scoped)
                rest = [d for d in fields[1:] if d not in declared.scope]
                where = " / ".join(str(values.get(d)) for d in declared.scope) + f" (every {', '.join(rest[:-1])} and {rest[-1]})" if rest else ""
            regressions.append(Regression(row.row, where or label, metric, _fmt(before), _fmt(after), allowed))
    known = {row.row for row in baseline.rows}
    new = [_label(key) for key in now if key not in known]
    return CheckResult(
        tuple(regressions), tuple(missing), tuple(new), len(baseline.rows) - len(missing), checked, tolerances, str(baseline.path), new_flags=tuple(advisory)
    )
