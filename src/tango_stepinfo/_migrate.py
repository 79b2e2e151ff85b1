"""Rewrite the records of a Tango local workspace for unmodified Tango or for this library.

A Tango ``LocalWorkspace`` keeps one pickled ``StepInfo`` per step in ``stepinfo.sqlite``
(sqlitedict: table ``unnamed``, ``key`` = unique id, ``value`` = a pickle). A pickle names the
classes it was made from, so records written by a Tango that used this library name
``tango_stepinfo.*`` and unmodified Tango cannot load them, and the other way round. :func:`migrate`
rewrites every record into the form asked for:

- ``ours``: each record read through the safe loader (:func:`tango_stepinfo.loads`) and pickled
  as this library pickles it (protocol 5).
- ``tango``: pickled as ai2-tango 1.3.2 pickles its own classes (protocol 5): the classes named
  ``tango.step_info.*``, the state every field of Tango's class in its order (``None`` ones
  too), times with ``pytz.utc``, ``dependencies`` a ``set``, ``packages`` a list of tuples,
  paths ``pathlib.PosixPath`` (named ``pathlib``, never ``pathlib._local``). Fields Tango does
  not have (``git.branch``, ``git.dirty``, ...) are left out: Tango cannot keep them.

Records already in the asked form are left byte for byte as they are.

**Safety.** Everything happens in one SQLite transaction on the database itself (never a copy
renamed over it: a ``tango`` process with the file open would go on writing to the old file, and
SQLite documents renaming a database under an open connection as a way to corrupt it):

1. ``BEGIN IMMEDIATE`` takes the write lock: other writers wait (SQLite's busy timeout), readers
   go on reading the old records.
2. A backup of the whole database is made through a second, read-only connection with SQLite's
   backup API, into a temporary file renamed to ``stepinfo.sqlite.<UTC time>.bak`` beside it.
3. Every record is decoded; one that does not decode stops everything before anything is
   written.
4. The rows are updated, then read back in the same transaction and each one compared with what
   was meant (decoded again and compared field by field, the bytes compared too).
5. ``COMMIT``; on any failure ``ROLLBACK``. A crash or kill at any point leaves SQLite's journal,
   which the next connection rolls back: the database holds either all old or all new records.
"""

from __future__ import annotations

import copyreg
import dataclasses
import datetime as _dt
import io
import os
import pickle
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Set, Tuple

from . import _stores
from ._record import Record
from .metadata import EnvironmentMetadata, GitMetadata, PlatformMetadata, TangoMetadata
from .step_info import StepInfo

__all__ = [
    "FORMS",
    "PROTOCOL",
    "TANGO_FIELDS",
    "MigrateError",
    "Result",
    "dumps_for_tango",
    "for_tango",
    "form_of",
    "migrate",
]

FORMS = ("tango", "ours")

PROTOCOL = 5
"""The pickle protocol written in both directions: Tango 1.3.2's (``HIGHEST_PROTOCOL`` on 3.8+)."""

TANGO_MODULE = "tango.step_info"

# The fields of ai2-tango 1.3.2's classes, in their order: the state its pickles carry. They are
# ours less the ones this library added, which are declared ``since`` a version (the one rule
# for a field's history; tests/test_step_info.py pins Tango's field lists).
TANGO_FIELDS: Dict[type, Tuple[str, ...]] = {
    cls: tuple(f.name for f in dataclasses.fields(cls) if "since" not in f.metadata)
    for cls in (StepInfo, PlatformMetadata, EnvironmentMetadata, GitMetadata, TangoMetadata)
}

_OUR_MODULES = {cls.__module__ for cls in TANGO_FIELDS}


class MigrateError(Exception):
    """The migration did not happen; the database is as it was. ``status`` is the exit status."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Result:
    """What :func:`migrate` did (or, in a dry run, would do)."""

    database: Path
    to: str
    dry_run: bool
    total: int = 0
    rewritten: List[str] = field(default_factory=list)
    """Keys of the records rewritten."""
    lost: Dict[str, List[str]] = field(default_factory=dict)
    """Key -> the fields whose values Tango cannot keep (``--to tango`` only)."""
    backup: Optional[Path] = None


# --- pickles Tango reads -------------------------------------------------------------------------


def _tango_time(value: Any) -> Any:
    if not isinstance(value, _dt.datetime):
        return value
    import pytz

    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=pytz.utc)
    if value.tzinfo is pytz.utc:
        return value
    return value.astimezone(pytz.utc)


def _tango_path(value: Any) -> Any:
    if isinstance(value, str):
        return Path(value)
    return value


def _tango_state(record: Record) -> Dict[str, Any]:
    """The state Tango's class of ``record`` has: its fields in order, as Tango types them."""
    state = {}
    for name in _fields(record):
        value = getattr(record, name, None)
        if name in ("start_time", "end_time"):
            value = _tango_time(value)
        elif name == "dependencies" and value is not None:
            value = set(value)
        elif name == "packages" and value is not None:
            value = [tuple(pair) for pair in value]
        elif name in ("executable", "root"):
            value = _tango_path(value)
        state[name] = value
    return state


# The pure-Python pickler: typeshed does not describe its save_* methods.
_PythonPickler: Any = pickle._Pickler


def _is_record_class(cls: Any) -> bool:
    # By name as well as identity: a class object may be a second copy of ours (a test run that
    # imported the package twice), and the pickle names the class anyway.
    return cls in TANGO_FIELDS or (
        isinstance(cls, type)
        and cls.__module__ in _OUR_MODULES
        and any(c.__name__ == cls.__name__ for c in TANGO_FIELDS)
    )


def _fields(record: Any) -> Tuple[str, ...]:
    for cls, names in TANGO_FIELDS.items():
        if cls.__name__ == type(record).__name__:
            return names
    raise TypeError(f"not a record: {type(record).__name__}")  # pragma: no cover


class _TangoPickler(_PythonPickler):  # type: ignore[misc]
    """The pure-Python pickler, naming our record classes as Tango's.

    The C pickler checks that a class it names can be imported under that name, which Tango's
    cannot here; the Python one lets :meth:`save_global` write any name. Classes and records are
    caught in :meth:`reducer_override`, which runs before any dispatch table (other libraries,
    such as dill, change the pure-Python pickler's tables when imported). Slower than the C
    pickler, which does not matter for a one-off rewrite.
    """

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=PROTOCOL)

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, type):
            if _is_record_class(obj) or obj.__module__ == "pathlib._local":
                return obj.__qualname__  # a string: save_global(obj, name) below
            return NotImplemented
        if _is_record_class(type(obj)):
            return (copyreg.__newobj__, (type(obj),), _tango_state(obj))  # type: ignore[attr-defined]
        return NotImplemented

    def save_global(self, obj: Any, name: Optional[str] = None) -> None:
        if _is_record_class(obj):
            module, qualname = TANGO_MODULE, obj.__name__
        elif getattr(obj, "__module__", None) == "pathlib._local":  # Python 3.13+
            module, qualname = "pathlib", obj.__qualname__
        else:
            super().save_global(obj, name)
            return
        self.save(module)
        self.save(qualname)
        self.write(pickle.STACK_GLOBAL)
        self.memoize(obj)


def dumps_for_tango(record: StepInfo) -> bytes:
    """``record`` pickled as ai2-tango 1.3.2 pickles its own ``StepInfo`` (see the module)."""
    buffer = io.BytesIO()
    _TangoPickler(buffer).dump(record)
    return buffer.getvalue()


def for_tango(record: Any) -> Any:
    """A copy of ``record`` with only what Tango keeps: what loading its Tango pickle gives."""
    if not _is_record_class(type(record)):
        return record
    state = {name: for_tango(value) for name, value in _tango_state(record).items()}
    copy = object.__new__(type(record))
    copy.__setstate__(state)
    return copy


def _lost(before: Any, after: Any, path: str = "") -> List[str]:
    """The dotted paths of the fields that differ between ``before`` and ``after``."""
    if _is_record_class(type(before)) and type(after) is type(before):
        out = []
        for f in before.__dataclass_fields__:
            out += _lost(getattr(before, f), getattr(after, f), f"{path}{f}.")
        return out
    return [] if before == after else [path.rstrip(".")]


# --- which classes a pickle names ----------------------------------------------------------------

_STRINGS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING"}


def _modules(data: bytes) -> Set[str]:
    """The modules of every global a (well-formed) pickle names."""
    import pickletools

    memo: Dict[Any, Any] = {}
    pushed: List[Any] = []  # what each opcode pushed: a string, else None
    out = set()
    for op, arg, _ in pickletools.genops(data):
        name = op.name
        if name in ("GLOBAL", "INST"):
            out.add(str(arg).split(" ", 1)[0])
        elif name == "STACK_GLOBAL":
            out.add(str(pushed[-2]) if len(pushed) > 1 else "")
        elif name in _STRINGS or name in ("SHORT_BINSTRING",):
            pushed.append(arg)
        elif name == "MEMOIZE":
            memo[len(memo)] = pushed[-1] if pushed else None
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = pushed[-1] if pushed else None
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            pushed.append(memo.get(arg))
        elif name not in ("FRAME", "PROTO"):
            pushed.append(None)
    return out


def form_of(data: bytes) -> Optional[str]:
    """``"tango"`` or ``"ours"``: whose record classes a pickle names; ``None`` for both or none."""
    modules = _modules(data)
    tango = TANGO_MODULE in modules
    ours = bool(modules & _OUR_MODULES)
    if tango == ours:
        return None
    return "tango" if tango else "ours"


# --- the migration -------------------------------------------------------------------------------


def _decode(key: str, data: Any) -> StepInfo:
    from .errors import StepInfoDecodeError
    from .pickling import loads

    if not isinstance(data, bytes):
        raise MigrateError(f"record {key!r}: not a pickle (a {type(data).__name__} value)")
    try:
        record = loads(data)
    except (pickle.UnpicklingError, StepInfoDecodeError) as e:
        raise MigrateError(f"record {key!r}: {e}") from None
    if not isinstance(record, StepInfo):
        raise MigrateError(f"record {key!r}: not a StepInfo but a {type(record).__name__}")
    return record


def _encode(record: StepInfo, to: str) -> Tuple[bytes, StepInfo]:
    """The new pickle of ``record`` and the record it must load back as."""
    if to == "tango":
        return dumps_for_tango(record), for_tango(record)
    return pickle.dumps(record, protocol=PROTOCOL), record


def _backup_path(database: Path) -> Path:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = database.with_name(f"{database.name}.{stamp}.bak")
    n = 1
    while path.exists():
        n += 1
        path = database.with_name(f"{database.name}.{stamp}-{n}.bak")
    return path


def _backup(database: Path) -> Path:
    """Copy the database with SQLite's backup API, through a read-only connection."""
    final = _backup_path(database)
    tmp = final.with_name(final.name + ".tmp")
    source = _stores.read_only(database)
    try:
        target = sqlite3.connect(str(tmp))
        try:
            source.backup(target)
        finally:
            target.close()
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        source.close()
    return final


def _connect(database: Path, dry_run: bool) -> sqlite3.Connection:
    if dry_run:
        db = _stores.read_only(database)
    else:
        uri = database.absolute().as_uri() + "?mode=rw"
        try:
            db = sqlite3.connect(uri, uri=True, timeout=_stores.TIMEOUT, isolation_level=None)
        except sqlite3.Error as e:
            raise MigrateError(f"{database}: cannot open the database for writing: {e}") from None
    return db


def migrate(name: str, to: str, *, dry_run: bool = False) -> Result:
    """Rewrite the records of the workspace database ``name`` in the form ``to`` (see the module).

    :param name: a Tango local workspace folder, or its ``stepinfo.sqlite``.
    :param to: ``"tango"`` or ``"ours"``.
    :param dry_run: decode and encode every record and check each new pickle, but write nothing.
    :raises MigrateError: when nothing was changed: the workspace cannot be read, locked or
        written (status 2), a record does not decode (2), or the check after writing failed and
        the transaction was rolled back (1).
    """
    if to not in FORMS:
        raise MigrateError(f"--to must be one of {', '.join(FORMS)}, not {to!r}")
    try:
        database = _stores.database_of(name)
    except _stores.StoreError as e:
        raise MigrateError(str(e)) from None
    if database is None:
        if os.path.isdir(name):
            raise MigrateError(f"{name}: not a Tango workspace: no {_stores.DATABASE} in it")
        if not os.path.exists(name):
            raise MigrateError(f"{name}: no such file or folder")
        raise MigrateError(f"{name}: not a SQLite database")
    result = Result(database, to, dry_run)
    try:
        db = _connect(database, dry_run)
    except _stores.StoreError as e:
        raise MigrateError(str(e)) from None
    try:
        _run(db, result)
    except sqlite3.Error as e:
        problem = _stores.read_problem(database, e)
        raise MigrateError(f"{database}: {problem}; nothing was changed") from None
    finally:
        db.close()
    return result


def _run(db: sqlite3.Connection, result: Result) -> None:
    database, to = result.database, result.to
    db.execute("BEGIN" if result.dry_run else "BEGIN IMMEDIATE")
    committed = False
    try:
        problem = _stores.table_problem(db)
        if problem:
            raise MigrateError(f"{database}: {problem}")
        table = _stores.TABLE
        rows = db.execute(f'SELECT key, value FROM "{table}" ORDER BY key').fetchall()
        result.total = len(rows)
        planned: Dict[str, Tuple[bytes, StepInfo]] = {}
        for key, data in rows:
            record = _decode(key, data)
            if form_of(data) == to:
                continue
            new, expected = _encode(record, to)
            if to == "tango":
                lost = _lost(record, expected)
                if lost:
                    result.lost[key] = lost
            planned[key] = (new, expected)
        result.rewritten = list(planned)
        if result.dry_run:
            for key, (new, expected) in planned.items():
                _verify(key, new, new, expected, to)
            return
        if not planned:
            return
        result.backup = _backup(database)
        db.executemany(
            f'UPDATE "{table}" SET value = ? WHERE key = ?',
            [(new, key) for key, (new, _) in planned.items()],
        )
        after = dict(db.execute(f'SELECT key, value FROM "{table}"').fetchall())
        if len(after) != len(rows):
            raise MigrateError(f"{database}: {len(after)} rows after rewriting, not {len(rows)}")
        for key, data in rows:
            if key in planned:
                new, expected = planned[key]
                _verify(key, after.get(key), new, expected, to)
            elif after.get(key) != data:
                raise MigrateError(f"record {key!r} changed though it was not rewritten", 1)
        db.execute("COMMIT")
        committed = True
    finally:
        if not committed and db.in_transaction:
            db.execute("ROLLBACK")


def _verify(key: str, stored: Any, new: bytes, expected: StepInfo, to: str) -> None:
    """Check one rewritten row: the bytes meant, decoding to the record meant, in form ``to``."""
    problem = None
    if stored != new:
        problem = "the stored bytes differ from those written"
    elif form_of(new) != to:
        problem = f"the new pickle does not name {to} classes only"
    else:
        try:
            again = _decode(key, new)
        except MigrateError as e:
            problem = str(e)
        else:
            if again != expected or _lost(expected, again):
                problem = f"it decodes differently: {', '.join(_lost(expected, again))}"
    if problem:
        raise MigrateError(f"record {key!r} failed the check after rewriting: {problem}", 1)
