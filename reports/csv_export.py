"""The leaderboard as CSV: a row per cell, a column per value, never JSON inside a cell.

The columns are the exported fields (``reports.json_export.fields``, numbers
rounded the same way) with nested values flattened: a dict into one column
per key, named by its path (``metrics.transform_averaged_accuracy``,
``metrics.std.nll``), an interval into ``<accuracy>_low`` and
``<accuracy>_high`` (``robust_accuracy_low``), a list of plain values into
one ``;``-joined text (``flags``: ``outside-threat-model;worst-case-incomplete``)
and a list holding dicts or lists into a column per index
(``metrics.shift.blur.0.accuracy``). A value a cell lacks is empty. A
cell's per-epoch ``series`` (the random-labels track's curves) is left out;
the JSON export keeps it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from reports.json_export import exported_cells, fields
from reports.leaderboard import INTERVALS

_PLAIN = (str, int, float, bool, type(None))
_INTERVAL_COLUMNS = {name: field for field, name in INTERVALS.items()}  # clean_interval -> clean_accuracy
_SKIPPED = ("series",)  # per-epoch curves (random-labels track): a column per epoch would bury the results; JSON keeps them


def _flat(name: str, value: Any) -> Iterator[tuple[str, Any]]:
    """(column, plain value) pairs of one field."""
    if name in _INTERVAL_COLUMNS:
        low, high = value if isinstance(value, list | tuple) and len(value) == 2 else (None, None)
        yield f"{_INTERVAL_COLUMNS[name]}_low", low
        yield f"{_INTERVAL_COLUMNS[name]}_high", high
    elif isinstance(value, Mapping):
        for key, inner in value.items():
            yield from _flat(f"{name}.{key}", inner)
    elif isinstance(value, list | tuple) and all(isinstance(v, _PLAIN) for v in value):
        yield name, ";".join("" if v is None else str(v) for v in value)
    elif isinstance(value, list | tuple):
        for i, inner in enumerate(value):
            yield from _flat(f"{name}.{i}", inner)
    else:
        yield name, value


def _by_field(cell: Mapping[str, Any], nested: set[str]) -> dict[str, dict[str, Any]]:
    """Per field of an exported cell, its columns and values; a field that is a dict in other cells and None here has none."""
    return {name: {} if value is None and name in nested else dict(_flat(name, value)) for name, value in cell.items()}


def flat_rows(cells: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """The columns (by field, then first seen) and one {column: plain value} per exported cell."""
    exported = [{k: v for k, v in cell.items() if k not in _SKIPPED} for cell in exported_cells(cells)]
    shapes = exported or [dict.fromkeys(k for k in fields(cells) if k not in _SKIPPED)]  # no cells: the header alone
    nested = {name for cell in shapes for name, value in cell.items() if isinstance(value, Mapping)}
    flat = [_by_field(cell, nested) for cell in shapes]
    columns = list(dict.fromkeys(column for name in shapes[0] for cell in flat for column in cell[name]))
    rows = [{column: value for parts in cell.values() for column, value in parts.items()} for cell in flat]
    return columns, rows if exported else []


def to_csv(cells: Sequence[Mapping[str, Any]]) -> str:
    columns, rows = flat_rows(cells)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", restval="")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buffer.getvalue()
