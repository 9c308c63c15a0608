"""A damaged, hand-edited or read-only run folder, and an unreadable spec file: one ``error:`` line and exit 2, or the report; never a traceback.

The run folders are tiny stores written with ``Store`` and ``Record`` directly
(two adversarial jobs, no model trained); the damage is real: a page of the
SQLite file overwritten with garbage, a file that is not SQLite, a row whose
JSON was edited by hand.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from bench import store as store_module
from bench.cli import main
from bench.errors import UserError
from bench.spec import read_toml
from bench.store import Record, Store

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0  # root ignores file permissions


def tiny_run(folder: Path) -> Path:
    """A finished run folder of the adversarial track: one model, FGSM and PGD at one eps, three test points."""
    folder.mkdir(parents=True, exist_ok=True)
    with Store(folder / "results.db") as store:
        store.set_meta("track", "adversarial")
        for position, attack in enumerate(("fgsm", "pgd")):
            labels = {"model": "small-cnn", "defense": "none", "attack": attack, "dataset": "digits", "norm": "linf", "eps": 0.1}
            metrics = {"n": 3, "clean_accuracy": 1.0, "robust_accuracy": 2 / 3 - position / 3}
            outcomes = [{"clean_correct": True, "robust": robust} for robust in (True, position == 0, False)]
            store.put(Record(key=f"job-{attack}", track="adversarial", position=position, labels=labels, metrics=metrics, seconds=0.5), outcomes)
        store.set_derived_flags({})
    return folder


def damage(db: Path, table: str) -> None:
    """Overwrite the root page of ``table`` (its whole b-tree for a store this small) with garbage."""
    with sqlite3.connect(db) as connection:
        (page,) = connection.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()
        (size,) = connection.execute("PRAGMA page_size").fetchone()
    connection.close()
    data = bytearray(db.read_bytes())
    data[(page - 1) * size : page * size] = b"\xa5" * size
    db.write_bytes(bytes(data))


def edit(db: Path, sql: str) -> None:
    """What someone with the sqlite3 shell did to the store."""
    with sqlite3.connect(db) as connection:
        connection.execute(sql)
    connection.close()


def error_line(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run ``bench argv``; it must exit 2 with exactly one line on stderr, ``error: ...``; that line."""
    capsys.readouterr()
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and err.endswith("\n"), err
    return err.rstrip("\n")


def rerun_hint(db: Path, what: str) -> str:
    return f"error: '{db}' is damaged ({what}); re-run into a new folder: bench run --out NEW_FOLDER [--config SPEC]"


# -- a damaged SQLite file ---------------------------------------------------------
@pytest.mark.parametrize("table", ["meta", "jobs", "derived_flags", "outcomes", "artifacts"])
def test_report_of_a_store_with_a_damaged_page_is_one_line(tmp_path, capsys, table):
    run = tiny_run(tmp_path / "run")
    damage(run / "results.db", table)
    assert error_line(capsys, "report", str(run)) == rerun_hint(run / "results.db", "database disk image is malformed")


@pytest.mark.parametrize("table", ["meta", "jobs"])  # read before any job is planned: the run stops before any compute
def test_run_into_a_store_with_a_damaged_page_is_one_line(tmp_path, capsys, table):
    run = tiny_run(tmp_path / "run")
    damage(run / "results.db", table)
    assert error_line(capsys, "run", "--out", str(run), "-q") == rerun_hint(run / "results.db", "database disk image is malformed")


DAMAGED = r"results\.db' is damaged \(database disk image is malformed\); re-run into a new folder: bench run --out NEW_FOLDER"


@pytest.mark.parametrize("read_only", [False, True])
def test_opening_a_store_whose_meta_page_is_damaged_is_a_user_error(tmp_path, read_only):
    run = tiny_run(tmp_path / "run")
    damage(run / "results.db", "meta")
    with pytest.raises(UserError, match=DAMAGED):
        Store(run / "results.db", create=False, read_only=read_only)


@pytest.mark.parametrize(
    ("table", "query"),
    [
        ("jobs", lambda s: s.finished_keys()),
        ("jobs", lambda s: s.records(derived=False)),
        ("derived_flags", lambda s: s.records()),
        ("outcomes", lambda s: s.outcomes()),
        ("artifacts", lambda s: s.artifacts()),
        ("jobs", lambda s: s.put(Record(key="new", track="adversarial", position=9))),
        ("derived_flags", lambda s: s.set_derived_flags({"job-pgd": ["x"]})),
    ],
)
def test_every_query_of_a_damaged_store_is_a_user_error(tmp_path, table, query):
    run = tiny_run(tmp_path / "run")
    damage(run / "results.db", table)
    with Store(run / "results.db", create=False) as store, pytest.raises(UserError, match=DAMAGED):
        query(store)


@pytest.mark.parametrize("command", [("report",), ("run", "-q", "--out")])
def test_a_results_db_that_is_a_text_file_is_one_line(tmp_path, capsys, command):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.db").write_text("job,robust_accuracy\npgd,0.5\n" * 200)
    assert error_line(capsys, *command, str(run)) == rerun_hint(run / "results.db", "file is not a database")
    assert (run / "results.db").read_text().startswith("job,robust_accuracy")  # left as it was


# -- rows edited by hand -------------------------------------------------------------
@pytest.mark.parametrize(
    ("sql", "what"),
    [
        (
            "UPDATE jobs SET metrics = 'robust: 0.5' WHERE key = 'job-pgd'",
            "job 'job-pgd' column metrics is not JSON: Expecting value: line 1 column 1 (char 0)",
        ),
        (
            "UPDATE jobs SET labels = '{\"model\": ' WHERE key = 'job-fgsm'",
            "job 'job-fgsm' column labels is not JSON: Expecting value: line 1 column 11 (char 10)",
        ),
        ("UPDATE jobs SET labels = '[1, 2]' WHERE key = 'job-fgsm'", "job 'job-fgsm' column labels is not a JSON object"),
        ("UPDATE jobs SET flags = '{}' WHERE key = 'job-pgd'", "job 'job-pgd' column flags is not a JSON array"),
        ("UPDATE outcomes SET data = 'true' WHERE job = 'job-pgd' AND example = 2", "job 'job-pgd' outcome 2 is not a JSON object"),
        ("UPDATE meta SET value = 'adversarial' WHERE key = 'track'", "meta 'track' is not JSON: Expecting value: line 1 column 1 (char 0)"),
    ],
)
def test_a_row_with_broken_json_names_the_file_the_row_and_the_column(tmp_path, capsys, sql, what):
    run = tiny_run(tmp_path / "run")
    edit(run / "results.db", sql)
    assert error_line(capsys, "report", str(run)) == rerun_hint(run / "results.db", what)


# -- read-only run folders -------------------------------------------------------------
def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_read_only_store_reads_and_writes_nothing(tmp_path):
    run = tiny_run(tmp_path / "run")
    before = (run / "results.db").read_bytes()
    with Store(run / "results.db", create=False, read_only=True) as store:
        assert [r.key for r in store.records()] == ["job-fgsm", "job-pgd"]
        assert store.get_meta("schema_version") == store_module.SCHEMA_VERSION
        with pytest.raises(RuntimeError, match="opened read-only"):
            store.set_meta("track", "other")
    assert (run / "results.db").read_bytes() == before


def test_where_the_folder_is_not_writable_the_store_is_read_as_immutable(tmp_path, capsys, monkeypatch):
    run = tiny_run(tmp_path / "run")
    before = files(run)
    monkeypatch.setattr(store_module, "_writable", lambda path: False)  # what a read-only folder answers a non-root user
    assert store_module._read_only_uri(run / "results.db").endswith("?mode=ro&immutable=1")
    capsys.readouterr()
    assert main(["report", str(run), "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert "small-cnn" in out and "pgd" in out
    assert files(run) == before  # not even a -shm file


def test_immutable_reading_refuses_results_still_in_the_write_ahead_log(tmp_path, monkeypatch):
    run = tiny_run(tmp_path / "run")
    with Store(run / "results.db", create=False) as writer:  # an open writer: its last job is in results.db-wal only
        writer.put(Record(key="job-late", track="adversarial", position=5))
        monkeypatch.setattr(store_module, "_writable", lambda path: False)
        with pytest.raises(
            UserError, match=r"results\.db-wal' holds results not yet merged into results\.db, which a read-only folder cannot merge; copy the folder"
        ):
            Store(run / "results.db", create=False, read_only=True)


@pytest.mark.skipif(AS_ROOT, reason="root may write a read-only folder")
def test_a_read_only_run_folder_can_be_reported(tmp_path, capsys):
    run = tiny_run(tmp_path / "run")
    before = files(run)
    for path in (*run.iterdir(), run):
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        capsys.readouterr()
        assert main(["report", str(run), "--format", "md"]) == 0, capsys.readouterr().err
        assert "small-cnn" in capsys.readouterr().out
        assert files(run) == before
    finally:
        run.chmod(0o755)


def test_read_only_refuses_what_is_not_a_results_store_like_the_writer(tmp_path):
    with sqlite3.connect(tmp_path / "other.db") as db:  # some other program's SQLite file
        db.execute("CREATE TABLE notes (text TEXT)")
    db.close()
    with pytest.raises(UserError, match=r"other\.db' is not a results store \(it has no meta table\); re-run into a new folder"):
        Store(tmp_path / "other.db", create=False, read_only=True)
    with sqlite3.connect(tmp_path / "results.db") as db:  # what schema 1 wrote
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    db.close()
    with pytest.raises(UserError, match=r"store schema 1; this one reads 2\); re-run its spec into a new folder"):
        Store(tmp_path / "results.db", create=False, read_only=True)
    with sqlite3.connect(tmp_path / "results.db") as db:
        assert [name for (name,) in db.execute("SELECT name FROM sqlite_master")] == ["meta", "sqlite_autoindex_meta_1"]  # nothing added
    db.close()


# -- unreadable spec files ---------------------------------------------------------------
def spec_error(capsys: pytest.CaptureFixture[str], path: Path | str) -> str:
    line = error_line(capsys, "run", "--config", str(path), "--out", str(Path(path).parent / "never-made"))
    assert not (Path(path).parent / "never-made").exists()
    return line


def test_a_spec_path_that_is_a_folder_is_one_line(tmp_path, capsys):
    (tmp_path / "spec.toml").mkdir()
    assert spec_error(capsys, tmp_path / "spec.toml") == f"error: spec file '{tmp_path / 'spec.toml'}' cannot be read: Is a directory"


@pytest.mark.skipif(AS_ROOT, reason="root reads a file of mode 000")
def test_a_spec_file_without_read_permission_is_one_line(tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text("n_examples = 10\n")
    spec.chmod(0)
    assert spec_error(capsys, spec) == f"error: spec file '{spec}' cannot be read: Permission denied"


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="no /proc")
def test_a_spec_file_that_fails_to_read_is_one_line():
    with pytest.raises(UserError, match=r"^spec file '/proc/self/mem' cannot be read: Input/output error$"):
        read_toml("/proc/self/mem")
