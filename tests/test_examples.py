"""The examples in ``examples/`` run, and the SQLite backends they show keep every record.

Each backend example is run as the docs show it: 4 worker processes (spawn) x 250 steps writing
to one SQLite file, then read back. Run in-process through its ``run_workers`` function (to
compare the records themselves) and once as a script (to check what a reader sees).
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import platform
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import List

import pytest

import tango_stepinfo
from tango_stepinfo import StepInfo, StepState

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
BACKENDS = ["sqlite_json_backend", "sqlite_pickle_backend"]
WORKERS, STEPS = 4, 250


def example(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import ``examples/<name>.py``; spawned workers find it too (they inherit ``sys.path``)."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    return importlib.import_module(name)


def expected_ids(workers: int, steps: int) -> List[str]:
    return sorted(f"Worker{w}Step-{i:04d}" for w in range(workers) for i in range(steps))


@pytest.mark.parametrize("name", BACKENDS)
def test_backend_keeps_every_record_written_by_4_processes(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = example(name, monkeypatch)
    db = str(tmp_path / "workspace.sqlite")

    made, stored = module.run_workers(db, WORKERS, STEPS)

    assert [info.unique_id for info in made] == expected_ids(WORKERS, STEPS)
    assert [info.unique_id for info in stored] == expected_ids(WORKERS, STEPS)
    assert stored == made
    failed = [info for info in stored if info.state == StepState.FAILED]
    completed = [info for info in stored if info.state == StepState.COMPLETED]
    # Every 7th step fails: indices 6, 13, ..., 244 -> 35 per worker.
    assert len(failed) == 35 * WORKERS
    assert len(completed) == (STEPS - 35) * WORKERS
    for info in failed:
        index = int(info.unique_id.rsplit("-", 1)[1])
        assert index % 7 == 6
        assert info.error is not None
        assert "RuntimeError: step" in info.error
        assert info.result_location is None
    for info in completed:
        assert int(info.unique_id.rsplit("-", 1)[1]) % 7 != 6
        assert info.result_location == f"results/{info.unique_id}"
    for info in stored:
        assert info.duration is not None
        assert info.duration.total_seconds() >= 0
    # The workers' records were probed in the workers, on this machine.
    assert {info.environment.python for info in stored} == {platform.python_version()}
    assert {info.platform.cpu_count for info in stored} == {os.cpu_count()}

    # The file is sound, in WAL mode, and its state column agrees with the records.
    connection = sqlite3.connect(db)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        counts = dict(connection.execute("SELECT state, COUNT(*) FROM step_info GROUP BY state"))
    finally:
        connection.close()
    assert counts == {"completed": len(completed), "failed": len(failed)}


def test_json_backend_stores_to_json_dict_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = example("sqlite_json_backend", monkeypatch)
    db = str(tmp_path / "workspace.sqlite")
    made, _ = module.run_workers(db, 1, 8)
    connection = sqlite3.connect(db)
    try:
        rows = connection.execute("SELECT record FROM step_info ORDER BY unique_id").fetchall()
    finally:
        connection.close()
    assert [json.loads(row[0]) for row in rows] == [info.to_json_dict() for info in made]


def test_pickle_backend_refuses_a_crafted_pickle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = example("sqlite_pickle_backend", monkeypatch)
    db = str(tmp_path / "workspace.sqlite")
    module.create_store(db)

    class Exploit:
        def __reduce__(self) -> object:
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    store = module.SqlitePickleStore(db)
    try:
        store.connection.execute(
            "INSERT INTO step_info VALUES (?, ?, ?)",
            ("Evil-1", "completed", pickle.dumps(Exploit())),
        )
        with pytest.raises(tango_stepinfo.UnsafePickleError, match="system"):
            store.get("Evil-1")
    finally:
        store.close()
    assert not (tmp_path / "pwned").exists()


def test_pickle_backend_rejects_a_pickle_of_another_record_type(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = example("sqlite_pickle_backend", monkeypatch)
    blob = pickle.dumps(tango_stepinfo.GitMetadata(commit="0" * 40))
    with pytest.raises(TypeError, match="expected a pickled StepInfo, got a GitMetadata"):
        module.load_record(blob)


@pytest.mark.parametrize("name", BACKENDS)
def test_backend_example_runs_as_a_script(name: str, tmp_path: Path) -> None:
    db = tmp_path / "workspace.sqlite"
    done = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / f"{name}.py"),
            "--db",
            str(db),
            "--workers",
            "2",
            "--steps",
            "14",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "28 records read back from 28 made",
        "completed: 24, failed: 4",
        "every record read back equals the one its worker made",
    ]
    assert db.exists()


def test_stored_records_are_step_infos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = example("sqlite_pickle_backend", monkeypatch)
    db = str(tmp_path / "workspace.sqlite")
    made, _ = module.run_workers(db, 1, 3)
    store = module.SqlitePickleStore(db)
    try:
        got = store.get(made[0].unique_id)
        assert store.get("no-such-step") is None
    finally:
        store.close()
    assert isinstance(got, StepInfo)
    assert got == made[0]


def test_example_records_are_what_their_script_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = EXAMPLES / "records"
    monkeypatch.syspath_prepend(str(records))
    make_records = importlib.import_module("make_records")
    monkeypatch.setattr(make_records, "HERE", tmp_path)

    make_records.main()

    for name in ("good.json", "bad.json"):
        written = (tmp_path / name).read_text(encoding="utf-8")
        assert written == (records / name).read_text(encoding="utf-8"), name
    good = StepInfo.from_json_dict(json.loads((records / "good.json").read_text("utf-8")))
    bad = StepInfo.from_json_dict(json.loads((records / "bad.json").read_text("utf-8")))
    assert good.state == StepState.COMPLETED
    assert bad.state == StepState.FAILED
    assert good.unique_id == bad.unique_id
