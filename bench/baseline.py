"""Baseline files of the CI gate: what ``bench baseline`` writes and ``bench check`` reads (``bench.gate`` compares).

A baseline is a JSON file: a format marker and version, the track, the spec
(in a portable form: dataset folders dropped, checkpoints by file name) and
its hash, the versions it was measured with (``source.versions``), and every
metric of every leaderboard cell. Reading one validates all of it: anything
wrong is one ``UserError`` line naming the file and the place
(``rows[3].eps must be a number or null, got '0.1'``), before any compute.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bench
from bench.errors import UserError
from bench.tracks import TRACKS

BASELINE_FORMAT = "frontier-bench-baseline"
BASELINE_VERSION = 1
GATED_METRICS = ("clean_accuracy", "robust_accuracy")  # plus any numeric entry of a cell's "metrics"


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
    versions: Mapping[str, str] = field(default_factory=dict)  # source.versions: package -> version it was measured with


# -- the portable spec ---------------------------------------------------------
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


# -- what a cell holds ---------------------------------------------------------
def cell_flags(cell: Mapping[str, Any]) -> list[str]:
    """A cell's flags and the flags of the model checks its row stands on (``model_flags``): what the gate holds a row to."""
    return sorted(set(cell.get("flags") or []) | set(cell.get("model_flags") or []))


def cell_metrics(cell: Mapping[str, Any]) -> dict[str, float | None]:
    metrics: dict[str, float | None] = {m: cell.get(m) for m in GATED_METRICS}
    for name, value in (cell.get("metrics") or {}).items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            metrics[name] = float(value)
    return metrics


def row_fields(track: Any) -> tuple[str, ...]:
    """The fields of a baseline row's key: the track, then the track's cell dimensions."""
    return ("track", *(track.cell_dimensions or track.dimensions))


def row_label(track: Any, fields: Sequence[str], key: tuple) -> str:
    """A row named as the track names its cells; a value the track cannot format is shown as it is."""
    values = dict(zip(fields, key, strict=True))
    try:
        return track.cell_label(values)
    except (TypeError, ValueError):
        return " / ".join(str(values[d]) for d in fields[1:] if values[d] is not None)


def value_kind(value: Any) -> str | None:
    """'a string', 'a number' or None (null) for a row key value; anything else is 'other'."""
    if value is None:
        return None
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return "other"


# -- writing -------------------------------------------------------------------
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


# -- reading -------------------------------------------------------------------
def _load(path: Path, name: str) -> Any:
    if not path.exists():
        raise UserError(f"{name} does not exist")
    if path.is_dir():
        raise UserError(f"{name} is a folder, not a baseline file")
    try:
        return json.loads(path.read_text())
    except OSError as error:
        raise UserError(f"cannot read {name}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise UserError(f"{name} is not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise UserError(f"{name} is not valid JSON: {error}") from None
    except RecursionError:
        raise UserError(f"{name} is not valid JSON: nested too deeply") from None


def _versions(data: Mapping[str, Any], name: str) -> dict[str, str]:
    source = data.get("source")
    if source is None:
        return {}
    if not isinstance(source, dict):
        raise UserError(f"{name}: 'source' must be an object, got {source!r}")
    versions = source.get("versions")
    if versions is None:
        return {}
    if not isinstance(versions, dict) or not all(isinstance(v, str) for v in versions.values()):
        raise UserError(f"{name}: source.versions must be an object of package names to version strings, got {versions!r}")
    return dict(versions)


def _metric_value(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if math.isfinite(number):
            return number
    raise UserError(f"{where} must be a number or null, got {value!r}")


def _check_kinds(raw_rows: Sequence[Mapping[str, Any]], fields: Sequence[str], name: str) -> None:
    """One kind per key field across the rows (a track's cells hold strings or numbers in a field, never both)."""
    for k in fields[1:]:
        kinds = [(i, value_kind(raw[k])) for i, raw in enumerate(raw_rows) if raw[k] is not None]
        counts = Counter(kind for _, kind in kinds)
        if len(counts) > 1:
            expected = max(counts, key=lambda kind: (counts[kind], -next(i for i, other in kinds if other == kind)))
            i = next(i for i, kind in kinds if kind != expected)
            raise UserError(f"{name}: rows[{i}].{k} must be {expected} or null, got {raw_rows[i][k]!r}")


def read_baseline(path: Path, *, track: str | None = None, rows: bool = True) -> Baseline:
    """Read and validate a baseline; anything wrong is one ``UserError`` line naming the file.

    ``track``: the track the caller will run; a baseline of another is refused before its rows are read.
    ``rows=False``: the header only (format, track, spec, versions), with no rows.
    """
    name = f"baseline '{path}'"
    data = _load(path, name)
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
    versions = _versions(data, name)
    if not rows:
        return Baseline(path, data["track"], data["spec"], data["spec_hash"], (), versions)
    if data["track"] not in TRACKS:
        raise UserError(f"{name} is of track '{data['track']}', which is not installed here")
    if not data["rows"]:
        raise UserError(f"{name} has no rows, so it holds nothing; make it from a finished run with: bench baseline RUN_DIR -o {path}")
    track = TRACKS.create(data["track"])
    fields = row_fields(track)
    for i, raw in enumerate(data["rows"]):
        where = f"{name}: rows[{i}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("metrics"), dict) or not isinstance(raw.get("status"), str):
            raise UserError(f"{where} needs 'status' (a string) and 'metrics' (an object)")
        if not isinstance(raw.get("flags", []), list) or not all(isinstance(f, str) for f in raw.get("flags", [])):
            raise UserError(f"{where}.flags must be a list of flag names")
        for k in fields:
            if k not in raw:
                raise UserError(f"{where} has no '{k}' (a row names its {', '.join(fields)})")
        if raw["track"] != data["track"]:
            raise UserError(f"{where}.track must be '{data['track']}' (the baseline's track), got {raw['track']!r}")
        for k in fields[1:]:
            if value_kind(raw[k]) == "other" or (isinstance(raw[k], float) and not math.isfinite(raw[k])):
                raise UserError(f"{where}.{k} must be a string, a number or null, got {raw[k]!r}")
    _check_kinds(data["rows"], fields, name)
    found = []
    seen = set()
    for i, raw in enumerate(data["rows"]):
        where = f"{name}: rows[{i}]"
        metrics = {metric: _metric_value(value, f"{where}.metrics.{metric}") for metric, value in raw["metrics"].items()}
        key = tuple(raw[k] for k in fields)
        if key in seen:
            raise UserError(f"{where} repeats the row {row_label(track, fields, key)}")
        seen.add(key)
        found.append(BaselineRow(key, raw["status"], tuple(raw.get("flags") or ()), metrics))
    if not any(value is not None for row in found for value in row.metrics.values()):
        raise UserError(f"{name} holds no metric values (every row's metrics are empty or null); make it from a run whose jobs finished")
    return Baseline(path, data["track"], data["spec"], data["spec_hash"], tuple(found), versions)


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


def baseline_metrics(baseline: Baseline) -> list[str]:
    return sorted({m for row in baseline.rows for m in row.metrics})
