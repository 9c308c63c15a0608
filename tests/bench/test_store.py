"""The SQLite store (schema 2): atomic job writes, resume keys, per-example outcomes, artifacts, the schema-1 views."""

from __future__ import annotations

import sqlite3

import pytest

from bench.errors import UserError
from bench.store import Outcome, Record, Store


def record(key: str, status: str = "ok", position: int = 0) -> Record:
    labels = {"model": "m", "defense": "none", "attack": "a", "dataset": "d", "norm": "linf", "eps": 0.1}
    return Record(key=key, track="t", position=position, labels=labels, status=status, metrics={"n": 2, "robust_accuracy": 0.5}, flags=["x"])


def values(clean_correct: bool, robust: bool) -> dict:
    return {"clean_correct": clean_correct, "robust": robust}


def test_round_trip_of_records_and_outcomes(tmp_path):
    with Store(tmp_path / "results.db") as store:
        store.put(record("k1", position=1), [values(True, False), values(True, True)])
        store.put(record("k0", position=0), [values(False, False)])
        store.set_meta("spec", {"a": 1})
    with Store(tmp_path / "results.db", create=False) as store:
        assert [r.key for r in store.records()] == ["k0", "k1"]  # plan order
        first = store.records()[1]
        assert first.flags == ["x"] and first.labels["eps"] == 0.1 and first.metrics["robust_accuracy"] == 0.5
        assert first.model == "m" and first.robust_accuracy == 0.5 and first.clean_accuracy is None  # labels and metrics read as attributes
        assert store.outcomes()["k1"] == [Outcome(0, values(True, False)), Outcome(1, values(True, True))]
        assert store.outcomes()["k1"][1].robust is True
        assert store.outcomes(["k0"]).keys() == {"k0"}
        assert store.get_meta("spec") == {"a": 1}


def test_the_schema_1_columns_are_views(tmp_path):
    with Store(tmp_path / "results.db") as store:
        store.put(record("k"), [values(True, False)])
    with sqlite3.connect(tmp_path / "results.db") as db:
        assert db.execute("SELECT model, attack, norm, eps, n, robust_accuracy FROM adversarial_jobs").fetchall() == [("m", "a", "linf", 0.1, 2, 0.5)]
        assert db.execute("SELECT job, example, clean_correct, robust FROM adversarial_outcomes").fetchall() == [("k", 0, 1, 0)]


def test_failed_jobs_are_retried_and_replaced_without_duplicates(tmp_path):
    with Store(tmp_path / "results.db") as store:
        store.put(record("k", status="failed"), artifacts={"gallery": b"old"})
        assert store.finished_keys() == set()
        store.put(record("k"), [values(True, True)], {"gallery": b"new"})
        assert store.finished_keys() == {"k"}
        assert len(store.records()) == 1
        assert store.artifacts() == {"k": {"gallery": b"new"}}


def test_a_write_that_fails_leaves_nothing_behind(tmp_path):
    class Unwritable:
        def keys(self):
            raise RuntimeError("cannot be stored")

    with Store(tmp_path / "results.db") as store:
        with pytest.raises(RuntimeError):
            store.put(record("k"), [values(True, True), Unwritable()])
        assert store.records() == [] and store.outcomes() == {}


def test_artifacts_are_found_by_job_and_name(tmp_path):
    with Store(tmp_path / "results.db") as store:
        store.put(record("a"), artifacts={"gallery": b"\x00\x01", "curve": b"c"})
        store.put(record("b"))
        assert store.artifacts() == {"a": {"curve": b"c", "gallery": b"\x00\x01"}}
        assert store.artifacts("gallery") == {"a": {"gallery": b"\x00\x01"}}
        assert store.artifacts(keys=["b"]) == {}


def test_not_a_run_folder_or_not_a_store_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="is not a run folder"):
        Store(tmp_path / "results.db", create=False)
    (tmp_path / "junk.db").write_text("this is not sqlite" * 100)
    for read_only in (False, True):
        with pytest.raises(UserError, match=r"junk\.db' is damaged \(file is not a database\); re-run into a new folder: bench run --out NEW_FOLDER"):
            Store(tmp_path / "junk.db", create=False, read_only=read_only)
    with pytest.raises(UserError, match="is not a run folder"):
        Store(tmp_path / "results.db", read_only=True)  # reading never creates a store


def test_a_read_only_store_reads_what_the_writer_stored_and_refuses_writes(tmp_path):
    with Store(tmp_path / "results.db") as store:
        store.put(record("k"), [values(True, False)], {"gallery": b"g"})
        store.set_meta("spec", {"a": 1})
    with Store(tmp_path / "results.db", create=False, read_only=True) as store:
        assert [r.key for r in store.records()] == ["k"] and store.outcomes()["k"] == [Outcome(0, values(True, False))]
        assert store.artifacts() == {"k": {"gallery": b"g"}} and store.all_meta()["spec"] == {"a": 1}
        for write in (lambda: store.put(record("j")), lambda: store.set_meta("x", 1), lambda: store.set_derived_flags({})):
            with pytest.raises(RuntimeError, match="opened read-only"):
                write()
        assert store.finished_keys() == {"k"}


def test_a_folder_of_the_old_schema_is_refused_with_how_to_rerun_it(tmp_path):
    with sqlite3.connect(tmp_path / "results.db") as db:  # what schema 1 wrote
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        db.execute("CREATE TABLE jobs (key TEXT PRIMARY KEY, model TEXT, robust_accuracy REAL)")
    with pytest.raises(UserError, match=r"store schema 1; this one reads 2\); re-run its spec into a new folder: bench run --out"):
        Store(tmp_path / "results.db", create=False)
