"""``table``: your own tabular benchmark, a CSV file with one row per architecture.

Columns named ``val_accuracy`` (required), ``test_accuracy`` (required),
``robust_val_accuracy``, ``robust_test_accuracy``, ``params`` and
``latency_ms`` are results; every other column is a dimension of the space,
its options the distinct values in the file (sorted). A combination of
options with no row is no architecture of the space. Results exported from
another benchmark (NAS-Bench-201, HW-NAS-Bench, ...) become a space here.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from bench.errors import ParamError, require
from bench.tracks.nas.spaces import Arch, SearchSpace, finite

RESULTS = ("val_accuracy", "test_accuracy", "robust_val_accuracy", "robust_test_accuracy", "params", "latency_ms")
MEASURE_OF = {"robust_val_accuracy": "robust", "robust_test_accuracy": "robust", "params": "params", "latency_ms": "latency"}


def _option(text: str) -> Any:
    """A CSV cell as a number when it reads as one (sorted numerically), else the text."""
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text else number


class CSVTable(SearchSpace):
    tabular = True

    def __init__(self, *, path: str, dataset: str = "") -> None:  # path: the CSV file (relative to the spec's folder); dataset: its label
        require(isinstance(path, str) and path, "path", f"must name a CSV file, got {path!r}")
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ParamError("path", f"'{path}' cannot be read ({getattr(error, 'strerror', None) or error})") from None
        rows = list(csv.DictReader(text.splitlines()))
        require(len(rows) > 0, "path", f"'{path}' holds no rows")
        columns = list(rows[0])
        for needed in ("val_accuracy", "test_accuracy"):
            require(needed in columns, "path", f"'{path}' has no column '{needed}' (columns: {', '.join(columns)})")
        names = [c for c in columns if c not in RESULTS]
        require(len(names) > 0, "path", f"'{path}' has no architecture columns (every column is a result: {', '.join(columns)})")
        options = {name: sorted({_option(row[name]) for row in rows}, key=lambda v: (isinstance(v, str), v)) for name in names}
        self.dimensions = tuple((name, tuple(options[name])) for name in names)
        self.measures = frozenset({"accuracy", *(MEASURE_OF[c] for c in columns if c in MEASURE_OF)})
        self.dataset = dataset or file.stem
        self.digest = hashlib.sha256(text.encode()).hexdigest()
        self.rows: dict[str, dict[str, Any]] = {}
        self.archs: list[tuple[str, Arch]] = []
        index = {name: {value: i for i, value in enumerate(values)} for name, values in options.items()}
        for line, row in enumerate(rows, start=2):
            arch = tuple(index[name][_option(row[name])] for name in names)
            key = self._key(arch)
            require(key not in self.rows, "path", f"'{path}' line {line} repeats the architecture {key}")
            results = {c: finite(row[c]) for c in RESULTS if c in row}
            require(results["val_accuracy"] is not None, "path", f"'{path}' line {line}: val_accuracy is not a number ({row['val_accuracy']!r})")
            self.rows[key] = results
            self.archs.append((key, arch))

    def _key(self, arch: Arch) -> str:
        return self.label(arch)

    def identity(self) -> Any:
        return {"sha256": self.digest}

    def canonical(self, arch: Arch) -> str | None:
        key = self._key(arch)
        return key if key in self.rows else None

    def size(self) -> int:
        return len(self.rows)

    def architectures(self) -> list[tuple[str, Arch]]:
        return self.archs

    def lookup(self, key: str) -> dict[str, Any]:
        return dict(self.rows[key])

    def entries(self) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
        for key, results in self.rows.items():
            yield key, key, dict(results)
