"""``leaderboard.json``: the cells as standard JSON, with the run's provenance.

One object: ``format`` and ``version`` (of this document), ``provenance``
(frontier-bench version, seed, the sha256 of the stored canonical spec,
library versions, device, start and finish times: whatever the caller passes)
and ``cells``, one object per leaderboard cell with the fields of
``fields``. Numbers stay numbers, rounded to what a measurement supports
(``rounded``): accuracies and their intervals (fractions of ``n`` test points)
to 4 decimals, time in seconds to 3, every other float (eps, losses, AUROC)
to 6 significant digits. A non-finite float (NaN, infinity) has no JSON
spelling and becomes ``null``; the text is written with ``allow_nan=False``,
so any other reader of JSON reads it.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from reports.leaderboard import INTERVALS, interval

FORMAT = "frontier-bench-leaderboard"
VERSION = 1
JSON_FIELDS = (
    "track",
    "model",
    "defense",
    "attack",
    "dataset",
    "norm",
    "eps",
    "n",
    "clean_accuracy",
    "robust_accuracy",
    "flags",
    "seconds",
    "status",
    "error",
    "metrics",
    "clean_interval",  # after the fields CSV readers already index by position
    "robust_interval",
)
_INTERNAL = ("key", "keys", "params")  # cell fields that are bookkeeping, not results
ACCURACY_DECIMALS = 4  # a fraction of n points: 1e-4 resolves n up to 10,000
SECONDS_DECIMALS = 3
SIGNIFICANT_DIGITS = 6


def fields(cells: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """JSON_FIELDS, then any field a track's cells add (the uncertainty track's ``estimator``, ``seeds``), in first-seen order."""
    extra = dict.fromkeys(k for cell in cells for k in cell if k not in JSON_FIELDS and k not in _INTERNAL)
    return (*JSON_FIELDS, *extra)


def _is_accuracy(name: str) -> bool:
    return "accuracy" in name or name in INTERVALS.values()


def rounded(value: Any, *, name: str = "") -> Any:
    """``value`` with every float rounded for its field ``name`` (nested dicts and lists too) and non-finite floats as None."""
    if isinstance(value, Mapping):
        return {str(k): rounded(v, name=str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v, name=name) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            return None
        if _is_accuracy(name):
            return round(number, ACCURACY_DECIMALS)
        if name == "seconds":
            return round(number, SECONDS_DECIMALS)
        return float(f"{number:.{SIGNIFICANT_DIGITS}g}")
    return str(value)


def with_intervals(cell: Mapping[str, Any]) -> dict[str, Any]:
    """The cell with ``clean_interval`` and ``robust_interval`` as [low, high] (None without one)."""
    found = {name: interval(cell, field) for field, name in INTERVALS.items()}
    return {**cell, **{name: None if value is None else list(value) for name, value in found.items()}}


def exported_cells(cells: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The cells as they are exported: the fields of ``fields`` in order, intervals added, numbers rounded."""
    names = fields(cells)
    return [{k: rounded(full.get(k), name=k) for k in names} for full in map(with_intervals, cells)]


def to_json(cells: Sequence[Mapping[str, Any]], *, provenance: Mapping[str, Any] | None = None) -> str:
    """The document as indented standard JSON (never NaN or Infinity)."""
    document = {"format": FORMAT, "version": VERSION, "provenance": rounded(dict(provenance or {})), "cells": exported_cells(cells)}
    return json.dumps(document, indent=2, allow_nan=False)
