"""Migrating a Tango workspace's stepinfo.sqlite between Tango's classes and ours.

Unit tests run on copies of the real Tango 1.3.2 databases in ``tests/data``. What unmodified
Tango gets from a pickle is simulated by an unpickler that maps ``tango.step_info.*`` onto plain
classes: Tango's classes are plain dataclasses without ``__setstate__``, so loading one is
``object.__new__`` and a ``__dict__`` update, exactly as for those. The end-to-end test at the
bottom runs a real ai2-tango 1.3.2.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path, PosixPath
from typing import Any, ClassVar, Dict, List

import pytest
import pytz
from hypothesis import given, settings

from tango_stepinfo import GitMetadata, StepInfo, __version__, _migrate, _stores, loads
from tango_stepinfo._migrate import (
    TANGO_FIELDS,
    MigrateError,
    dumps_for_tango,
    for_tango,
    form_of,
    migrate,
)

from .conftest import TANGO_DATA
from .strategies import full_record, step_infos
from .test_stores import HALF_COMMIT

SQLITE = TANGO_DATA / "sqlite"
SRC = Path(__file__).resolve().parent.parent / "src"


def rows(path: Path) -> Dict[str, bytes]:
    with closing(sqlite3.connect(path)) as db, db:
        return dict(db.execute("SELECT key, value FROM unnamed"))


@pytest.fixture(params=["stepinfo.sqlite", "stepinfo_rerun.sqlite"])
def workspace(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A workspace folder holding a copy of one of Tango's real databases."""
    folder = tmp_path / "ws"
    folder.mkdir()
    shutil.copyfile(SQLITE / request.param, folder / "stepinfo.sqlite")
    return folder


# --- what unmodified Tango gets --------------------------------------------------------------


class _TangoLike(pickle.Unpickler):
    """Loads as unmodified Tango would: Tango's classes are plain, nothing of ours importable."""

    classes: ClassVar[Dict[str, type]] = {
        name: type(name, (), {})
        for name in ("StepInfo", *[c.__name__ for c in TANGO_FIELDS if c is not StepInfo])
    }

    def find_class(self, module: str, name: str) -> Any:
        assert not module.startswith("tango_stepinfo"), f"{module}.{name}"
        assert module != "pathlib._local"  # Python 3.11 (Tango's venv) has no such module
        if module == "tango.step_info":
            return self.classes[name]
        return super().find_class(module, name)


def tango_loads(data: bytes) -> Any:
    import io

    return _TangoLike(io.BytesIO(data)).load()


def plain(value: Any) -> Any:
    """An exact, comparable picture of what a load gives: classes, key order, types, zones."""
    if type(value) in _TangoLike.classes.values():
        return (type(value).__name__, [(k, plain(v)) for k, v in vars(value).items()])
    if isinstance(value, dict):
        return ("dict", [(k, plain(v)) for k, v in value.items()])
    if isinstance(value, (set, frozenset)):
        return (type(value).__name__, sorted(value))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [plain(v) for v in value])
    if isinstance(value, dt.datetime):
        return (
            "datetime",
            value.isoformat(),
            type(value.tzinfo).__name__,
            value.tzinfo is pytz.utc,
        )
    return (type(value).__name__, value)


def beyond_tango(record: Any, path: str = "") -> List[str]:
    """The dotted paths of ``record``'s values in fields Tango's classes do not have (those that
    differ from what the safe loader fills in for a missing field)."""
    tango = {cls.__name__: names for cls, names in TANGO_FIELDS.items()}
    bare = object.__new__(type(record))
    bare.__setstate__({})
    out = []
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if f.name not in tango[type(record).__name__]:
            if value != getattr(bare, f.name):
                out.append(path + f.name)
        elif type(value).__name__ in tango:
            out += beyond_tango(value, f"{path}{f.name}.")
    return out


# --- unit tests ------------------------------------------------------------------------------


def test_to_ours_then_back_to_tango_gives_tango_s_own_bytes(workspace: Path) -> None:
    db = workspace / "stepinfo.sqlite"
    original = rows(db)
    assert {form_of(v) for v in original.values()} == {"tango"}

    result = migrate(str(workspace), "ours")
    ours = rows(db)
    assert sorted(result.rewritten) == sorted(original) and result.total == len(original)
    assert {form_of(v) for v in ours.values()} == {"ours"}
    for key, value in ours.items():
        assert loads(value) == loads(original[key])
    assert result.backup is not None and result.backup.parent == workspace
    assert rows(result.backup) == original

    result = migrate(str(db), "tango")
    back = rows(db)
    assert result.lost == {}
    assert {form_of(v) for v in back.values()} == {"tango"}
    for key, value in back.items():
        # Tango's rerun records carry an extra attribute `name` (not a field): it is dropped.
        name, state = plain(tango_loads(original[key]))
        assert plain(tango_loads(value)) == (name, [(k, v) for k, v in state if k != "name"])
        assert loads(value) == loads(original[key])


def test_back_to_tango_is_byte_identical_for_the_first_run() -> None:
    # Records without extra attributes and with at most one dependency (no set order to differ).
    for key, value in rows(SQLITE / "stepinfo.sqlite").items():
        assert dumps_for_tango(loads(value)) == value, key


def test_tango_pickles_name_what_tango_s_own_name() -> None:
    expected = json.loads((TANGO_DATA / "expected" / "pickle_globals.json").read_text())
    names = expected["sqlite/ values (sqlitedict, protocol 5)"]
    record = loads(
        rows(SQLITE / "stepinfo.sqlite")["NumbersStep-001-4C6a8DarRvPRkQT7YoFByX7YAccjsByL"]
    )
    found = set()

    class Recording(_TangoLike):
        def find_class(self, module: str, name: str) -> Any:
            found.add(f"{module}.{name}")
            return super().find_class(module, name)

    import io

    Recording(io.BytesIO(dumps_for_tango(record))).load()
    assert found == set(names)


def test_records_of_ours_become_tango_s_types_and_lose_only_what_tango_lacks() -> None:
    record = full_record(3)
    record.start_time = record.start_time.astimezone(dt.timezone(dt.timedelta(hours=2)))
    data = dumps_for_tango(record)
    loaded = tango_loads(data)
    assert [k for k in vars(loaded)] == list(TANGO_FIELDS[StepInfo])
    env = loaded.environment
    assert list(vars(env)) == list(TANGO_FIELDS[type(record.environment)])
    assert list(vars(env.git)) == ["commit", "remote"]
    assert loaded.start_time.tzinfo is pytz.utc and loaded.start_time == record.start_time
    assert type(loaded.dependencies) is set and loaded.dependencies == record.dependencies
    assert (
        all(type(p) is tuple for p in env.packages) and env.packages == record.environment.packages
    )
    assert type(env.executable) is PosixPath and type(env.root) is PosixPath
    kept = for_tango(record)
    assert kept.environment.git == GitMetadata(
        record.environment.git.commit, record.environment.git.remote
    )
    assert loads(data) == kept
    lost = _migrate._lost(record, kept)
    assert lost == beyond_tango(record)
    assert {"environment.git.branch", "environment.git.dirty"} <= set(lost)


@settings(max_examples=60, deadline=None)
@given(step_infos())
def test_any_record_reaches_tango_as_loaded_by_the_safe_loader(record: StepInfo) -> None:
    data = dumps_for_tango(record)
    assert form_of(data) == "tango"
    assert loads(data) == for_tango(record)
    tango_loads(data)  # loads without anything of ours


def test_lost_fields_are_reported(tmp_path: Path) -> None:
    db = tmp_path / "stepinfo.sqlite"
    shutil.copyfile(SQLITE / "stepinfo.sqlite", db)
    record = full_record(2)
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("INSERT INTO unnamed VALUES (?, ?)", (record.unique_id, pickle.dumps(record)))
    result = migrate(str(db), "tango")
    assert result.rewritten == [record.unique_id]  # the others already were Tango's
    assert result.lost == {record.unique_id: beyond_tango(record)}
    assert "environment.git.branch" in result.lost[record.unique_id]
    assert loads(rows(db)[record.unique_id]) == for_tango(record)


def test_already_in_form_rewrites_nothing_and_makes_no_backup(workspace: Path) -> None:
    before = rows(workspace / "stepinfo.sqlite")
    result = migrate(str(workspace), "tango")
    assert result.rewritten == [] and result.backup is None and result.total == len(before)
    assert rows(workspace / "stepinfo.sqlite") == before
    assert sorted(p.name for p in workspace.iterdir()) == ["stepinfo.sqlite"]


def test_dry_run_writes_nothing(workspace: Path) -> None:
    db = workspace / "stepinfo.sqlite"
    before = db.read_bytes()
    result = migrate(str(workspace), "ours", dry_run=True)
    assert len(result.rewritten) == 4 and result.backup is None and result.dry_run
    assert db.read_bytes() == before
    assert sorted(p.name for p in workspace.iterdir()) == ["stepinfo.sqlite"]


@pytest.mark.parametrize("workspace", ["stepinfo.sqlite"], indirect=True)
def test_after_a_killed_writer_a_dry_run_names_the_journal_and_a_real_run_rolls_it_back(
    workspace: Path,
) -> None:
    db = workspace / "stepinfo.sqlite"
    before = rows(db)
    killed = subprocess.run([sys.executable, "-c", HALF_COMMIT, str(db)], check=False)
    assert killed.returncode < 0 and (workspace / "stepinfo.sqlite-journal").exists()
    with pytest.raises(MigrateError, match=r"left its journal \(stepinfo\.sqlite-journal\)"):
        migrate(str(workspace), "ours", dry_run=True)  # read-only: was "readonly database"
    result = migrate(str(workspace), "ours")  # a writer: SQLite rolls the half commit back
    assert sorted(result.rewritten) == sorted(before)
    assert {k: loads(v) for k, v in rows(db).items()} == {k: loads(v) for k, v in before.items()}


def test_a_workspace_whose_database_is_not_one_is_named_as_such(tmp_path: Path) -> None:
    (tmp_path / "stepinfo.sqlite").write_bytes(b"")
    with pytest.raises(MigrateError) as e:
        migrate(str(tmp_path), "ours")
    assert str(e.value) == f"{tmp_path / 'stepinfo.sqlite'}: not a SQLite database (it is empty)"
    assert e.value.status == 2 and (tmp_path / "stepinfo.sqlite").read_bytes() == b""


def test_a_bad_record_stops_everything_before_writing(workspace: Path) -> None:
    db = workspace / "stepinfo.sqlite"
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("INSERT INTO unnamed VALUES ('Evil-1', ?)", (pickle.dumps(os.system),))
    before = db.read_bytes()
    with pytest.raises(MigrateError, match=r"record 'Evil-1': refused to load global") as e:
        migrate(str(workspace), "ours")
    assert e.value.status == 2
    assert db.read_bytes() == before
    assert sorted(p.name for p in workspace.iterdir()) == ["stepinfo.sqlite"]


def test_a_failed_check_rolls_everything_back(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = workspace / "stepinfo.sqlite"
    before = rows(db)

    def wrong(record: StepInfo) -> StepInfo:
        copy = loads(pickle.dumps(record))
        copy.error = "not what was written"
        return copy

    monkeypatch.setattr(_migrate, "for_tango", wrong)
    migrate(str(workspace), "ours")
    with pytest.raises(MigrateError, match="failed the check after rewriting: it decodes") as e:
        migrate(str(workspace), "tango")
    assert e.value.status == 1
    assert {form_of(v) for v in rows(db).values()} == {"ours"}  # as before the failed attempt
    assert rows(db) != before


def test_a_locked_database_is_left_alone(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_stores, "TIMEOUT", 0.05)
    db = workspace / "stepinfo.sqlite"
    before = db.read_bytes()
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(MigrateError, match="database is locked; nothing was changed"):
            migrate(str(workspace), "ours")
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert db.read_bytes() == before


def test_a_reader_mid_read_delays_the_commit_and_sees_old_records(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Rollback journal (Tango's): a commit waits for readers to finish, up to the timeout, and
    # gives up with everything rolled back; the reader's view never mixes old and new.
    monkeypatch.setattr(_stores, "TIMEOUT", 0.05)
    db = workspace / "stepinfo.sqlite"
    before = rows(db)
    reader = _stores.read_only(db)
    try:
        reader.execute("BEGIN")
        assert dict(reader.execute("SELECT key, value FROM unnamed")) == before
        with pytest.raises(MigrateError, match="database is locked; nothing was changed"):
            migrate(str(workspace), "ours")
        assert dict(reader.execute("SELECT key, value FROM unnamed")) == before
    finally:
        reader.close()
    assert rows(db) == before
    migrate(str(workspace), "ours")  # the reader gone, it goes through
    assert {form_of(v) for v in rows(db).values()} == {"ours"}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p, "not a Tango workspace: no stepinfo.sqlite in it"),
        (lambda p: p / "missing", "no such file or folder"),
        (
            lambda p: (p / "f.sqlite").write_text("hello") and p / "f.sqlite",
            "not a SQLite database",
        ),
    ],
)
def test_not_a_workspace(tmp_path: Path, make: Any, message: str) -> None:
    with pytest.raises(MigrateError, match=message):
        migrate(str(make(tmp_path)), "tango")


def test_a_database_without_records_table(tmp_path: Path) -> None:
    db = tmp_path / "stepinfo.sqlite"
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("CREATE TABLE other (x)")
    with pytest.raises(MigrateError, match="no table 'unnamed' \\(tables: other\\)"):
        migrate(str(db), "ours")


# --- end to end, with a real ai2-tango 1.3.2 ---------------------------------------------------

TANGO_PYTHON = os.environ.get("TANGO_STEPINFO_TEST_TANGO_PYTHON")

STEPS = """\
from tango import Step


@Step.register("e2e_numbers")
class NumbersStep(Step):
    DETERMINISTIC = True
    CACHEABLE = True
    VERSION = "001"

    def run(self, n: int) -> list:
        return list(range(n))


@Step.register("e2e_total")
class TotalStep(Step):
    DETERMINISTIC = True
    CACHEABLE = True

    def run(self, data: list, plus: int = 0) -> int:
        return sum(data) + plus
"""


def experiment(*names: str) -> str:
    steps: Dict[str, Any] = {"numbers": {"type": "e2e_numbers", "n": 4}}
    for plus, name in enumerate(names):  # a step of its own, run in a `tango` child (-j 2)
        steps[name] = {"type": "e2e_total", "data": {"type": "ref", "ref": "numbers"}, "plus": plus}
    return json.dumps({"steps": steps})


def purelib(python: str) -> str:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return subprocess.run(
        [python, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.mark.skipif(
    not TANGO_PYTHON and not os.environ.get("CI"),
    reason="set TANGO_STEPINFO_TEST_TANGO_PYTHON to an interpreter with ai2-tango 1.3.2",
)
def test_tango_over_and_back_with_real_tango(tmp_path: Path) -> None:
    assert TANGO_PYTHON, "CI must set TANGO_STEPINFO_TEST_TANGO_PYTHON"
    tango_bin = Path(TANGO_PYTHON).parent
    missing = subprocess.run(
        [TANGO_PYTHON, "-c", "import importlib.util as u; print(u.find_spec('tango_stepinfo'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert missing == "None", (
        "the Tango venv must not have tango_stepinfo: it is the unmodified one"
    )

    # An overlay venv: Tango's packages plus this library (as an editable install would add it),
    # and the alias turned on there by the real command.
    overlay = tmp_path / "overlay"
    subprocess.run([TANGO_PYTHON, "-m", "venv", "--without-pip", str(overlay)], check=True)
    python = str(overlay / "bin" / "python")
    Path(purelib(python), "tango_base.pth").write_text(f"{purelib(TANGO_PYTHON)}\n{SRC}\n")
    (overlay / "bin" / "tango").write_text(
        f"#!{python}\nimport sys\nfrom tango.__main__ import main\nsys.exit(main())\n"
    )
    (overlay / "bin" / "tango").chmod(0o755)
    on = subprocess.run(
        [python, "-m", "tango_stepinfo", "tango-alias", "on"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert on.returncode == 0, on.stderr

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "steps.py").write_text(STEPS)

    def tango(bin_dir: Path, name: str, *steps: str) -> str:
        (run_dir / "experiment.json").write_text(experiment(*steps))
        env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
        proc = subprocess.run(
            ["tango", "run", "experiment.json", "-w", "ws", "-i", "steps", "-n", name, "-j", "2"],
            cwd=run_dir,
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout + proc.stderr

    def records() -> Dict[str, bytes]:
        return rows(run_dir / "ws" / "stepinfo.sqlite")

    def cli(*args: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "tango_stepinfo", *args],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr

    # 1. unmodified Tango makes the workspace
    tango(tango_bin, "first", "total")
    first = {k: loads(v) for k, v in records().items()}
    assert {form_of(v) for v in records().values()} == {"tango"} and len(first) == 2

    # 2. over: migrate, then Tango with this library: cache hits, one new step run in a child
    cli("migrate", str(run_dir / "ws"), "--to", "ours")
    out = tango(overlay / "bin", "second", "total", "again")
    assert (
        'Found output for step "numbers" in cache' in out
        and 'Found output for step "total" in cache' in out
    )
    second = {k: loads(v) for k, v in records().items()}
    assert {form_of(v) for v in records().values()} == {"ours"} and len(second) == 3
    for key, record in first.items():  # cache hits: nothing ran again
        assert (
            second[key].start_time == record.start_time and second[key].end_time == record.end_time
        )
    new = [r for k, r in second.items() if k not in first]
    assert [(r.step_name, str(r.state)) for r in new] == [("again", "completed")]
    # made inside Tango by this library: Tango's version, and this library named beside it
    tango_meta = new[0].environment.tango
    assert tango_meta is not None and tango_meta.version == "1.3.2"
    assert tango_meta.library == f"tango_stepinfo {__version__}"

    # 3. back: migrate, then unmodified Tango: every step a cache hit, no assertion error
    cli("migrate", str(run_dir / "ws"), "--to", "tango")
    assert {form_of(v) for v in records().values()} == {"tango"}
    out = tango(tango_bin, "third", "total", "again")
    assert "AssertionError" not in out
    for step in ("numbers", "total", "again"):
        assert f'Found output for step "{step}" in cache' in out, out
    third = {k: loads(v) for k, v in records().items()}
    for key, record in second.items():
        assert third[key].start_time == record.start_time
