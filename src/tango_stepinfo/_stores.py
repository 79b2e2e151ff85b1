"""Where records are kept in bulk: Tango's ``stepinfo.sqlite``, a workspace folder holding one,
and a folder of ``.json`` record files.

This module only finds and reads the raw entries of a store (pickle bytes from a database, the
paths of JSON files); decoding them into records stays with the caller (the command line reads
each entry exactly as it reads a file of the same kind).

**Databases are opened read-only** with a ``file:...?mode=ro`` URI: nothing is ever created or
written, and a missing file is an error instead of a new empty database. ``immutable=1`` is
deliberately not used: it turns off SQLite's locking, so reading a workspace while ``tango run``
commits to it could see half-written pages. With ``mode=ro`` the reader takes a shared lock, all
rows come from one read transaction (one consistent state of the database, committed data only,
also in WAL mode), and a writer committing at that moment makes the read wait up to
:data:`TIMEOUT` seconds. A database in WAL mode needs its ``-shm`` file to be writable (or
SQLite to be able to create it) even for reading; Tango's databases use the default rollback
journal, which does not.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import List, NamedTuple, Optional

__all__ = [
    "DATABASE",
    "TABLE",
    "TIMEOUT",
    "Entry",
    "StoreError",
    "database_of",
    "entries",
    "is_database",
    "read_only",
]

DATABASE = "stepinfo.sqlite"
"""The file name of a Tango local workspace's record database."""

TABLE = "unnamed"
"""The table sqlitedict (and so Tango) keeps records in: ``key TEXT PRIMARY KEY, value BLOB``."""

TIMEOUT = 10.0
"""Seconds to wait for a lock held by a writer before giving up."""

_MAGIC = b"SQLite format 3\x00"


class StoreError(ValueError):
    """A store could not be read (``unreadable``) or is not a store of records."""

    def __init__(self, name: str, problem: str, *, unreadable: bool = True) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem
        self.unreadable = unreadable


class Entry(NamedTuple):
    """One entry of a store: a database row (``data`` holds its value) or a file (``data`` is
    ``None``: read the file ``label``)."""

    label: str
    """How to name the entry in messages: ``DB[key]``, or the file's path."""
    key: str
    """The row's key (a unique id in Tango's databases), or the file's name."""
    data: Optional[bytes]


def is_database(path: str) -> bool:
    """Whether ``path`` is a regular file starting as every SQLite 3 database does."""
    if not os.path.isfile(path):  # never open a FIFO or device to look at it
        return False
    try:
        with open(path, "rb") as f:
            return f.read(len(_MAGIC)) == _MAGIC
    except OSError:
        return False


def database_of(name: str) -> Optional[Path]:
    """The database ``name`` designates: a SQLite file itself, or a folder's ``stepinfo.sqlite``.

    :returns: ``None`` when ``name`` is neither (a plain file, a folder without a database).
    :raises StoreError: when a folder's ``stepinfo.sqlite`` is a file but not a database (empty
        or damaged: a writer killed as it created it, a partial copy): the folder is a
        workspace whose database cannot be read, not a folder of JSON files.
    """
    if os.path.isdir(name):
        inner = os.path.join(name, DATABASE)
        if is_database(inner):
            return Path(inner)
        if os.path.isfile(inner):
            try:
                size = os.path.getsize(inner)
            except OSError as e:
                raise StoreError(inner, f"cannot read: {e.strerror or e}") from None
            what = "it is empty" if size == 0 else f"{size} bytes without SQLite's header"
            raise StoreError(inner, f"not a SQLite database ({what})")
        return None
    return Path(name) if is_database(name) else None


def read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to the database ``path`` (see the module's notes).

    :raises StoreError: when it cannot be opened.
    """
    uri = path.absolute().as_uri() + "?mode=ro"
    try:
        return sqlite3.connect(uri, uri=True, timeout=TIMEOUT)
    except sqlite3.Error as e:
        raise StoreError(str(path), f"cannot open the database: {e}") from None


def table_problem(db: sqlite3.Connection) -> Optional[str]:
    """Why ``db`` is not a store of records, or ``None``.

    A store has a table :data:`TABLE` whose values are stored. A virtual table or a generated
    column is refused: SQLite computes its values when they are read, so a database of a few
    kilobytes could hand out gigabytes (``value BLOB GENERATED ALWAYS AS (zeroblob(1e9))``).
    """
    tables = dict(db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
    if TABLE not in tables:
        shown = ", ".join(sorted(tables)) or "none"
        return f"not a Tango workspace database: no table {TABLE!r} (tables: {shown})"
    if str(tables[TABLE] or "").upper().split()[1:2] == ["VIRTUAL"]:
        return f"not a Tango workspace database: {TABLE!r} is a virtual table"
    computed = [
        row[1] for row in db.execute(f'PRAGMA table_xinfo("{TABLE}")') if row[6] not in (0, 1)
    ]  # hidden: 0 a column, 1 a virtual table's hidden one, 2 and 3 generated ones
    if computed:
        shown = ", ".join(map(repr, computed))
        return f"not a Tango workspace database: {TABLE!r} has generated columns ({shown})"
    return None


def read_problem(path: Path, error: sqlite3.Error) -> str:
    """Why reading the database ``path`` failed with ``error``, for a message.

    A writer killed in the middle of a commit leaves its journal "hot": SQLite rolls it back
    when the database is next opened, which a read-only connection may not do
    (``SQLITE_READONLY_ROLLBACK``: sqlite3 says only "attempt to write a readonly database").
    """
    journal = path.with_name(path.name + "-journal")
    code = getattr(error, "sqlite_errorcode", None)  # Python 3.11 and later
    if (code == 776 or (code is None and "readonly" in str(error))) and journal.exists():
        return (
            f"a writer stopped in the middle of a commit and left its journal ({journal.name}),"
            " which only a writer can roll back: open the workspace with Tango (or the"
            " database with the sqlite3 shell) first"
        )
    return str(error)


def _rows(path: Path) -> List[Entry]:
    name = str(path)
    db = read_only(path)
    try:
        problem = table_problem(db)
        if problem:
            raise StoreError(name, problem, unreadable=False)
        # Text as the bytes stored: SQLite keeps whatever TEXT it is given, and a key or value
        # that is not UTF-8 made sqlite3 refuse the whole query (every good row with it).
        db.text_factory = bytes
        rows = db.execute(f'SELECT key, value FROM "{TABLE}" ORDER BY key').fetchall()
    except sqlite3.Error as e:
        raise StoreError(name, f"cannot read the database: {read_problem(path, e)}") from None
    finally:
        db.close()
    out = []
    for raw, value in rows:
        data = value if isinstance(value, bytes) else str(value).encode("utf-8")
        # A key that is not UTF-8 is named with its bad bytes as Python shows them (\xff).
        key = raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else str(raw)
        out.append(Entry(f"{name}[{key}]", key, data))
    return out


def _json_files(folder: str) -> List[Entry]:
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".json"))
    except OSError as e:
        raise StoreError(folder, f"cannot list the folder: {e.strerror or e}") from None
    out = []
    for n in names:
        path = os.path.join(folder, n)
        if os.path.isfile(path):
            out.append(Entry(path, n, None))
    if not out:
        problem = f"not a store: no {DATABASE} and no .json files in the folder"
        raise StoreError(folder, problem, unreadable=False)
    return out


def entries(name: str) -> Optional[List[Entry]]:
    """The entries of the store ``name``, or ``None`` when ``name`` is not a store.

    A store is a SQLite database file, a folder holding ``stepinfo.sqlite`` (a Tango local
    workspace), or any other folder holding ``*.json`` files (those, sorted by name, regular
    files only, not recursing).
    Database rows come sorted by key, all from one read transaction.

    :raises StoreError: when the store cannot be read or is a database without records.
    """
    if name == "-":
        return None
    database = database_of(name)
    if database is not None:
        return _rows(database)
    if os.path.isdir(name):
        return _json_files(name)
    return None
