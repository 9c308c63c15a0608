"""The results store: one SQLite file per run folder.

Each finished job is one row in ``jobs`` (the track's labels and metrics as
JSON, with status, flags and provenance), its per-example rows in ``outcomes``
(values the track chose, e.g. ``clean_correct`` and ``robust``) and its
``artifacts`` (gallery images, ...), written in one transaction: a run killed
at any moment leaves every finished job whole and no half-written one. Jobs
are keyed by the hash of everything that determines their result, so a re-run
skips them. The views ``adversarial_jobs`` and ``adversarial_outcomes`` give
schema 1's columns. A folder written by another schema, a damaged file (a
malformed SQLite page, a file that is not SQLite, a row whose JSON was edited
by hand) and a file the system will not let us use are each one ``UserError``
line naming the file; ``read_only`` opens a finished run (even in a folder we
may not write) without writing to it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

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
_JSON_FIELDS = {"labels": dict, "metrics": dict, "flags": list, "params": dict, "provenance": dict}  # column: the JSON type it holds
_RERUN = "re-run into a new folder: bench run --out NEW_FOLDER [--config SPEC]"
_DAMAGED = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
# the system's refusals (primary result codes): the user's to fix, never our bug
_REFUSED = {sqlite3.SQLITE_PERM, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_IOERR}
_REFUSED |= {sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_FULL, sqlite3.SQLITE_AUTH}
_Method = TypeVar("_Method", bound=Callable[..., Any])


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


def _sqlite_errors(method: _Method) -> _Method:
    """Turn SQLite's verdict on the file itself (damaged, locked, unwritable) into one ``UserError`` line; other errors are ours and stay."""

    @functools.wraps(method)
    def guarded(self: Store, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as error:
            user_error = self._user_error(error)
            if user_error is None:
                raise
            raise user_error from None

    return guarded  # type: ignore[return-value]


class Store:
    """A run folder's ``results.db``; the driver process is its single writer.

    ``read_only`` opens an existing store without writing to it (no schema, no
    stamp; a write is a ``RuntimeError``) and checks its schema version as the
    writer does: for reports, and for run folders we may not write.
    """

    def __init__(self, path: str | Path, *, create: bool = True, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        if (read_only or not create) and not self.path.is_file():
            raise UserError(f"'{self.path.parent}' is not a run folder (no {self.path.name})")
        try:
            if read_only:
                self._db = sqlite3.connect(_read_only_uri(self.path), uri=True, isolation_level=None)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.path, isolation_level=None)
            self._open()
        except sqlite3.DatabaseError as error:
            self._close_if_open()
            raise self._user_error(error) or UserError(f"'{self.path}' is not a readable results store: {error}") from None
        except BaseException:
            self._close_if_open()
            raise

    def _open(self) -> None:
        """Check the schema version; a writer also creates the tables and stamps a new store."""
        if self.read_only:
            if self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone() is None:
                raise UserError(f"'{self.path}' is not a results store (it has no meta table); {_RERUN}")
        else:
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA journal_mode = WAL")
            # WAL with NORMAL: a commit survives a killed process (what a killed run needs); only a power cut may lose the
            # last commits, never corrupt the store. Storing a job costs 0.15 ms instead of FULL's 0.7 ms (fsync each commit).
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        version = self.get_meta("schema_version")
        if version is None and self.read_only:
            raise UserError(f"'{self.path}' is not a results store (it has no schema version); {_RERUN}")
        if version is not None and version != SCHEMA_VERSION:
            raise UserError(
                f"'{self.path.parent}' was written by another frontier-bench (store schema {version}; this one reads {SCHEMA_VERSION}); "
                f"re-run its spec into a new folder: bench run --out NEW_FOLDER [--config SPEC]"
            )
        if not self.read_only:
            self._db.executescript(_SCHEMA)
            if version is None:
                self.set_meta("schema_version", SCHEMA_VERSION)

    def _close_if_open(self) -> None:
        if hasattr(self, "_db"):
            self._db.close()

    def _user_error(self, error: sqlite3.DatabaseError) -> UserError | None:
        """The one line for an error SQLite blames on the file or the system; None for anything else (a bug of ours)."""
        code = getattr(error, "sqlite_errorcode", None)
        if code is None:
            return None
        if code & 0xFF in _DAMAGED:  # extended codes carry the primary one in their low byte
            return self._damaged(str(error))
        if code & 0xFF in _REFUSED:
            return UserError(f"'{self.path}' cannot be used ({error})")
        return None

    def _damaged(self, what: str) -> UserError:
        return UserError(f"'{self.path}' is damaged ({what}); {_RERUN}")

    def _json(self, text: Any, where: str, kind: type | None = None) -> Any:
        """One stored JSON value; text that is not JSON (or not of ``kind``) is a damaged store, named down to its row and column."""
        try:
            value = json.loads(text)
        except (json.JSONDecodeError, TypeError) as error:  # TypeError: not text at all (a NULL, a number)
            raise self._damaged(f"{where} is not JSON: {error}") from None
        if kind is not None and not isinstance(value, kind):
            raise self._damaged(f"{where} is not a JSON {'object' if kind is dict else 'array'}")
        return value

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        if self.read_only:
            raise RuntimeError(f"store '{self.path}' was opened read-only")
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            if self._db.in_transaction:  # SQLite may have rolled back already (a damaged page, a full disk)
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- run metadata -------------------------------------------------------
    @_sqlite_errors
    def get_meta(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else self._json(row[0], f"meta '{key}'")

    @_sqlite_errors
    def all_meta(self) -> dict[str, Any]:
        return {key: self._json(value, f"meta '{key}'") for key, value in self._db.execute("SELECT key, value FROM meta ORDER BY key")}

    @_sqlite_errors
    def set_meta(self, key: str, value: Any) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value, default=str)))

    # -- jobs ---------------------------------------------------------------
    @_sqlite_errors
    def finished_keys(self) -> set[str]:
        """Keys of jobs that need no re-run (failed jobs are retried)."""
        return {k for (k,) in self._db.execute("SELECT key FROM jobs WHERE status != 'failed'")}

    @_sqlite_errors
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

    @_sqlite_errors
    def delete_jobs(self, keys: Sequence[str]) -> int:
        """Drop jobs with their outcomes and artifacts (``bench run --force`` after a model changed); how many were dropped."""
        if not keys:
            return 0
        where, params = _where("key", keys)
        with self._transaction() as db:
            return db.execute(f"DELETE FROM jobs{where}", params).rowcount

    @_sqlite_errors
    def set_derived_flags(self, flags: Mapping[str, Iterable[str]]) -> None:
        """Replace the flags derived across jobs (e.g. not monotone in eps), in one transaction."""
        with self._transaction() as db:
            db.execute("DELETE FROM derived_flags")
            db.executemany("INSERT INTO derived_flags (job, flag) VALUES (?, ?)", [(k, f) for k, fs in flags.items() for f in set(fs)])

    @_sqlite_errors
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
            for name, kind in _JSON_FIELDS.items():
                data[name] = self._json(data[name], f"job '{data['key']}' column {name}", kind)
            data["flags"] = sorted(set(data["flags"]) | extra.get(data["key"], set()))
            out.append(Record(**data))
        return out

    @_sqlite_errors
    def outcomes(self, keys: Sequence[str] | None = None) -> dict[str, list[Outcome]]:
        """Per-example outcomes by job key, in example order."""
        where, params = _where("job", keys)
        found: dict[str, list[Outcome]] = {}
        for job, example, data in self._db.execute(f"SELECT job, example, data FROM outcomes{where} ORDER BY job, example", params):
            found.setdefault(job, []).append(Outcome(example, self._json(data, f"job '{job}' outcome {example}", dict)))
        return found

    @_sqlite_errors
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


def _read_only_uri(path: Path) -> str:
    """SQLite's read-only URI for ``path``: immutable where the folder or the file is not writable (a WAL reader could not make its -shm file)."""
    uri = f"{path.absolute().as_uri()}?mode=ro"
    if _writable(path.parent) and _writable(path):
        return uri
    wal = path.with_name(f"{path.name}-wal")
    if wal.is_file() and wal.stat().st_size > 0:  # an immutable reader would not see what it holds
        raise UserError(f"'{wal}' holds results not yet merged into {path.name}, which a read-only folder cannot merge; copy the folder and read the copy")
    return f"{uri}&immutable=1"


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK)


def _where(column: str, keys: Sequence[str] | None) -> tuple[str, tuple]:
    if keys is None:
        return "", ()
    return f" WHERE {column} IN ({', '.join('?' * len(keys))})", tuple(keys)


def _plain(value: Any) -> Any:
    """numpy and torch scalars in outcomes, as JSON numbers."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def as_stored(record: Record) -> Record:
    """The record as the store gives it back (its JSON columns through JSON): what a resumed run's ``plan`` reads."""
    return dataclasses.replace(record, **{name: json.loads(json.dumps(getattr(record, name), default=str)) for name in _JSON_FIELDS})


def record_dict(record: Record) -> dict[str, Any]:
    """A record as one flat dict: its fields, its labels and its metrics side by side (the HTML checks table reads these)."""
    base = {f: getattr(record, f) for f in RECORD_FIELDS}
    return {**record.metrics, **record.labels, **base}
