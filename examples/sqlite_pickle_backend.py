"""A minimal SQLite workspace backend that stores run records as pickles, read back safely.

Four worker processes (``multiprocessing``, spawn start method) each run 250 steps through
start -> finish or fail, writing one ``StepInfo`` per step to a single SQLite file: the record
is created when the step starts and written again when it ends. The parent then reads every
record back and checks it against what the workers made.

Run it::

    python examples/sqlite_pickle_backend.py [--db PATH] [--workers 4] [--steps 250]

Records are written with :func:`pickle.dumps` and read with :func:`tango_stepinfo.loads`, never
with :func:`pickle.loads`: a workspace file may come from anyone, and a crafted pickle runs code
on whoever opens it with plain :mod:`pickle`. The safe loader only ever builds records (it also
reads pickles written by ai2-tango 1.3.2, e.g. from its ``stepinfo.sqlite``).

The store, its concurrency settings and the toy engine are those of ``sqlite_json_backend.py``
(read that one first); only the encoding of a record differs. Only the standard library and
``tango_stepinfo`` are used.
"""

from __future__ import annotations

import pickle
import sys
from typing import Any, List, Optional, Sequence, Tuple

import sqlite_json_backend

import tango_stepinfo
from tango_stepinfo import StepInfo


def load_record(data: bytes) -> StepInfo:
    """Unpickle one stored record with the safe loader, and check that it is a StepInfo.

    :raises pickle.UnpicklingError: a corrupt pickle, or one naming anything but record classes
        (:class:`tango_stepinfo.UnsafePickleError`).
    :raises tango_stepinfo.StepInfoDecodeError: a pickle of records with wrong field types.
    """
    info = tango_stepinfo.loads(data)
    if not isinstance(info, StepInfo):
        raise TypeError(f"expected a pickled StepInfo, got a {type(info).__name__}")
    return info


class SqlitePickleStore(sqlite_json_backend.SqliteJsonStore):
    """Run records in one SQLite table, keyed by ``unique_id``, stored as pickles."""

    RECORD_TYPE = "BLOB"

    @staticmethod
    def encode(info: StepInfo) -> Any:
        """The stored form of a record: its pickle at the highest protocol."""
        return pickle.dumps(info, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def decode(data: Any) -> StepInfo:
        """The record back from its pickle, through the safe loader."""
        return load_record(data)


def create_store(path: str) -> None:
    """Create the database file with its table, in WAL mode, before any worker starts."""
    sqlite_json_backend.create_store(path, SqlitePickleStore)


def run_workers(
    path: str, workers: int = 4, steps: int = 250
) -> Tuple[List[StepInfo], List[StepInfo]]:
    """Run the workers on the database at ``path``, then read it back (see the JSON example)."""
    return sqlite_json_backend.run_workers(path, workers, steps, SqlitePickleStore)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the example and print a summary; exit status 1 when a record is missing or wrong."""
    return sqlite_json_backend.main(argv, SqlitePickleStore)


if __name__ == "__main__":
    sys.exit(main())
