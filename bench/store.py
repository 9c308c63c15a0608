"""The results store: one SQLite file per run folder.

Each finished job is one row in ``jobs`` (the track's labels and metrics as
JSON, with status, flags and provenance), its per-example rows in ``outcomes``
(values the track chose, e.g. ``clean_correct`` and ``robust``) and its
``artifacts`` (gallery images, ...), written in one transaction: a run killed
at any moment leaves every finished job whole and no half-written one. Jobs
are keyed by the hash of everything that determines their result, so a re-run
skips them. The views ``adversarial_jobs`` and ``adversarial_outcomes`` give
schema 1's columns. A folder written by another schema is refused with one
line that says how to re-run it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import UserError

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    key TEXT PRIMARY KEY,
    track TEXT NOT NULL,
    position INTEGER NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    seconds REAL,
    labels TEXT NOT NULL,
    metrics TEXT NOT NULL,
    flags TEXT NOT NULL,
    params TEXT NOT NULL,
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
    data TEXT NOT NULL,
    PRIMARY KEY (job, example)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS artifacts (
    job TEXT NOT NULL REFERENCES jobs(key) ON DELETE CASCADE,
    name TEXT NOT NULL,
    blob BLOB NOT NULL,
    PRIMARY KEY (job, name)
) WITHOUT ROWID;
-- today's adversarial columns, for SQL users and tools written against schema 1
CREATE VIEW IF NOT EXISTS adversarial_jobs AS SELECT
    key, position, track,
    json_extract(labels, '$.model') AS model, json_extract(labels, '$.defense') AS defense,
    json_extract(labels, '$.attack') AS attack, json_extract(labels, '$.dataset') AS dataset,
    json_extract(labels, '$.norm') AS norm, json_extract(labels, '$.eps') AS eps,
    json_extract(metrics, '$.n') AS n, json_extract(metrics, '$.clean_accuracy') AS clean_accuracy,
    json_extract(metrics, '$.robust_accuracy') AS robust_accuracy,
    status, flags, error, seconds, params, metrics, provenance, finished_at
FROM jobs;
CREATE VIEW IF NOT EXISTS adversarial_outcomes AS SELECT
    job, example, json_extract(data, '$.clean_correct') AS clean_correct, json_extract(data, '$.robust') AS robust
FROM outcomes;
"""

RECORD_FIELDS = ("key", "track", "position", "status", "error", "seconds", "labels", "metrics", "flags", "params", "provenance")
_JSON_FIELDS = ("labels", "metrics", "flags", "params", "provenance")


@dataclass
class Record:
    """One measured job, as stored: its labels (the track's dimensions) and metrics read as attributes too.

    ``record.model`` is ``record.labels["model"]`` and ``record.robust_accuracy``
    is ``record.metrics["robust_accuracy"]``; a name in neither reads as None
    (a failed job has no metrics).
    """

    key: str
    track: str
    position: int
    labels: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"  # ok | invalid | failed
    metrics: dict[str, Any] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("labels", "metrics"):
            raise AttributeError(name)
        if name in self.labels:
            return self.labels[name]
        return self.metrics.get(name)


@dataclass(frozen=True)
class Outcome:
    """Per-example result of one job: its index and the values the track chose (read as attributes: ``o.robust``)."""

    example: int
    values: Mapping[str, Any]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "values":
            raise AttributeError(name)
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(f"outcome has no value '{name}' (it has: {', '.join(self.values)})") from None


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
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            version = self.get_meta("schema_version")
            if version is not None and version != SCHEMA_VERSION:
                self._db.close()
                raise UserError(
                    f"'{self.path.parent}' was written by another frontier-bench (store schema {version}; this one reads {SCHEMA_VERSION}); "
                    f"re-run its spec into a new folder: bench run --out NEW_FOLDER [--config SPEC]"
                )
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as error:
            raise UserError(f"'{self.path}' is not a readable results store: {error}") from None
        if version is None:
            self.set_meta("schema_version", SCHEMA_VERSION)

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

    def put(self, record: Record, outcomes: Iterable[Mapping[str, Any]] = (), artifacts: Mapping[str, bytes] | None = None) -> None:
        """Store one job, its per-example outcomes (in example order) and its artifacts atomically (replacing an earlier failed try)."""
        values = [json.dumps(getattr(record, f), default=str) if f in _JSON_FIELDS else getattr(record, f) for f in RECORD_FIELDS]
        rows = ((record.key, i, json.dumps(dict(o), default=_plain)) for i, o in enumerate(outcomes))  # read inside the transaction
        blobs = ((record.key, name, sqlite3.Binary(blob)) for name, blob in (artifacts or {}).items())
        with self._transaction() as db:
            db.execute("DELETE FROM outcomes WHERE job = ?", (record.key,))
            db.execute("DELETE FROM artifacts WHERE job = ?", (record.key,))
            db.execute(f"INSERT OR REPLACE INTO jobs ({', '.join(RECORD_FIELDS)}) VALUES ({', '.join('?' * len(RECORD_FIELDS))})", values)
            db.executemany("INSERT INTO outcomes (job, example, data) VALUES (?, ?, ?)", rows)
            db.executemany("INSERT INTO artifacts (job, name, blob) VALUES (?, ?, ?)", blobs)

    def set_derived_flags(self, flags: Mapping[str, Iterable[str]]) -> None:
        """Replace the flags derived across jobs (e.g. not monotone in eps), in one transaction."""
        with self._transaction() as db:
            db.execute("DELETE FROM derived_flags")
            db.executemany("INSERT INTO derived_flags (job, flag) VALUES (?, ?)", [(k, f) for k, fs in flags.items() for f in set(fs)])

    def records(self, *, derived: bool = True, keys: Sequence[str] | None = None) -> list[Record]:
        """Stored jobs in plan order; ``derived`` adds the cross-job flags to each record's own."""
        extra: dict[str, set[str]] = {}
        if derived:
            for job, flag in self._db.execute("SELECT job, flag FROM derived_flags"):
                extra.setdefault(job, set()).add(flag)
        where, params = _where("key", keys)
        cursor = self._db.execute(f"SELECT {', '.join(RECORD_FIELDS)} FROM jobs{where} ORDER BY position, key", params)
        out = []
        for row in cursor:
            data = dict(zip(RECORD_FIELDS, row, strict=True))
            for name in _JSON_FIELDS:
                data[name] = json.loads(data[name])
            data["flags"] = sorted(set(data["flags"]) | extra.get(data["key"], set()))
            out.append(Record(**data))
        return out

    def outcomes(self, keys: Sequence[str] | None = None) -> dict[str, list[Outcome]]:
        """Per-example outcomes by job key, in example order."""
        where, params = _where("job", keys)
        found: dict[str, list[Outcome]] = {}
        for job, example, data in self._db.execute(f"SELECT job, example, data FROM outcomes{where} ORDER BY job, example", params):
            found.setdefault(job, []).append(Outcome(example, json.loads(data)))
        return found

    def artifacts(self, name: str | None = None, keys: Sequence[str] | None = None) -> dict[str, dict[str, bytes]]:
        """Artifacts by job key, then name (``name``: only that one)."""
        where, params = _where("job", keys)
        if name is not None:
            where += (" AND" if where else " WHERE") + " name = ?"
            params = (*params, name)
        found: dict[str, dict[str, bytes]] = {}
        for job, artifact, blob in self._db.execute(f"SELECT job, name, blob FROM artifacts{where} ORDER BY job, name", params):
            found.setdefault(job, {})[artifact] = bytes(blob)
        return found


def _where(column: str, keys: Sequence[str] | None) -> tuple[str, tuple]:
    if keys is None:
        return "", ()
    return f" WHERE {column} IN ({', '.join('?' * len(keys))})", tuple(keys)


def _plain(value: Any) -> Any:
    """numpy and torch scalars in outcomes, as JSON numbers."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def record_dict(record: Record) -> dict[str, Any]:
    """A record as one flat dict: its fields, its labels and its metrics side by side (the HTML checks table reads these)."""
    base = {f: getattr(record, f) for f in RECORD_FIELDS}
    return {**record.metrics, **record.labels, **base}
