"""Finding and reading stores: Tango's stepinfo.sqlite, workspace folders, folders of JSON."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from tango_stepinfo import _stores, loads
from tango_stepinfo._stores import StoreError, database_of, entries, is_database

from .conftest import TANGO_DATA

DB = TANGO_DATA / "sqlite" / "stepinfo.sqlite"


def test_a_database_file_and_a_workspace_folder_give_the_rows_by_key(tmp_path: Path) -> None:
    shutil.copyfile(DB, tmp_path / "stepinfo.sqlite")
    with closing(sqlite3.connect(DB)) as db, db:
        expected = sorted(db.execute("SELECT key, value FROM unnamed"))
    for name in (str(DB), str(tmp_path)):
        got = entries(name)
        assert got is not None
        assert [(e.key, e.data) for e in got] == expected
        assert got[0].label.endswith(f"stepinfo.sqlite[{expected[0][0]}]")
        assert all(loads(e.data or b"").unique_id == e.key for e in got)


def test_a_folder_of_json_lists_its_json_files_only(tmp_path: Path) -> None:
    for name in ("b.json", "a.json", "notes.txt"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "sub.json").mkdir()
    got = entries(str(tmp_path))
    assert got is not None
    assert [(e.key, e.data) for e in got] == [("a.json", None), ("b.json", None)]
    assert got[0].label == os.path.join(str(tmp_path), "a.json")


def test_plain_files_and_stdin_are_not_stores(tmp_path: Path) -> None:
    record = TANGO_DATA / "json" / "completed.json"
    assert entries(str(record)) is None
    assert entries("-") is None
    assert entries(str(tmp_path / "missing")) is None  # left to the file reader's error


def test_a_folder_with_nothing_to_read_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"no stepinfo\.sqlite and no \.json files") as e:
        entries(str(tmp_path))
    assert not e.value.unreadable


def test_a_database_without_the_table(tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(StoreError, match="no table 'unnamed' \\(tables: t\\)"):
        entries(str(db))


def test_sniffing_reads_only_regular_files(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert not is_database(str(fifo))  # would block if opened
    assert is_database(str(DB))
    assert not is_database(str(TANGO_DATA / "README.md"))
    assert database_of(str(TANGO_DATA)) is None  # a folder without stepinfo.sqlite


def test_reading_never_writes_or_creates_anything(tmp_path: Path) -> None:
    db = tmp_path / "stepinfo.sqlite"
    shutil.copyfile(DB, db)
    db.chmod(0o444)
    tmp_path.chmod(0o555)  # a read-only folder: no journal could be made
    try:
        before = db.read_bytes()
        assert len(entries(str(tmp_path)) or []) == 4
        assert db.read_bytes() == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["stepinfo.sqlite"]
    finally:
        tmp_path.chmod(0o755)


def test_a_reader_sees_committed_records_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "stepinfo.sqlite"
    shutil.copyfile(DB, db)
    before = [e.data for e in entries(str(db)) or []]
    writer = sqlite3.connect(db, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE unnamed SET value = x'00'")
        assert [e.data for e in entries(str(db)) or []] == before  # not yet committed
        writer.execute("COMMIT")
    finally:
        writer.close()
    assert {e.data for e in entries(str(db)) or []} == {b"\x00"}


def test_a_database_locked_for_a_commit_waits_then_fails_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_stores, "TIMEOUT", 0.05)
    db = tmp_path / "stepinfo.sqlite"
    shutil.copyfile(DB, db)
    writer = sqlite3.connect(db, isolation_level=None)
    try:
        writer.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreError, match="database is locked") as e:
            entries(str(db))
        assert e.value.unreadable
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("create", "problem"),
    [
        (
            "CREATE TABLE unnamed (key TEXT PRIMARY KEY, n INT,"
            " value BLOB GENERATED ALWAYS AS (zeroblob(100000000)) VIRTUAL)",
            "'unnamed' has generated columns ('value')",
        ),
        ("CREATE VIRTUAL TABLE unnamed USING fts4(key, value)", "'unnamed' is a virtual table"),
    ],
)
def test_a_table_that_computes_its_values_is_refused(
    tmp_path: Path, create: str, problem: str
) -> None:
    # A few kilobytes of database whose rows SQLite would compute when read: 100 MB each.
    db = tmp_path / "stepinfo.sqlite"
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute(create)
        conn.executemany("INSERT INTO unnamed (key) VALUES (?)", [("a",), ("b",)])
    assert db.stat().st_size < 100_000
    with pytest.raises(StoreError, match=re.escape(problem)) as e:
        entries(str(tmp_path))
    assert not e.value.unreadable


def test_a_row_whose_key_or_text_value_is_not_utf8_is_one_bad_entry(tmp_path: Path) -> None:
    # SQLite stores TEXT as given: a key (or a value kept as TEXT) that is not UTF-8 made
    # sqlite3 raise for the whole query, so not one good record of the store could be read.
    db = tmp_path / "stepinfo.sqlite"
    shutil.copyfile(DB, db)
    with closing(sqlite3.connect(db)) as conn, conn:
        good = sorted(conn.execute("SELECT key, value FROM unnamed"))
        conn.execute("INSERT INTO unnamed VALUES (CAST(x'41ff42' AS TEXT), x'80')")
        conn.execute("INSERT INTO unnamed VALUES ('Text-1', CAST(x'7bff7d' AS TEXT))")
    got = entries(str(db))
    assert got is not None
    assert [(e.key, e.data) for e in got if e.key in dict(good)] == good
    bad = {e.key: e for e in got if e.key not in dict(good)}
    assert sorted(bad) == ["A\\xffB", "Text-1"]
    assert bad["A\\xffB"].label == f"{db}[A\\xffB]" and bad["A\\xffB"].data == b"\x80"
    assert bad["Text-1"].data == b"{\xff}"  # the bytes as stored, for the decoder to refuse


HALF_COMMIT = """\
import os, signal, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA cache_size = 1")  # pages go to the file (and the journal) at once
db.execute("BEGIN IMMEDIATE")
db.execute("UPDATE unnamed SET value = zeroblob(20000)")
os.kill(os.getpid(), signal.SIGKILL)  # a writer killed mid-commit: the journal stays hot
"""


def test_a_journal_left_by_a_killed_writer_is_named_not_a_readonly_error(tmp_path: Path) -> None:
    # A read-only reader cannot roll a hot journal back; sqlite3 said only "attempt to write a
    # readonly database", for a command that writes nothing.
    db = tmp_path / "stepinfo.sqlite"
    shutil.copyfile(DB, db)
    with closing(sqlite3.connect(db)) as conn, conn:
        before = sorted(conn.execute("SELECT key, value FROM unnamed"))
    killed = subprocess.run([sys.executable, "-c", HALF_COMMIT, str(db)], check=False)
    assert killed.returncode == -signal.SIGKILL
    assert (tmp_path / "stepinfo.sqlite-journal").exists()
    with pytest.raises(StoreError) as e:
        entries(str(tmp_path))
    assert e.value.unreadable
    assert e.value.problem == (
        "cannot read the database: a writer stopped in the middle of a commit and left its"
        " journal (stepinfo.sqlite-journal), which only a writer can roll back: open the"
        " workspace with Tango (or the database with the sqlite3 shell) first"
    )
    with closing(sqlite3.connect(db)) as conn:  # a writer: rolls the journal back
        conn.execute("SELECT count(*) FROM unnamed").fetchall()
    got = entries(str(tmp_path))
    assert got is not None and [(x.key, x.data) for x in got] == before


@pytest.mark.parametrize(
    ("content", "what"),
    [(b"", "it is empty"), (b"\x00" * 100, "100 bytes without SQLite's header")],
)
def test_a_workspace_whose_database_is_not_one_is_named_as_such(
    tmp_path: Path, content: bytes, what: str
) -> None:
    # An empty or damaged stepinfo.sqlite (a writer killed as it created it, a partial copy)
    # was reported as "no stepinfo.sqlite and no .json files in the folder".
    (tmp_path / "stepinfo.sqlite").write_bytes(content)
    (tmp_path / "notes.json").write_text("{}")  # not read: the folder is a workspace
    with pytest.raises(StoreError) as e:
        entries(str(tmp_path))
    assert e.value.name == str(tmp_path / "stepinfo.sqlite")
    assert e.value.problem == f"not a SQLite database ({what})"
    assert e.value.unreadable
