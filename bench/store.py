"""The results store: one SQLite file per run folder.

Each finished job is one row in ``jobs`` plus its per-example rows in
``outcomes`` and the few gallery ``examples`` it kept (clean and adversarial
input, label, predictions), written in one transaction: a run killed at any
moment leaves every finished job whole and no half-written one. Jobs are keyed
by the hash of everything that determines their result, so a re-run skips them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import UserError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    key TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    track TEXT NOT NULL,
    model TEXT NOT NULL,
    defense TEXT NOT NULL,
    attack TEXT NOT NULL,
    dataset TEXT NOT NULL,
    norm TEXT,
    eps REAL,
    n INTEGER,
    clean_accuracy REAL,
    robust_accuracy REAL,
    status TEXT NOT NULL,
    flags TEXT NOT NULL,
    error TEXT,
    seconds REAL,
    params TEXT NOT NULL,
    metrics TEXT NOT NULL,
    provenance TEXT NOT NULL,
    finished_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE IF NOT EXISTS derived_flags (
    job TEXT NOT NULL REFERENCES jobs(key) ON DELETE CASCADE,
    flag TEXT NOT NULL,
    PRIMARY KEY (job, flag)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outcomes (
    job TEXT NOT NULL REFERENCES jobs(key) ON DELETE CASCADE,
    example INTEGER NOT NULL,
    clean_correct INTEGER NOT NULL,
    robust INTEGER NOT NULL,
    PRIMARY KEY (job, example)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS examples (
    job TEXT NOT NULL REFERENCES jobs(key) ON DELETE CASCADE,
    example INTEGER NOT NULL,
    label INTEGER NOT NULL,
    clean_prediction INTEGER NOT NULL,
    adversarial_prediction INTEGER NOT NULL,
    shape TEXT NOT NULL,
    clean BLOB NOT NULL,
    adversarial BLOB NOT NULL,
    PRIMARY KEY (job, example)
) WITHOUT ROWID;
"""
# The examples table is additive (created on open when missing), so stores of
# schema 1 written before it existed still open; they simply have no gallery.

RECORD_FIELDS = (
    "key",
    "position",
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
    "status",
    "flags",
    "error",
    "seconds",
    "params",
    "metrics",
    "provenance",
)
_JSON_FIELDS = ("flags", "params", "metrics", "provenance")


@dataclass
class Record:
    """One measured job, as stored."""

    key: str
    position: int
    track: str
    model: str
    defense: str
    attack: str
    dataset: str
    norm: str | None = None
    eps: float | None = None
    n: int | None = None
    clean_accuracy: float | None = None
    robust_accuracy: float | None = None
    status: str = "ok"  # ok | invalid | failed
    flags: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """Per-example result of one job: was the clean input right, did it survive the attack."""

    example: int
    clean_correct: bool
    robust: bool


@dataclass(frozen=True, eq=False)
class Example:
    """A gallery example of one job: the clean input beside its adversarial version, with the label and both predictions."""

    example: int  # index in the evaluation set
    label: int
    clean_prediction: int
    adversarial_prediction: int
    clean: np.ndarray  # (C, H, W) float32 in [0, 1]
    adversarial: np.ndarray  # same shape


_PIXELS = np.dtype("<f4")


class Store:
    """A run folder's ``results.db``; the driver process is its single writer."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise UserError(f"'{self.path.parent}' is not a run folder (no {self.path.name})")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as error:
            raise UserError(f"'{self.path}' is not a readable results store: {error}") from None
        version = self.get_meta("schema_version")
        if version is None:
            self.set_meta("schema_version", SCHEMA_VERSION)
        elif version != SCHEMA_VERSION:
            raise UserError(f"'{self.path}' has store schema {version}; this bench reads schema {SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- run metadata -------------------------------------------------------
    def get_meta(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def all_meta(self) -> dict[str, Any]:
        return {key: json.loads(value) for key, value in self._db.execute("SELECT key, value FROM meta ORDER BY key")}

    def set_meta(self, key: str, value: Any) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value, default=str)))

    # -- jobs ---------------------------------------------------------------
    def finished_keys(self) -> set[str]:
        """Keys of jobs that need no re-run (failed jobs are retried)."""
        return {k for (k,) in self._db.execute("SELECT key FROM jobs WHERE status != 'failed'")}

    def put(self, record: Record, outcomes: Iterable[Outcome] = (), examples: Iterable[Example] = ()) -> None:
        """Store one job, its per-example outcomes and its gallery examples atomically (replacing an earlier failed try)."""
        values = [json.dumps(getattr(record, f), default=str) if f in _JSON_FIELDS else getattr(record, f) for f in RECORD_FIELDS]
        rows = [(record.key, o.example, int(o.clean_correct), int(o.robust)) for o in outcomes]
        gallery = [_example_row(record.key, e) for e in examples]
        with self._transaction() as db:
            db.execute("DELETE FROM outcomes WHERE job = ?", (record.key,))
            db.execute("DELETE FROM examples WHERE job = ?", (record.key,))
            db.execute(
                f"INSERT OR REPLACE INTO jobs ({', '.join(RECORD_FIELDS)}) VALUES ({', '.join('?' * len(RECORD_FIELDS))})",
                values,
            )
            db.executemany("INSERT INTO outcomes (job, example, clean_correct, robust) VALUES (?, ?, ?, ?)", rows)
            db.executemany(f"INSERT INTO examples ({', '.join(_EXAMPLE_COLUMNS)}) VALUES ({', '.join('?' * len(_EXAMPLE_COLUMNS))})", gallery)

    def set_derived_flags(self, flags: Mapping[str, Iterable[str]]) -> None:
        """Replace the flags derived across jobs (e.g. not monotone in eps), in one transaction."""
        with self._transaction() as db:
            db.execute("DELETE FROM derived_flags")
            db.executemany("INSERT INTO derived_flags (job, flag) VALUES (?, ?)", [(k, f) for k, fs in flags.items() for f in set(fs)])

    def records(self, *, derived: bool = True) -> list[Record]:
        """Every stored job in plan order; ``derived`` adds the cross-job flags to each record's own."""
        extra: dict[str, set[str]] = {}
        if derived:
            for job, flag in self._db.execute("SELECT job, flag FROM derived_flags"):
                extra.setdefault(job, set()).add(flag)
        cursor = self._db.execute(f"SELECT {', '.join(RECORD_FIELDS)} FROM jobs ORDER BY position, key")
        out = []
        for row in cursor:
            data = dict(zip(RECORD_FIELDS, row, strict=True))
            for name in _JSON_FIELDS:
                data[name] = json.loads(data[name])
            data["flags"] = sorted(set(data["flags"]) | extra.get(data["key"], set()))
            out.append(Record(**data))
        return out

    def outcomes_of(self, key: str) -> list[Outcome] | None:
        """Per-example outcomes of a job that finished ``ok``; None for a missing, failed or invalid one."""
        row = self._db.execute("SELECT status FROM jobs WHERE key = ?", (key,)).fetchone()
        if row is None or row[0] != "ok":
            return None
        return self.outcomes([key]).get(key, [])

    def outcomes(self, keys: Sequence[str] | None = None) -> dict[str, list[Outcome]]:
        """Per-example outcomes by job key, in example order."""
        query = "SELECT job, example, clean_correct, robust FROM outcomes"
        params: tuple = ()
        if keys is not None:
            query += f" WHERE job IN ({', '.join('?' * len(keys))})"
            params = tuple(keys)
        found: dict[str, list[Outcome]] = {}
        for job, example, clean, robust in self._db.execute(query + " ORDER BY job, example", params):
            found.setdefault(job, []).append(Outcome(example, bool(clean), bool(robust)))
        return found

    def examples(self, keys: Sequence[str] | None = None) -> dict[str, list[Example]]:
        """Gallery examples by job key, in example order."""
        query = f"SELECT {', '.join(_EXAMPLE_COLUMNS)} FROM examples"
        params: tuple = ()
        if keys is not None:
            query += f" WHERE job IN ({', '.join('?' * len(keys))})"
            params = tuple(keys)
        found: dict[str, list[Example]] = {}
        for job, example, label, clean_prediction, adversarial_prediction, shape, *images in self._db.execute(query + " ORDER BY job, example", params):
            dims = tuple(json.loads(shape))
            pixels = [np.frombuffer(blob, dtype=_PIXELS).astype(np.float32).reshape(dims) for blob in images]
            found.setdefault(job, []).append(Example(example, label, clean_prediction, adversarial_prediction, *pixels))
        return found


_EXAMPLE_COLUMNS = ("job", "example", "label", "clean_prediction", "adversarial_prediction", "shape", "clean", "adversarial")


def _example_row(key: str, example: Example) -> tuple:
    clean = np.ascontiguousarray(example.clean, dtype=_PIXELS)
    adversarial = np.ascontiguousarray(example.adversarial, dtype=_PIXELS)
    if clean.shape != adversarial.shape:
        raise ValueError(f"example {example.example}: clean {clean.shape} and adversarial {adversarial.shape} differ in shape")
    labels = (int(example.label), int(example.clean_prediction), int(example.adversarial_prediction))
    return (key, int(example.example), *labels, json.dumps(list(clean.shape)), clean.tobytes(), adversarial.tobytes())


def record_dict(record: Record) -> Mapping[str, Any]:
    return {f: getattr(record, f) for f in RECORD_FIELDS}
