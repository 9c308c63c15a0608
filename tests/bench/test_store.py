"""The SQLite store: atomic job writes, resume keys, per-example outcomes."""

from __future__ import annotations

import sqlite3

import pytest

from bench.errors import UserError
from bench.store import Outcome, Record, Store


def record(key: str, status: str = "ok", position: int = 0) -> Record:
    return Record(
        key=key, position=position, track="t", model="m", defense="none", attack="a", dataset="d", norm="linf", eps=0.1, n=2, status=status, flags=["x"]
    )


def test_round_trip_of_records_and_outcomes(tmp_path):
    with Store(tmp_path / "results.db") as store:
        store.put(record("k1", position=1), [Outcome(0, True, False), Outcome(1, True, True)])
        store.put(record("k0", position=0), [Outcome(0, False, False)])
        store.set_meta("spec", {"a": 1})
    with Store(tmp_path / "results.db", create=False) as store:
        assert [r.key for r in store.records()] == ["k0", "k1"]  # plan order
        assert store.records()[1].flags == ["x"]
        assert store.outcomes()["k1"] == [Outcome(0, True, False), Outcome(1, True, True)]
        assert store.outcomes(["k0"]).keys() == {"k0"}
        assert store.get_meta("spec") == {"a": 1}


def test_failed_jobs_are_retried_and_replaced_without_duplicates(tmp_path):
    with Store(tmp_path / "results.db") as store:
        store.put(record("k", status="failed"))
        assert store.finished_keys() == set()
        store.put(record("k"), [Outcome(0, True, True)])
        assert store.finished_keys() == {"k"}
        assert len(store.records()) == 1


def test_a_write_that_fails_leaves_nothing_behind(tmp_path):
    with Store(tmp_path / "results.db") as store:
        with pytest.raises(sqlite3.IntegrityError):
            store.put(record("k"), [Outcome(0, True, True), Outcome(0, True, True)])  # duplicate example
        assert store.records() == [] and store.outcomes() == {}


def test_not_a_run_folder_or_not_a_store_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="is not a run folder"):
        Store(tmp_path / "results.db", create=False)
    (tmp_path / "junk.db").write_text("this is not sqlite" * 100)
    with pytest.raises(UserError, match="not a readable results store"):
        Store(tmp_path / "junk.db")


def test_gallery_examples_round_trip_with_their_job_and_are_replaced_with_it(tmp_path):
    import numpy as np

    from bench.store import Example

    clean = np.linspace(0, 1, 3 * 4 * 4, dtype=np.float32).reshape(3, 4, 4)
    examples = [Example(5, 2, 2, 7, clean, 1 - clean), Example(1, 0, 3, 3, clean, clean)]
    with Store(tmp_path / "results.db") as store:
        store.put(record("k", status="failed"), examples=[Example(9, 0, 0, 0, clean, clean)])
        store.put(record("k"), [Outcome(0, True, True)], examples)
        store.put(record("other"))
        found = store.examples()
    assert list(found) == ["k"]
    assert [(e.example, e.label, e.clean_prediction, e.adversarial_prediction) for e in found["k"]] == [(1, 0, 3, 3), (5, 2, 2, 7)]
    assert np.array_equal(found["k"][1].clean, clean) and np.array_equal(found["k"][1].adversarial, 1 - clean)
    assert found["k"][0].clean.shape == (3, 4, 4) and found["k"][0].clean.dtype == np.float32
