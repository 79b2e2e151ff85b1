"""A minimal SQLite workspace backend that stores run records as JSON.

Four worker processes (``multiprocessing``, spawn start method) each run 250 steps through
start -> finish or fail, writing one ``StepInfo`` per step to a single SQLite file: the record
is created when the step starts and written again when it ends. The parent then reads every
record back and checks it against what the workers made.

Run it::

    python examples/sqlite_json_backend.py [--db PATH] [--workers 4] [--steps 250]

What makes concurrent writers safe here:

- WAL journal mode (set once, when the database is created; it is stored in the file), so
  readers never block the writer and the writer never blocks readers;
- a busy timeout on every connection, so a writer waits for the lock instead of failing;
- one short transaction per write: a single ``INSERT OR REPLACE`` in autocommit mode;
- ``synchronous=NORMAL``: safe from corruption in WAL mode (see the comment where it is set).

Only the standard library and ``tango_stepinfo`` are used. ``sqlite_pickle_backend.py`` reuses
this store and engine, changing only how a record is encoded.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import sqlite3
import sys
import tempfile
import traceback
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Type

from tango_stepinfo import StepInfo, StepState

BUSY_TIMEOUT_S = 60.0
"""How long a connection waits for another process's write lock before giving up."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS step_info (
    unique_id TEXT PRIMARY KEY,
    state     TEXT NOT NULL,
    record    {record_type} NOT NULL
)
"""


class SqliteJsonStore:
    """Run records in one SQLite table, keyed by ``unique_id``, stored as JSON text.

    The ``state`` column is a copy of ``StepInfo.state`` so that queries such as "all failed
    steps" need not decode every record. Subclasses store another encoding by overriding
    :meth:`encode`, :meth:`decode` and :attr:`RECORD_TYPE`.
    """

    RECORD_TYPE = "TEXT"
    """The SQL type of the ``record`` column."""

    @staticmethod
    def encode(info: StepInfo) -> Any:
        """The stored form of a record: compact JSON text of :meth:`StepInfo.to_json_dict`."""
        return json.dumps(info.to_json_dict(), separators=(",", ":"))

    @staticmethod
    def decode(data: Any) -> StepInfo:
        """The record back from its stored form."""
        return StepInfo.from_json_dict(json.loads(data))

    def __init__(self, path: str, *, create: bool = False) -> None:
        # isolation_level=None: autocommit, each statement is its own (short) transaction.
        self.connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        # In WAL mode, NORMAL syncs at checkpoints rather than at every commit: a crash of a
        # process loses nothing, a power cut may lose the last commits but never corrupts the
        # file. Use FULL if every state change must survive a power cut (about 3x slower here).
        self.connection.execute("PRAGMA synchronous=NORMAL")
        if create:
            self.connection.execute("PRAGMA journal_mode=WAL")
            self.connection.execute(SCHEMA.format(record_type=self.RECORD_TYPE))

    def put(self, info: StepInfo) -> None:
        """Write ``info``, replacing the stored record of the same step."""
        record = self.encode(info)
        self.connection.execute(
            "INSERT OR REPLACE INTO step_info (unique_id, state, record) VALUES (?, ?, ?)",
            (info.unique_id, info.state.value, record),
        )

    def get(self, unique_id: str) -> Optional[StepInfo]:
        """The record of the step ``unique_id``, or ``None``."""
        row = self.connection.execute(
            "SELECT record FROM step_info WHERE unique_id = ?", (unique_id,)
        ).fetchone()
        return None if row is None else self.decode(row[0])

    def __iter__(self) -> Iterator[StepInfo]:
        """Every record, in ``unique_id`` order."""
        rows = self.connection.execute("SELECT record FROM step_info ORDER BY unique_id")
        for (record,) in rows:
            yield self.decode(record)

    def count_by_state(self) -> Dict[str, int]:
        """How many records are in each state, from the ``state`` column."""
        rows = self.connection.execute("SELECT state, COUNT(*) FROM step_info GROUP BY state")
        return dict(rows.fetchall())

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()


# --- a toy workflow engine ---------------------------------------------------------------------


def utc_now() -> dt.datetime:
    """The current time as an aware UTC datetime (what records should hold)."""
    return dt.datetime.now(dt.timezone.utc)


def run_step(worker: int, index: int) -> None:
    """The step's work: every 7th step fails."""
    if index % 7 == 6:
        raise RuntimeError(f"step {index} of worker {worker} failed on purpose")


def run_worker(
    path: str, worker: int, steps: int, store_class: Type[SqliteJsonStore] = SqliteJsonStore
) -> List[StepInfo]:
    """Run ``steps`` steps, recording each one in the store; return the final records."""
    store = store_class(path)
    made: List[StepInfo] = []
    previous: Optional[StepInfo] = None
    try:
        for index in range(steps):
            unique_id = f"Worker{worker}Step-{index:04d}"
            # The step starts: create its record. The first one in this process probes the
            # machine; later ones reuse the cached probes (a few microseconds each).
            info = StepInfo(
                unique_id=unique_id,
                step_class_name="ExampleStep",
                step_name=f"step-{index}",
                version="001",
                dependencies=set() if previous is None else {previous.unique_id},
                cacheable=True,
                start_time=utc_now(),
                config={"type": "example", "worker": worker, "index": index},
                metadata={"example": store_class.__name__},
            )
            store.put(info)  # RUNNING
            try:
                run_step(worker, index)
            except Exception:
                info.error = traceback.format_exc()
            info.end_time = utc_now()
            info.result_location = None if info.error else f"results/{unique_id}"
            store.put(info)  # COMPLETED or FAILED
            made.append(info)
            previous = info
    finally:
        store.close()
    return made


def create_store(path: str, store_class: Type[SqliteJsonStore] = SqliteJsonStore) -> None:
    """Create the database file with its table, in WAL mode, before any worker starts."""
    store_class(path, create=True).close()


def run_workers(
    path: str,
    workers: int = 4,
    steps: int = 250,
    store_class: Type[SqliteJsonStore] = SqliteJsonStore,
) -> Tuple[List[StepInfo], List[StepInfo]]:
    """Run the workers on the database at ``path``, then read it back.

    :returns: ``(made, stored)``: the records the workers reported, and the records read back
        from the database, both sorted by ``unique_id``.
    """
    create_store(path, store_class)
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers) as pool:
        jobs = [(path, w, steps, store_class) for w in range(workers)]
        results = pool.starmap(run_worker, jobs)
    # The pool sends the records back with plain pickle: a trusted channel, our own children.
    made = sorted((info for batch in results for info in batch), key=lambda info: info.unique_id)
    store = store_class(path)
    try:
        stored = list(store)
    finally:
        store.close()
    return made, stored


def main(
    argv: Optional[Sequence[str]] = None, store_class: Type[SqliteJsonStore] = SqliteJsonStore
) -> int:
    """Run the example and print a summary; exit status 1 when a record is missing or wrong."""
    parser = argparse.ArgumentParser(
        description=f"A minimal SQLite workspace backend ({store_class.__name__})."
    )
    parser.add_argument("--db", help="the SQLite file (default: a new temporary one)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=250, help="steps per worker")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or os.path.join(tmp, "workspace.sqlite")
        made, stored = run_workers(path, args.workers, args.steps, store_class)
    states = {state.value: sum(info.state == state for info in stored) for state in StepState}
    print(f"{len(stored)} records read back from {len(made)} made")
    print(", ".join(f"{state}: {count}" for state, count in states.items() if count))
    if stored != made:
        print("MISMATCH: the database does not hold what the workers made", file=sys.stderr)
        return 1
    print("every record read back equals the one its worker made")
    return 0


if __name__ == "__main__":
    sys.exit(main())
