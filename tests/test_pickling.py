"""Tests of tango_stepinfo.pickling: the safe loader reads real pickles and runs nothing else."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import pickle
import sqlite3
import struct
import subprocess
import sys
import zoneinfo
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Dict, List

import pytest
import pytz
from hypothesis import given, settings
from hypothesis import strategies as st

from tango_stepinfo import (
    EnvironmentMetadata,
    GitMetadata,
    PlatformMetadata,
    StepInfo,
    StepInfoDecodeError,
    StepState,
    TangoMetadata,
    UnsafePickleError,
)
from tango_stepinfo import pickling as pickling_module
from tango_stepinfo.pickling import CorruptPickleError, load, loads

from .conftest import TANGO_DATA, since_none, with_since_none
from .strategies import full_record, old_pickle, raw_pickle, step_infos

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)


def record(**changes: Any) -> StepInfo:
    base = full_record(n_packages=3)
    for name, value in changes.items():
        setattr(base, name, value)
    return base


# --- pickle bytes by hand ----------------------------------------------------------------------


def g(module: str, name: str) -> bytes:
    """GLOBAL opcode."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def u(text: str) -> bytes:
    """BINUNICODE opcode."""
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


P2 = b"\x80\x02"
STOP = b"."


# --- Tango 1.3.2 fixtures ----------------------------------------------------------------------


def native(values: Dict[str, Any]) -> Dict[str, Any]:
    """What our to_json_dict() gives for a record with the fixture's explicit values."""
    out = {k: v for k, v in values.items() if k not in ("state", "extra_attributes")}
    return with_since_none(StepInfo, out)


def expected_files() -> List[Path]:
    return sorted((TANGO_DATA / "expected").glob("*.json"))


def pickle_cases() -> List[Any]:
    cases = []
    for path in expected_files():
        expected = json.loads(path.read_text(encoding="utf-8"))
        for name in expected.get("pickles", []):
            cases.append(pytest.param(name, expected, id=name))
    return cases


def test_all_fixture_pickles_are_covered() -> None:
    names = {p.name for p in (TANGO_DATA / "pickle").glob("*.pickle")}
    assert len(names) >= 30
    assert names == {c.values[0] for c in pickle_cases()}
    protocols = {n.split(".")[-2] for n in names}
    assert protocols == {f"p{p}" for p in range(6)}


@pytest.mark.parametrize(("name", "expected"), pickle_cases())
def test_tango_pickles_load_to_the_expected_values(name: str, expected: Dict[str, Any]) -> None:
    value = loads((TANGO_DATA / "pickle" / name).read_bytes())
    if "type" in expected:  # a lone metadata object
        kind = expected["type"].rsplit(".", 1)[1]
        assert type(value).__name__ == kind
        assert value.to_json_dict() == with_since_none(type(value), expected["values"])
        return
    assert type(value) is StepInfo
    assert value.state.value == expected["values"]["state"]
    assert value.to_json_dict() == native(expected["values"])
    assert value.to_json_dict(tango_compat=True) == expected["to_json_dict"]
    assert isinstance(value.dependencies, set)
    assert isinstance(value.environment.executable, Path)
    if value.start_time is not None:
        assert value.start_time.utcoffset() == dt.timedelta(0)
    assert value.environment.git is None or value.environment.git.branch is None


@pytest.mark.parametrize("db", ["stepinfo", "stepinfo_rerun"])
def test_records_load_from_a_tango_sqlite_workspace(db: str) -> None:
    expected = json.loads(
        (TANGO_DATA / "sqlite" / f"{db.replace('stepinfo', 'expected')}.json").read_text()
    )
    con = sqlite3.connect(f"file:{TANGO_DATA / 'sqlite' / (db + '.sqlite')}?mode=ro", uri=True)
    try:
        rows = con.execute('SELECT key, value FROM "unnamed"').fetchall()
    finally:
        con.close()
    assert sorted(key for key, _ in rows) == sorted(expected)
    states = set()
    for key, blob in rows:
        value = loads(bytes(blob))
        assert type(value) is StepInfo
        assert value.unique_id == key
        assert value.to_json_dict() == native(expected[key])
        states.add(value.state)
    assert len(states) >= 2


# --- our own records ---------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_round_trip_of_every_shape(protocol: int) -> None:
    info = record()
    values: List[Any] = [
        info,
        info.platform,
        info.environment,
        info.environment.git,
        TangoMetadata(version="9"),
        StepState.FAILED,
        [info, StepState.RUNNING],
        (info, info.platform),
        {"a": info, "b": StepState.COMPLETED},
        [],
    ]
    for value in values:
        assert loads(pickle.dumps(value, protocol=protocol)) == value


@settings(max_examples=30, deadline=None)
@given(step_infos(), st.sampled_from(list(PROTOCOLS)))
def test_round_trip_of_any_record(info: StepInfo, protocol: int) -> None:
    assert loads(pickle.dumps(info, protocol=protocol)) == info


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_gpu_and_job_records_load_safely(protocol: int) -> None:
    info = full_record()
    assert info.platform.gpus and info.environment.job is not None
    back = loads(pickle.dumps(info, protocol=protocol))
    assert back == info
    assert type(back.platform.gpus[0]).__name__ == "GpuMetadata"
    assert loads(pickle.dumps(info.environment.job, protocol=protocol)) == info.environment.job


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_records_with_an_empty_state(protocol: int) -> None:
    # protocols 0 and 1 leave out a state that is empty (every field None): still a full record
    assert loads(pickle.dumps(GitMetadata(), protocol=protocol)) == GitMetadata()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_time_zones(protocol: int) -> None:
    berlin = pytz.timezone("Europe/Berlin")
    times = [
        berlin.localize(dt.datetime(2024, 7, 1, 12)),
        berlin.localize(dt.datetime(2024, 1, 1, 12)),
        pytz.timezone("Asia/Kolkata").localize(dt.datetime(2024, 1, 1)),
        dt.datetime(2024, 1, 1, tzinfo=pytz.FixedOffset(90)),
        dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=-5), "EST")),
        dt.datetime(2024, 1, 1, tzinfo=pytz.utc),
        dt.datetime(2024, 1, 1),
    ]
    for time in times:
        info = record(start_time=time, end_time=time)
        back = loads(pickle.dumps(info, protocol=protocol))
        # a naive time is UTC, as from_json_dict reads it
        want = time if time.tzinfo is not None else time.replace(tzinfo=pytz.utc)
        assert back.start_time == want
        assert back.start_time.utcoffset() == want.utcoffset()
        assert StepInfo.from_json_dict(back.to_json_dict()) == back


def test_pickles_from_python_3_13_name_pathlib_local() -> None:
    # Before 0.2.0 the state held path objects, which Python 3.13 names pathlib._local.
    data = raw_pickle(record(), protocol=2)
    for name in (b"PosixPath", b"WindowsPath"):
        if b"pathlib\n" + name in data:
            data = data.replace(b"cpathlib\n" + name, b"cpathlib._local\n" + name)
    assert b"pathlib._local" in data
    assert loads(data) == record()


def test_paths_of_the_other_operating_system_load_as_from_json_dict_reads_their_text() -> None:
    info = record()
    info.environment.executable = PureWindowsPath("C:/Python/python.exe")  # type: ignore[assignment]
    data = raw_pickle(info, protocol=2).replace(b"PureWindowsPath", b"WindowsPath")
    assert b"\nWindowsPath\n" in data  # pathlib or, on Python 3.13, pathlib._local
    back = loads(data)
    assert type(back.environment.executable) is type(Path())
    assert str(back.environment.executable) == str(PureWindowsPath("C:/Python/python.exe"))
    assert StepInfo.from_json_dict(back.to_json_dict()) == back
    info.environment.executable = PurePosixPath("/usr/bin/python")  # type: ignore[assignment]
    back = loads(raw_pickle(info, protocol=4))
    assert str(back.environment.executable) == "/usr/bin/python"
    assert loads(pickle.dumps(info, protocol=4)) == back


def test_load_reads_consecutive_pickles(tmp_path: Path) -> None:
    path = tmp_path / "two.pickle"
    first, second = record(), record(unique_id="second")
    path.write_bytes(pickle.dumps(first) + pickle.dumps(second, protocol=0))
    with path.open("rb") as f:
        assert load(f) == first
        assert load(f) == second
        assert f.read() == b""


def test_wrong_input_types() -> None:
    with pytest.raises(TypeError, match="expected bytes, got str"):
        loads("not bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="binary mode"):
        load(io.StringIO("text"))  # type: ignore[arg-type]
    assert loads(bytearray(pickle.dumps(StepState.RUNNING))) is StepState.RUNNING
    assert loads(memoryview(pickle.dumps(StepState.RUNNING))) is StepState.RUNNING


# --- refused globals ---------------------------------------------------------------------------


class Reduces:
    """Pickles as a call of ``function(*args)``: what an attacker writes."""

    def __init__(self, function: Any, *args: Any) -> None:
        self.function = function
        self.args = args

    def __reduce__(self) -> Any:
        return self.function, self.args


def hostile(tmp_path: Path) -> List[Any]:
    marker = str(tmp_path / "pwned")
    return [
        (Reduces(os.system, f"touch {marker}"), "system"),
        (Reduces(subprocess.Popen, ["touch", marker]), "Popen"),  # commands.Popen before 3
        (Reduces(eval, f"open({marker!r}, 'w')"), "eval"),
        (Reduces(getattr, StepInfo, "refresh"), "getattr"),
        (Reduces(dt.datetime.fromisoformat, "2024-01-01"), "fromisoformat"),
        (Reduces(Path.write_text, Path(marker), "x"), "write_text"),
    ]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_calls_outside_the_allow_list_are_refused(protocol: int, tmp_path: Path) -> None:
    for evil, name in hostile(tmp_path):
        places = [evil, record(config={"x": evil}), [record(), evil], {"k": evil}]
        for value in places:
            data = pickle.dumps(value, protocol=protocol)
            with pytest.raises(UnsafePickleError) as info:
                loads(data)
            # methods are named directly from protocol 4, through getattr before
            assert name in info.value.name or info.value.name.endswith(".getattr")
            assert isinstance(info.value, pickle.UnpicklingError)
            assert "refused to load global" in str(info.value)
    assert not (tmp_path / "pwned").exists()


class Sneaky(StepInfo):
    """An allowed class whose reduce gives a disallowed callable."""

    def __reduce__(self) -> Any:
        return os.system, ("echo pwned",)


class SneakyState(StepInfo):
    """An allowed class whose state holds a call of a disallowed callable."""

    def __reduce__(self) -> Any:
        return StepInfo, (), {"unique_id": Reduces(os.system, "echo pwned")}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_reduce_of_an_allowed_class_to_a_disallowed_callable(protocol: int) -> None:
    base = record()
    for cls in (Sneaky, SneakyState):
        evil = cls(**{f: getattr(base, f) for f in base.__dataclass_fields__})
        with pytest.raises(UnsafePickleError, match="system"):
            loads(pickle.dumps(evil, protocol=protocol))


def test_refused_before_anything_is_called(monkeypatch: pytest.MonkeyPatch) -> None:
    called: List[str] = []
    real = pytz.timezone
    monkeypatch.setattr(pytz, "timezone", lambda zone: called.append(zone) or real(zone))
    berlin = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc).astimezone(real("Europe/Berlin"))
    loads(pickle.dumps(record(start_time=berlin, end_time=berlin)))
    assert called  # the witness works
    called.clear()
    for protocol in PROTOCOLS:
        data = pickle.dumps([berlin, Reduces(os.system, "echo")], protocol=protocol)
        with pytest.raises(UnsafePickleError):
            loads(data)
    assert called == []


def test_python_2_names_are_mapped_like_pickle_does() -> None:
    with pytest.raises(StepInfoDecodeError, match="got a value of type 'set'"):
        loads(P2 + g("__builtin__", "set") + b"]\x85R" + STOP)
    with pytest.raises(UnsafePickleError, match=r"__builtin__.eval"):
        loads(P2 + g("__builtin__", "eval") + u("1") + b"\x85R" + STOP)
    with pytest.raises(UnsafePickleError, match=r"copy_reg.__newobj__"):
        loads(P2 + g("copy_reg", "__newobj__") + STOP)


def test_stack_global_and_extension_codes() -> None:
    data = b"\x80\x04" + u("posix") + u("system") + b"\x93" + u("echo") + b"\x85R" + STOP
    with pytest.raises(UnsafePickleError, match=r"posix.system"):
        loads(data)
    with pytest.raises(UnsafePickleError, match="extension"):
        loads(P2 + b"\x82\x01" + STOP)


# --- allowed callables with hostile arguments --------------------------------------------------


def test_reconstructor_only_builds_records() -> None:
    def recon(cls: bytes, base: bytes, state: bytes = b"N") -> bytes:
        call = b"(" + g("copy_reg", "_reconstructor") + b"(" + cls + base + state + b"tR"
        return call + b"(db" + STOP  # with a state: a record without one is refused first

    stepinfo = g("tango.step_info", "StepInfo")
    with pytest.raises(CorruptPickleError, match="_reconstructor"):
        loads(recon(stepinfo, g("__builtin__", "dict")))
    with pytest.raises(CorruptPickleError, match="_reconstructor"):
        loads(recon(g("datetime", "timedelta"), g("__builtin__", "object")))
    with pytest.raises(CorruptPickleError, match="_reconstructor"):
        loads(recon(stepinfo, g("__builtin__", "object"), u("state")))


def test_codecs_encode_only_writes_latin1() -> None:
    def enc(*args: bytes) -> bytes:
        return P2 + g("_codecs", "encode") + b"(" + b"".join(args) + b"tR" + STOP

    for args in ([u("x"), u("rot13")], [u("x"), u("latin1"), u("strict")], [u("x")]):
        with pytest.raises(CorruptPickleError, match=r"_codecs.encode"):
            loads(enc(*args))


def test_record_classes_are_never_initialised(probe_calls: List[str]) -> None:
    # REDUCE StepInfo("a", "b", set(), True) would run __init__, whose defaults probe the machine
    args = u("a") + u("b") + g("builtins", "set") + b")R" + b"\x88"
    state = b"}" + u("unique_id") + u("u") + b"s"
    data = (
        P2 + g("tango_stepinfo.step_info", "StepInfo") + b"(" + args + b"tR" + state + b"b" + STOP
    )
    # A bare record, given the pickle's state: the arguments ignored, nothing called or probed;
    # then refused, since the state lacks required fields (had __init__ run, it would not).
    with pytest.raises(StepInfoDecodeError, match=r"^step_class_name: required field is missing"):
        loads(data)
    assert probe_calls == []


def test_every_record_class_stand_in_makes_a_bare_record(probe_calls: List[str]) -> None:
    # What find_class hands out for a record class: called (REDUCE) or given to NEWOBJ, with or
    # without arguments, it makes a bare record of the real class (no field set, __init__ not
    # run: it would probe).
    from tango_stepinfo import pickling
    from tango_stepinfo._record import RECORDS

    for cls in RECORDS:
        stand_in = pickling._allowed()[(cls.__module__, cls.__name__)]
        for made in (stand_in(), stand_in("a", 1), stand_in.__new__(stand_in)):
            assert type(made) is cls and made.__dict__ == {}
    assert probe_calls == []


def test_state_can_only_be_given_to_records() -> None:
    utc_zone = g("pytz", "_UTC") + b")R"
    # BUILD on pytz's shared UTC object (dict state and slot state)
    for state in (b"}" + u("zone") + u("EVIL") + b"s", b"N}" + u("zone") + u("EVIL") + b"s\x86"):
        with pytest.raises(CorruptPickleError, match="only a new record"):
            loads(P2 + utc_zone + state + b"b" + STOP)
    assert pytz.utc.zone == "UTC"
    # BUILD on a StepState member, on a record class and on an allowed function
    member = g("tango.step_info", "StepState") + u("failed") + b"\x85R"
    for target in (member, g("tango.step_info", "StepInfo"), g("pytz", "_p")):
        with pytest.raises(CorruptPickleError, match="only a new record"):
            loads(P2 + target + b"N}" + u("value") + u("x") + b"s\x86b" + STOP)
    assert StepState.FAILED.value == "failed"


def test_pytz_zones_are_checked() -> None:
    def zone(*args: bytes) -> bytes:
        return P2 + g("pytz", "_p") + b"(" + b"".join(args) + b"tR" + STOP

    for bad in (u("../../../etc/passwd"), u("Mars/Olympus"), b"K\x05"):
        with pytest.raises(CorruptPickleError):
            loads(zone(bad))
    berlin = pytz.timezone("Europe/Berlin")
    before = dict(berlin._tzinfos)  # type: ignore[attr-defined]
    # a state the zone never had: made for the value, not added to pytz's tables
    with pytest.raises(StepInfoDecodeError):  # loads fine, but is not a record
        loads(zone(u("Europe/Berlin"), b"J\x10\x0e\x00\x00", b"K\x00", u("XXX")))
    assert berlin._tzinfos == before  # type: ignore[attr-defined]


# --- corrupt bytes and limits ------------------------------------------------------------------


def test_corrupt_bytes_raise_unpickling_errors() -> None:
    good = pickle.dumps(record(), protocol=2)
    bad = [
        b"",
        b"\x80",
        good[:-1],
        good[: len(good) // 2],
        b"\x80\x09" + good[2:],  # unknown protocol
        P2 + b"N\x85R" + STOP,  # REDUCE on None
        P2 + g("datetime", "datetime") + u("x") + b"\x85R" + STOP,  # datetime with a bad state
        P2 + b"h\x05" + STOP,  # memo index never stored
        P2 + b"0" + STOP,  # pop from an empty stack
        P2 + b"(t" * 3 + b"e" + STOP,  # APPENDS on a tuple
        P2 + b"\xff" + STOP,  # no such opcode
    ]
    for data in bad:
        with pytest.raises(pickle.UnpicklingError):
            loads(data)


def test_huge_memo_index_is_refused_before_allocating() -> None:
    with pytest.raises(CorruptPickleError, match="memo index"):
        loads(P2 + b"N" + b"r" + struct.pack("<I", 2**31) + STOP)


def test_deep_nesting_is_refused_before_it_can_crash_the_interpreter() -> None:
    # a 200 000-deep tuple as a dict key: hashing it overflows the C stack in plain pickle
    data = P2 + b"}" + b")" + b"\x85" * 200_000 + b"Ns" + STOP
    with pytest.raises(CorruptPickleError, match="levels deep"):
        loads(data)
    # nested lists, through MARK ... LIST
    with pytest.raises(CorruptPickleError, match="levels deep"):
        loads(P2 + b"(" * 600 + b"l" * 600 + STOP)
    assert loads(pickle.dumps(record(config={"x": [[[[[[[[[[1]]]]]]]]]]}))).config["x"]


def test_shared_references_cannot_expand_without_bound() -> None:
    # a = [b, b], b = [c, c], ...: 2**40 values as a tree in a few hundred bytes
    data = P2 + b"N"
    for _ in range(40):
        data += b"2\x86"  # DUP, TUPLE2
    data += STOP
    with pytest.raises(CorruptPickleError, match="expand to more than"):
        loads(data)
    info = record(config={"x": [1, 2]})
    info.metadata = {"again": info.config}  # legitimate sharing is fine
    assert loads(pickle.dumps(info)) == info


def test_reference_cycles_are_refused() -> None:
    loop: List[Any] = []
    loop.append(loop)
    with pytest.raises(CorruptPickleError, match="cycle"):
        loads(pickle.dumps(record(config={"loop": loop})))


# --- results that are not records --------------------------------------------------------------


def test_results_must_be_records() -> None:
    for value, message in [
        (5, "got 5$"),
        ("x", "got 'x'$"),
        (dt.datetime(2024, 1, 1), "got a value of type 'datetime'$"),
        ({"a", "b"}, "got a value of type 'set'$"),
    ]:
        with pytest.raises(StepInfoDecodeError, match=message):
            loads(pickle.dumps(value))
    with pytest.raises(StepInfoDecodeError, match=r"^\[1\]: expected a record"):
        loads(pickle.dumps([record(), 5]))
    with pytest.raises(StepInfoDecodeError, match=r"^\['b'\]: expected a record"):
        loads(pickle.dumps({"a": record(), "b": None}))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_records_with_wrong_field_types_name_the_field(protocol: int) -> None:
    bad = record(step_name=5)
    with pytest.raises(StepInfoDecodeError, match=r"^step_name: expected a string or null"):
        loads(pickle.dumps(bad, protocol=protocol))
    with pytest.raises(StepInfoDecodeError, match=r"^\[0\]\.step_name: "):
        loads(pickle.dumps([bad], protocol=protocol))
    env = record().environment
    env.git = GitMetadata(commit=5)  # type: ignore[arg-type]
    with pytest.raises(StepInfoDecodeError, match=r"^git\.commit: "):
        loads(pickle.dumps(env, protocol=protocol))


def test_every_record_class_is_allowed() -> None:
    info = record()
    for value in (
        info.platform,
        info.environment,
        GitMetadata("c" * 40, "https://h/x", "main", True),
        TangoMetadata("1.0"),
        PlatformMetadata("os", None, "u", "h"),
    ):
        assert isinstance(
            value, (PlatformMetadata, EnvironmentMetadata, GitMetadata, TangoMetadata)
        )
        for protocol in PROTOCOLS:
            assert loads(pickle.dumps(value, protocol=protocol)) == value


# --- schema evolution and time zones through the safe loader -----------------------------------


@pytest.mark.parametrize("protocol", [2, 5])
def test_old_pickles_missing_a_required_field_are_refused_naming_it(protocol: int) -> None:
    # A record missing a field that to_json_dict needs would load unusable (show, show --json
    # and diff fail on it), so it is refused; a missing optional field loads as None.
    platform = PlatformMetadata("Linux", 2, "me", "host", **since_none(PlatformMetadata))
    state = {"unique_id": "u", "step_class_name": "C", "dependencies": ["a"], "platform": platform}
    with pytest.raises(StepInfoDecodeError, match=r"^cacheable: required field is missing$"):
        loads(old_pickle(StepInfo, state, protocol))
    with pytest.raises(StepInfoDecodeError, match=r"^\[0\]\.platform\.host: required field"):
        loads(pickle.dumps([record(), record()]).replace(b"host", b"hast"))
    old_git = loads(old_pickle(GitMetadata, {"commit": "c"}, protocol))
    assert old_git == GitMetadata("c", None, None, None)


def test_safe_loader_still_checks_the_fields_an_old_pickle_has() -> None:
    data = old_pickle(StepInfo, {**record().__getstate__(), "cacheable": "yes"}, 5)
    with pytest.raises(StepInfoDecodeError, match=r"^cacheable: expected a boolean, got 'yes'$"):
        loads(data)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_times_in_a_zoneinfo_zone_load_through_the_safe_loader(protocol: int) -> None:
    zone = zoneinfo.ZoneInfo("America/New_York")  # needs the system's time zone database
    info = StepInfo.from_json_dict(json.loads((TANGO_DATA / "json" / "completed.json").read_text()))
    info.start_time = dt.datetime(2024, 7, 1, 12, 0, 0, 5, tzinfo=zone)
    back = loads(pickle.dumps(info, protocol=protocol))
    assert back == info
    assert back.start_time is not None and back.start_time.utcoffset() == dt.timedelta(0)


# --- the attacks of issue 10, each refused ----------------------------------------------------


def deep_tuple_key_through_a_list_filled_after_use(depth: int) -> bytes:
    """A list put into tuple's argument tuple, filled afterwards, turned by the allowed
    ``tuple`` into a tuple nested ``depth`` deep, used as a dict key (plain pickle: SIGSEGV)."""
    level = b"q\x020" + b"h\x00]q\x01\x85" + b"h\x01h\x02a0" + b"R"
    return P2 + b"}" + g("__builtin__", "tuple") + b"q\x000" + b")" + level * depth + b"Ns" + STOP


def run_loads(tmp_path: Path, data: bytes) -> subprocess.CompletedProcess[str]:
    """``loads`` on ``data`` in a fresh interpreter, so that a crash cannot kill the tests."""
    path = tmp_path / "attack.pickle"
    path.write_bytes(data)
    code = (
        "import sys\n"
        "from tango_stepinfo import loads\n"
        "try:\n"
        f"    loads(open({str(path)!r}, 'rb').read())\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


def test_a_list_filled_after_use_cannot_make_a_deep_tuple_key(tmp_path: Path) -> None:
    data = deep_tuple_key_through_a_list_filled_after_use(300_000)
    assert len(data) > 4_000_000
    done = run_loads(tmp_path, data)
    assert done.returncode == 0, done.stderr  # no SIGSEGV
    assert done.stdout.startswith("CorruptPickleError"), done.stdout
    assert "already used" in done.stdout
    with pytest.raises(CorruptPickleError, match="APPEND on a list that was already used"):
        loads(deep_tuple_key_through_a_list_filled_after_use(3))


def test_a_tuple_nested_a_million_deep_is_refused_in_the_scan(tmp_path: Path) -> None:
    done = run_loads(tmp_path, P2 + b")" + b"\x85" * 1_000_000 + STOP)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("CorruptPickleError") and "levels deep" in done.stdout


def test_a_nine_byte_memo_index_allocates_nothing() -> None:
    data = b"N" + b"r" + struct.pack("<I", 2**27) + STOP  # 1 GiB of memo in the C unpickler
    assert len(data) <= 9
    with pytest.raises(CorruptPickleError, match="memo index 134217728 out of range"):
        loads(data)


def test_build_on_a_shared_object_never_runs_even_if_the_load_fails_later() -> None:
    targets = [
        g("pytz", "_UTC") + b")R",
        g("tango.step_info", "StepState") + u("failed") + b"\x85R",
        g("pytz", "_p") + u("Europe/Berlin") + b"\x85R",
    ]
    for target in targets:
        state = b"}" + u("zone") + u("EVIL") + b"s"
        for tail in (b"", g("os", "system")):
            with pytest.raises(pickle.UnpicklingError):
                loads(P2 + target + state + b"b" + tail + STOP)
    assert pytz.utc.zone == "UTC" and pytz.timezone("Europe/Berlin").zone == "Europe/Berlin"
    assert StepState.FAILED.value == "failed"


def test_one_string_referenced_thousands_of_times_is_refused_before_building() -> None:
    big = "x" * 1_000_000
    data = P2 + u(big) + b"q\x00(" + b"h\x00" * 3000 + b"l" + STOP
    with pytest.raises(CorruptPickleError, match="expand to more than"):
        loads(data)
    # the same through a record's config, written by pickle itself
    info = record(config={f"k{i}": big for i in range(40)})
    with pytest.raises(CorruptPickleError, match="expand to more than"):
        loads(pickle.dumps(info))
    info.config = {"a": big, "b": big}  # sharing within the bound loads
    assert loads(pickle.dumps(info)) == info


def colliding_ints(count: int) -> List[int]:
    """Ints that all hash to 0 (multiples of the modulus of int hashing)."""
    modulus = 2**61 - 1
    return [modulus * (i + 1) for i in range(count)]


def test_sets_and_dict_keys_hold_strings_only() -> None:
    ints = colliding_ints(40_000)
    assert {hash(i) for i in ints[:10]} == {0}
    attacks = [
        pickle.dumps(set(ints[:100]), protocol=4),  # EMPTY_SET, ADDITEMS
        pickle.dumps(frozenset(ints[:100]), protocol=4),  # FROZENSET
        pickle.dumps(set(ints[:100]), protocol=2),  # set([...]) through REDUCE
        pickle.dumps({i: None for i in ints[:100]}, protocol=2),  # SETITEMS
        pickle.dumps({i: None for i in ints[:100]}, protocol=0),  # DICT
    ]
    for data in attacks:
        with pytest.raises(CorruptPickleError, match="may only be strings"):
            loads(data)
    # through a record's state: __setstate__ would turn the list into a set
    info = record()
    info.dependencies = ints  # type: ignore[assignment]
    for protocol in PROTOCOLS:
        with pytest.raises(CorruptPickleError, match="set field may only hold strings"):
            loads(pickle.dumps(info, protocol=protocol))


def test_a_record_without_state_is_refused() -> None:
    stepinfo = g("tango_stepinfo.step_info", "StepInfo")
    stateless = [
        P2 + stepinfo + b")\x81" + STOP,  # NEWOBJ: 40 bytes; loaded with every field None
        g("copy_reg", "_reconstructor")
        + b"("
        + stepinfo
        + g("__builtin__", "object")
        + b"NtR"
        + STOP,
        b"(" + b"i" + b"tango.step_info\nStepInfo\n" + STOP,  # INST
        b"\x80\x04" + u("tango.step_info") + u("StepInfo") + b"\x93)\x81" + STOP,
        P2 + b"(" + stepinfo + b")\x81" + pickle.dumps(record(), protocol=2)[2:-1] + b"l" + STOP,
    ]
    for data in stateless:
        with pytest.raises(CorruptPickleError, match="a record without state"):
            loads(data)


def test_ints_past_4300_digits_are_refused_naming_the_field() -> None:
    info = record()
    info.platform.cpu_count = 10**5000
    with pytest.raises(CorruptPickleError, match=r"^platform\.cpu_count: an int of more than 4300"):
        loads(pickle.dumps(info))
    with pytest.raises(CorruptPickleError, match=r"^\[0\]\.config\.x\[1\]: an int of more than"):
        loads(pickle.dumps([record(config={"x": [1, -(10**4300)]})]))
    edge = record(config={"x": 10**4300 - 1})  # 4300 digits: loads and encodes
    assert loads(pickle.dumps(edge)).to_json_dict()["config"]["x"] == 10**4300 - 1
    for opcode in (b"L", b"I"):  # as decimal text (protocols 0, 1): refused before parsing
        with pytest.raises(CorruptPickleError, match="an int of more than 4300 digits"):
            loads(opcode + b"9" * 5000 + b"\n" + STOP)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_times_must_be_real(protocol: int) -> None:
    info = record(start_time=dt.datetime(2024, 1, 1, 7, tzinfo=dt.timezone.utc))
    payload = dt.datetime(2024, 1, 1, 7).__reduce__()[1][0]
    data = pickle.dumps(info, protocol=protocol)
    if protocol >= 3:
        bad = data.replace(payload, payload[:3] + b"\x00\xff" + payload[5:])  # day 0, hour 255
    else:  # bytes written as latin-1 text through _codecs.encode: keep the text's length
        text = payload.decode("latin-1")
        bad = data.replace(text.encode(), (text[:3] + "\x00\x7f" + text[5:]).encode())
    assert bad != data
    with pytest.raises(CorruptPickleError, match=r"^start_time: not a real date and time"):
        loads(bad)


def test_zone_names_with_control_characters_are_refused() -> None:
    def zone(*args: bytes) -> bytes:
        return P2 + g("pytz", "_p") + b"(" + b"".join(args) + b"tR" + STOP

    for args in (
        [u("Europe/Berlin"), b"J\x11\x0e\x00\x00", b"K\x00", u("\x1b]0;pwned\x07")],
        [u("\x1b[2J\x07")],
    ):
        with pytest.raises(CorruptPickleError, match="time zone"):
            loads(zone(*args))
    berlin = pytz.timezone("Europe/Berlin").localize(dt.datetime(2024, 7, 1))
    back = loads(pickle.dumps(record(start_time=berlin)))
    assert back.start_time == berlin and repr(back).isprintable()


def test_config_nesting_is_bounded_by_the_json_depth_limit() -> None:
    value: Any = 1
    for _ in range(199):
        value = [value]
    assert loads(pickle.dumps(record(config={"x": value}))).config["x"] == value  # 200 levels
    with pytest.raises(CorruptPickleError, match=r"^config\.x(\[0\])+: nested more than 200"):
        loads(pickle.dumps(record(config={"x": [value]})))
    # 600 levels (too deep for pickle.dumps): refused by the scan, before anything is built
    data = pickle.dumps(record(config={"x": "PLACEHOLDER"}), protocol=2)
    deep = data.replace(b"X\x0b\x00\x00\x00PLACEHOLDER", b"]" * 600 + b"a" * 599)
    with pytest.raises(CorruptPickleError, match="levels deep"):
        loads(deep)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_enum_members_pickled_through_getattr_load(protocol: int) -> None:
    # how Python 3.11.0 to 3.11.4 (Debian 12's 3.11.2) pickle an enum member
    def member(*args: bytes) -> bytes:
        call = g("__builtin__", "getattr") + b"(" + b"".join(args) + b"tR"
        return (b"\x80\x02" if protocol >= 2 else b"") + call + STOP

    state = g("tango_stepinfo.step_info", "StepState")
    assert loads(member(state, u("FAILED"))) is StepState.FAILED
    assert loads(member(state, b"VRUNNING\n")) is StepState.RUNNING
    refused = [
        member(state, u("__class__")),
        member(state, u("failed")),  # a value, not a member name
        member(g("tango_stepinfo.step_info", "StepInfo"), u("refresh")),
        member(state, u("FAILED"), u("default")),
        member(g("pytz", "_UTC"), u("zone")),
    ]
    for data in refused:
        with pytest.raises(UnsafePickleError, match="getattr"):
            loads(data)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_this_interpreters_own_pickles_of_every_state_load(protocol: int) -> None:
    # On Python 3.11.0 to 3.11.4 these pickles hold getattr(StepState, name); .ci/run runs the
    # suite on such a Python when the machine has one (Debian 12's /usr/bin/python3).
    for state in StepState:
        assert loads(pickle.dumps(state, protocol=protocol)) is state
    states = list(StepState) * 2  # the second time, each member is a memo reference
    assert loads(pickle.dumps(states, protocol=protocol)) == states
    by_name = {s.name: s for s in StepState}
    assert loads(pickle.dumps(by_name, protocol=protocol)) == by_name


def test_lists_tuples_and_str_keyed_dicts_of_records_are_usable() -> None:
    from tango_stepinfo._cli import compare, show_record

    info = record()
    for value in ([info, info], (info,), {"a": info}):
        back = loads(pickle.dumps(value))
        for item in back.values() if isinstance(back, dict) else back:
            assert StepInfo.from_json_dict(item.to_json_dict()) == item
            assert repr(item).isprintable()
            assert show_record(item)
            assert (
                compare((item.platform, item.environment), (item.platform, item.environment)) == {}
            )


def test_records_in_lists_are_checked_too() -> None:
    from tango_stepinfo.metadata import GpuMetadata

    info = record()
    gpu = GpuMetadata.__new__(GpuMetadata)
    gpu.__dict__.update(dict.fromkeys(f.name for f in GpuMetadata.__dataclass_fields__.values()))
    info.platform.gpus = [gpu]
    with pytest.raises(StepInfoDecodeError, match=r"^platform\.gpus\[0\]\.name: "):
        loads(pickle.dumps(info))


# --- the scan's model and the checks' shortcut: each path, and the way around it -------------


def test_pickles_without_unused_memo_stores_load() -> None:
    # pickletools.optimize drops the MEMOIZE of strings never fetched again: runs of strings
    # then mix memoized and plain ones, and memo indexes shift
    import pickletools

    for protocol in PROTOCOLS:
        data = pickletools.optimize(pickle.dumps([record(), record()], protocol=protocol))
        assert loads(data) == pickle.loads(data)


def test_memo_stores_after_a_gap_are_numbered_as_the_c_unpickler_numbers_them() -> None:
    # LONG_BINPUT 5 leaves indexes 0 to 4 empty; MEMOIZE then stores at the count of filled
    # indexes (1), as _pickle does: the string is fetched back from index 1
    member = b"\x8c\x06FAILED\x94" + b"0" + g("tango_stepinfo.step_info", "StepState")
    state = g("builtins", "getattr") + b"(" + g("tango_stepinfo.step_info", "StepState")
    data = b"\x80\x04N" + b"r" + struct.pack("<I", 5) + b"0" + member + b"0" + state + b"h\x01tR."
    assert pickle.loads(data) is StepState.FAILED
    assert loads(data) is StepState.FAILED
    # a record's pickle after such a gap: whatever pickle makes of it, loads makes the same or
    # refuses it
    plain = pickle.dumps(record(), protocol=4)
    shifted = plain[:2] + b"N" + b"r" + struct.pack("<I", 5) + b"0" + plain[11:]
    try:
        ours = loads(shifted)
    except (CorruptPickleError, StepInfoDecodeError):
        return
    assert ours == pickle.loads(shifted)


def test_dup_counts_the_value_again() -> None:
    member = g("tango_stepinfo.step_info", "StepState") + u("failed") + b"\x85R"
    data = P2 + b"](" + member + b"2e" + STOP  # DUP: the same member twice in the list
    assert loads(data) == pickle.loads(data) == [StepState.FAILED, StepState.FAILED]


def test_a_shared_container_counts_its_own_items_not_what_follows_it() -> None:
    # x is fetched again 40 times after a 200 KB string: each time counts x ([1], a few bytes),
    # not the string pushed after it (which would go past the bound: 40 * 200 KB)
    x = [1]
    info = record(config={"a": x, "b": "y" * 200_000, "c": [x] * 40})
    back = loads(pickle.dumps(info))
    assert back == info and len(back.config["c"]) == 40


def test_records_of_a_shape_already_checked_are_checked_as_closely(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tango_stepinfo import pickling

    monkeypatch.setattr(pickling, "_SHAPES", {})  # no shape known from earlier tests
    good = pickle.dumps(record())
    loads(good)
    loads(good)  # now a known shape: the shortcut
    assert pickling._shapes(StepInfo).known
    # the same shape with a bad value in a field the shortcut still looks at: refused with the
    # message of the whole check
    info = record()
    info.platform.cpu_count = 10**5000
    with pytest.raises(CorruptPickleError, match=r"^platform\.cpu_count: an int of more than"):
        loads(pickle.dumps(info))
    payload = dt.datetime(2024, 1, 1, 7).__reduce__()[1][0]
    bad_time = pickle.dumps(record(start_time=dt.datetime(2024, 1, 1, 7, tzinfo=dt.timezone.utc)))
    bad_time = bad_time.replace(payload, payload[:3] + b"\x00\xff" + payload[5:])
    loads(pickle.dumps(record(start_time=dt.datetime(2024, 1, 1, 7, tzinfo=dt.timezone.utc))))
    with pytest.raises(CorruptPickleError, match=r"^start_time: not a real date and time"):
        loads(bad_time)
    # a new shape (a field now None) goes the whole way, and is remembered after
    before = len(pickling._shapes(StepInfo).known)
    back = loads(pickle.dumps(record(step_name=None)))
    assert back.step_name is None and len(pickling._shapes(StepInfo).known) == before + 1
    # what the shortcut makes of a record is what the whole check makes of it (times made
    # aware, config as JSON values)
    naive = record(start_time=dt.datetime(2024, 1, 1), config={"t": (1, 2)})
    first, second = loads(pickle.dumps(naive)), loads(pickle.dumps(naive))
    assert first == second and second.start_time.tzinfo is not None
    assert second.config == {"t": [1, 2]}


@pytest.mark.parametrize("value", [u("v"), b"K\x01", b"\x88", b"J\x00\x00\x00\x01"])
def test_setitems_of_strings_or_plain_values_only_change_a_new_dict(value: bytes) -> None:
    # SETITEMS whose values hold no container (strings, ints, constants) is read inline, not
    # through grow(): the same refusals. A dict put into a list, then changed:
    used = P2 + b"}q\x00]q\x01h\x00a0h\x00(" + u("k") + value + b"u" + STOP
    with pytest.raises(CorruptPickleError, match="SETITEM on a dict that was already used"):
        loads(used)
    # SETITEMS on a list, and on a string
    for target in (b"]", u("s")):
        with pytest.raises(CorruptPickleError, match="SETITEM on something that is not a new"):
            loads(P2 + target + b"(" + u("k") + value + b"u" + STOP)
    # on a new dict: as pickle.loads
    data = P2 + b"}(" + u("k") + value + b"u" + STOP
    with pytest.raises(StepInfoDecodeError):
        loads(data)  # a dict of no record, but scanned and loaded first
    assert pickle.loads(data)["k"] is not None


def test_a_memoize_read_with_the_value_before_it_stores_the_same_index() -> None:
    # MEMOIZE right after a container, a global, a call or a short tuple is read with it: the
    # memo index of each is the one the C unpickler gives it (0 to 5 here), so GET fetches the
    # same value
    data = (
        b"\x80\x04]\x94"  # 0: the list
        + b"\x8c\x06failed\x940"  # 1 (then popped)
        + b"\x8c\x18tango_stepinfo.step_info\x94"  # 2
        + b"\x8c\tStepState\x93\x94"  # 3: the global
        + b"h\x01\x85\x94"  # 4: the arguments
        + b"R\x94a"  # 5: the member, appended
        + b"h\x03h\x04Ra"  # the global and the arguments fetched again
        + b"h\x05a"  # the member fetched again
        + STOP
    )
    expected = [StepState.FAILED] * 3
    assert pickle.loads(data) == expected
    assert loads(data) == expected


def _bad_in_a_known_shape(field: str) -> Any:
    """A record whose ``field`` (a dotted path) holds a bad value of the same type as in
    ``record()``: the same shape for the checks' shortcut, refused or changed by the whole check."""
    import copy

    info = record()
    bad: Dict[str, Any] = {
        "environment.packages": [("a", "1"), ("b", 2)],  # a row of a str and an int
        "environment.packages/3": [("a", "1", "x")],  # a row of three strings
        "environment.variables": {"A": "1", "B": 2},
        "config": {"lr": float("nan")},
        "config/int": {"steps": [10**5000]},
        "metadata": {"owner": ("a", "b")},  # a tuple: becomes a list
        "platform.gpus": [copy.copy(info.environment.git)],  # a record (of a known shape)
        "platform.gpus/memory": None,
    }
    owner, _, name = field.split("/", maxsplit=1)[0].rpartition(".")
    target = info
    for part in filter(None, owner.split(".")):
        target = getattr(target, part)
    if field == "platform.gpus/memory":
        gpu = copy.copy(info.platform.gpus[0])
        gpu.memory = 10**5000
        target.gpus = [gpu]
    else:
        setattr(target, name, bad[field])
    return info


@pytest.mark.parametrize(
    ("field", "error", "message"),
    [
        ("environment.packages", StepInfoDecodeError, r"^environment\.packages\[1\]\[1\]: exp"),
        ("environment.packages/3", StepInfoDecodeError, r"^environment\.packages\[0\]: expected"),
        ("environment.variables", StepInfoDecodeError, r"^environment\.variables\.B: expected"),
        ("config", StepInfoDecodeError, r"^config\.lr: nan has no JSON form"),
        ("config/int", CorruptPickleError, r"^config\.steps\[0\]: an int of more than 4300"),
        ("metadata", None, ""),
        ("platform.gpus", StepInfoDecodeError, r"^platform\.gpus\[0\]: expected"),
        ("platform.gpus/memory", CorruptPickleError, r"^platform\.gpus\[0\]\.memory: an int"),
    ],
)
def test_the_shortcut_looks_at_each_field_as_the_whole_check_does(
    monkeypatch: pytest.MonkeyPatch, field: str, error: Any, message: str
) -> None:
    # Each field of a known shape gets a look of its own (pickling._Shapes._look) in place of
    # the field check and _usable_value: a value of the same type that the whole check refuses
    # or changes goes the whole way, with its message.
    from tango_stepinfo import pickling

    monkeypatch.setattr(pickling, "_SHAPES", {})
    good = pickle.dumps(record())
    loads(good)
    loads(good)  # known now, platform, environment and the GPU record included
    data = pickle.dumps(_bad_in_a_known_shape(field))
    if error is None:
        assert loads(data).metadata == {"owner": ["a", "b"]}  # as to_json_dict writes it
        return
    with pytest.raises(error, match=message):
        loads(data)
    # the whole check alone (no shape known) says the same
    monkeypatch.setattr(pickling, "_SHAPES", {})
    with pytest.raises(error, match=message):
        loads(data)


def test_the_shortcut_for_a_set_of_strings_refuses_other_members() -> None:
    # dependencies: the scan lets only strings into a record's set field through SETITEMS; the
    # look checks the members again, whatever built the state
    from tango_stepinfo import pickling

    back = loads(pickle.dumps(record()))
    loads(pickle.dumps(record()))
    assert pickling._known(back)
    back.dependencies = {"a", 1}  # type: ignore[assignment]
    assert not pickling._known(back)
    back.dependencies = {"a", "b"}
    assert pickling._known(back)


def test_strings_read_from_text_lines_can_be_fetched_again_by_any_get() -> None:
    # UNICODE (a text line) memoized with BINPUT and fetched with BINGET: the cell carries the
    # string's size, not a position to read it from
    state = g("tango_stepinfo.step_info", "StepState")
    data = b"\x80\x01" + state + b"(" + b"Vfailed\nq\x01" + b"0" + b"h\x01tR" + STOP
    assert pickle.loads(data) is StepState.FAILED
    assert loads(data) is StepState.FAILED


def test_a_million_items_of_the_wrong_type_are_refused_without_walking_them_all() -> None:
    import tracemalloc

    data = P2 + b"(" + b"N" * 1_000_000 + b"l" + STOP  # 1 MB: a list of a million None
    tracemalloc.start()
    try:
        with pytest.raises(StepInfoDecodeError, match=r"^\[0\]: expected a record"):
            loads(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the list itself is 8 MB and the scan's stack as much; a path and a pair per item was 120 MB
    assert peak < 40_000_000


def _peak_of(load: Any, data: bytes) -> int:
    """The peak of memory allocated (``tracemalloc``) while ``load`` reads ``data``, above what
    was allocated before, once caches are filled and imports done."""
    import tracemalloc

    load(data)
    tracing = tracemalloc.is_tracing()  # PYTHONTRACEMALLOC: left on, as found
    if not tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        load(data)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        if not tracing:
            tracemalloc.stop()


def test_loads_needs_no_more_memory_than_pickle_loads_whatever_the_size() -> None:
    # The scan ends (and frees its tables) before the C unpickler starts, and holds less per
    # value than the unpickler holds for the same value, so loading costs what pickle.loads
    # costs plus a constant. Pickles over 64 KiB: never learned as templates. (Sizes kept
    # small: under tracemalloc, 3.11+ finds the line of each allocation by reading the scan's
    # line table from its start, which made 40,000 BINUNICODE strings take 17 s.)
    short = b"(" + b"".join(b"\x8c" + bytes([len(w)]) + w for w in _words(12_000))
    shapes = {
        "10,000 packages": pickle.dumps(full_record(n_packages=10_000)),
        "20,000 strings": pickle.dumps(record(config={"x": [f"s{i}" for i in range(20_000)]})),
        "a stack of 12,000 strings": _with_list(short + b"e"),
    }
    for name, data in shapes.items():
        assert len(data) > 65536, name
        plain, safe = _peak_of(pickle.loads, data), _peak_of(loads, data)
        assert plain > 500_000, name  # so the bound below is not lost in the noise
        assert safe <= plain + 65536, (name, plain, safe)


def _words(count: int) -> List[bytes]:
    return [f"word-{i}".encode() for i in range(count)]


def _with_list(config_list: bytes, protocol: int = 2) -> bytes:
    """The pickle of a record whose ``config["a"]`` is a list written as ``config_list``
    (opcodes that fill the empty list on top of the stack)."""
    data = pickle.dumps(record(config={"a": ["MARK"]}), protocol=protocol)
    at = data.index(b"MARK")
    start = data.rindex(b"]", 0, at) + 1  # after EMPTY_LIST (and before its BINPUT)
    while data[start] in b"q\x94":  # its memo store
        start += 2 if data[start] == ord("q") else 1
    end = data.index(b"a", at) + 1  # after the APPEND of the marker string
    return data[:start] + config_list + data[end:]


@pytest.mark.parametrize(
    "items", [b"Na" * 1000, b"(NNN\x88e" * 300 + b"\x89a", b"(e(Ne" + b"Na\x88a" * 50, b"N0(\x89e"]
)
def test_constants_appended_one_by_one_load_as_pickle_loads_them(items: bytes) -> None:
    # Read at once in the scan (one opcode at a time, 1 MB of "Na" took 0.8 s): the same list.
    data = _with_list(items)
    assert loads(data).config["a"] == pickle.loads(data).config["a"]
    assert len(pickle.loads(data).config["a"]) > 0


@pytest.mark.parametrize(
    "items", [b"N0" * 50 + b"Na", b"(1" * 50 + b"\x88a", b"N\x880N0a", b"(N1Na", b"NN0a"]
)
def test_single_constants_pops_and_pop_marks_load_as_pickle_loads_them(items: bytes) -> None:
    # MARK then POP_MARK, and a constant then POP, are skipped at once; DUP, POP and POP_MARK come
    # early in the scan's dispatch (1 MB of "(1" took 0.88 s on 3.9, now 0.11).
    data = _with_list(items)
    assert loads(data).config["a"] == pickle.loads(data).config["a"]
    assert len(pickle.loads(data).config["a"]) > 0


def test_single_constants_still_count_toward_the_size_bound() -> None:
    # 300,000 single None (each followed by POP but one): the JSON size counts every push.
    many = b"]q\x05" + b"N0" * 300_000 + b"Na" + b"(" + b"h\x05" * 2 + b"l"
    assert loads(_with_list(b"Na")).config["a"] == [None]
    with pytest.raises(CorruptPickleError, match="expand to more than"):
        loads(_with_list(many + b"a"))


def test_constants_appended_one_by_one_still_count_and_mark_the_list() -> None:
    # 100,000 None: a list of 900 KB of JSON, fetched again 20 times, goes past the bound
    shared = b"]q\x05" + b"Na" * 100_000 + b"0" + b"(" + b"h\x05" * 20 + b"l"
    with pytest.raises(CorruptPickleError, match="expand to more than"):
        loads(_with_list(shared + b"a"))
    # a list of None in a set field is not a list of strings
    info = record()
    info.dependencies = ["MARK"]  # type: ignore[assignment]
    data = pickle.dumps(info, protocol=2)
    at = data.index(b"MARK")
    start = data.rindex(b"]", 0, at) + 1
    data = data[:start] + b"Na\x88a" + data[data.index(b"a", at) + 1 :]
    with pytest.raises(CorruptPickleError, match="set field may only hold strings"):
        loads(data)


# --- templates: the scan skipped for a pickle of a shape already scanned ---------------------

_MISSED = pickling_module._missed


def _learned(info: Any, monkeypatch: pytest.MonkeyPatch, protocol: int = 4) -> bytes:
    """The pickle of ``info``, loaded twice with no other template known: its template is the
    only one, and no other is learned after it."""
    from tango_stepinfo import pickling

    monkeypatch.setattr(pickling, "_missed", _MISSED)
    monkeypatch.setattr(pickling, "_TEMPLATES", [])
    monkeypatch.setattr(pickling, "_SEEN", set())
    monkeypatch.setattr(pickling, "_FAILED", set())
    data = pickle.dumps(info, protocol=protocol)
    loads(data)
    assert pickling._TEMPLATES == []  # learned when its shape comes again
    loads(data)
    assert len(pickling._TEMPLATES) == 1
    _no_more_learning(monkeypatch)
    return data


def _no_more_learning(monkeypatch: pytest.MonkeyPatch) -> None:
    from tango_stepinfo import pickling

    monkeypatch.setattr(pickling, "_missed", lambda *args: None)


def _agrees(data: bytes) -> bool:
    """Whether a template matches ``data``; if one does, the scan accepts ``data`` too, ends
    where the template said and reaches the total it predicts."""
    from tango_stepinfo import pickling

    end = pickling._matched(data, data.count(0x94))
    if end < 0:
        return False
    _, _, total, learned_end = pickling._TEMPLATES[0]
    assert pickling._scan_all(data, None) == (end, total + end - learned_end)
    return True


def _outcome(data: bytes) -> Any:
    try:
        return "loaded", loads(data)
    except Exception as e:
        return type(e), str(e)


def _without_templates(data: bytes, monkeypatch: pytest.MonkeyPatch) -> Any:
    from tango_stepinfo import pickling

    with monkeypatch.context() as m:
        m.setattr(pickling, "_TEMPLATES", [])
        return _outcome(data)


def test_a_record_of_a_learned_shape_with_other_values_skips_the_scan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tango_stepinfo import pickling

    _learned(full_record(70), monkeypatch)
    other = full_record(70)
    other.unique_id = "EvalStep-" + "x" * 200  # longer and shorter strings, other numbers, times
    other.environment.packages = [(f"p{i}", f"{i}.0.0.dev{i}") for i in range(70)]
    other.platform.cpu_count = 7
    other.start_time = dt.datetime(1999, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc)
    data = pickle.dumps(other)
    assert _agrees(data)
    calls: List[bytes] = []
    monkeypatch.setattr(pickling, "_scan_all", lambda d, r: calls.append(d) or (0, 0))
    assert loads(data) == pickle.loads(data) and not calls
    assert loads(pickle.dumps(full_record(71))) is not None and calls  # another shape: scanned


def test_every_byte_changed_either_misses_the_template_or_scans_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tango_stepinfo import pickling

    data = _learned(record(), monkeypatch)
    steps = pickling._TEMPLATES[0][1]
    fixed = set()
    i = 0
    for _, size, hole in steps:
        fixed.update(range(i, i + size))
        i += size + (data[i + size] + 1 if hole < 0 else hole)
    hits = 0
    for at in range(len(data)):
        for delta in (1, 0x80, 0xFF):
            changed = data[:at] + bytes([(data[at] + delta) % 256]) + data[at + 1 :]
            hit = _agrees(changed)
            assert not (hit and at in fixed)  # a byte of a chunk changed: always the scan
            hits += hit
            if at % 7 == 0:  # (a sample: each load is ~0.3 ms)
                assert _outcome(changed) == _without_templates(changed, monkeypatch)
    assert hits > 100  # the holes: string bytes, numbers, times, the FRAME's length


@pytest.mark.parametrize("frame", [0, 1, 100, 2**63, 2**64 - 1])
def test_other_frame_lengths_load_as_without_templates(
    frame: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _learned(full_record(70), monkeypatch)
    assert data[2] == 0x95  # FRAME
    changed = data[:3] + frame.to_bytes(8, "little") + data[11:]
    assert _agrees(changed)
    assert _outcome(changed) == _without_templates(changed, monkeypatch)


def test_memo_index_games_miss_the_template(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _learned(record(), monkeypatch)
    stores = data.count(b"\x94")
    at = data.index(b"h")  # the first BINGET
    while at >= 0:
        if data[at - 1] == 0x94:  # (not the byte of a string)
            for index in (0, data[at + 1] - 1, data[at + 1] + 1, stores - 1, stores, 255):
                changed = data[: at + 1] + bytes([index % 256]) + data[at + 2 :]
                if changed != data:
                    assert not _agrees(changed)
                    assert _outcome(changed) == _without_templates(changed, monkeypatch)
        at = data.find(b"h", at + 1)
    # a MEMOIZE dropped or added shifts every index after it: the scan decides
    for changed in (data.replace(b"\x94", b"", 1), data.replace(b"\x94", b"\x94\x94", 1)):
        assert not _agrees(changed)
        assert _outcome(changed) == _without_templates(changed, monkeypatch)


def test_free_strings_of_other_lengths_and_bytes_load_as_without_templates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = _learned(record(), monkeypatch)
    at = data.index(b"TrainStep-abc123")
    for text in (b"", b"\xff\xfe", b"x" * 254, b"\x00", "é".encode() * 100, b"ab\xc3"):
        changed = data[: at - 1] + bytes([len(text)]) + text + data[at + 16 :]
        assert _agrees(changed)
        assert _outcome(changed) == _without_templates(changed, monkeypatch)
    # a length byte changed alone: the bytes after it are read as other opcodes
    for size in range(0, 40):
        changed = data[: at - 1] + bytes([size]) + data[at:]
        _agrees(changed)
        assert _outcome(changed) == _without_templates(changed, monkeypatch)


def test_names_of_globals_are_never_holes(monkeypatch: pytest.MonkeyPatch) -> None:
    # the scan reads them: a template keeps them, so another name goes to the scan and is refused
    data = _learned(record(), monkeypatch)
    for old, new in (
        (b"\x08datetime\x94\x8c\x08datetime", b"\x08datetime\x94\x8c\x08__import"),
        (b"\x08StepInfo", b"\x08Popen___"),  # (read only by the scan: no other rule keeps it)
        (b"\x10PlatformMetadata", b"\x10PlatformMetadatb"),
    ):
        changed = data.replace(old, new, 1)
        assert changed != data and not _agrees(changed)
        with pytest.raises(UnsafePickleError, match=new[-8:].decode()):
            loads(changed)
    # a value whose string the pickle fetches again as a global's module and name: kept too
    data = _learned(record(step_name=sys.intern("datetime")), monkeypatch)
    assert b"step_name\x94\x8c\x08datetime\x94" in data and b"h\x0f\x8c\x08datetime" in data
    assert _agrees(data)
    changed = data.replace(b"step_name\x94\x8c\x08datetime", b"step_name\x94\x8c\x08builtins")
    assert not _agrees(changed)
    with pytest.raises(UnsafePickleError, match="datetime"):
        loads(changed)


def test_a_string_whose_size_counts_twice_gives_no_template(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tango_stepinfo import pickling

    info = record()
    shared = ["a string inside a list that is fetched again"]
    info.config = {"a": shared, "b": shared}
    data = pickle.dumps(info)
    monkeypatch.setattr(pickling, "_TEMPLATES", [])
    assert loads(data) == loads(data) == pickle.loads(data)
    assert pickling._TEMPLATES == []  # a longer string would add twice its growth
    # a string fetched again itself stays in its chunk instead: the shape is learned
    info.config = {"a": shared[0], "b": shared[0]}
    _learned(info, monkeypatch)


def test_a_matched_pickle_still_meets_the_size_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    from tango_stepinfo import _limits

    data = _learned(record(), monkeypatch)
    assert _agrees(data)
    monkeypatch.setattr(_limits, "JSON_BYTES_PER_PICKLE_BYTE", 1)
    monkeypatch.setattr(_limits, "JSON_BYTES_FLOOR", 0)
    with pytest.raises(CorruptPickleError, match="expand to more than"):
        loads(data)


def test_only_loaded_pickles_of_record_opcodes_are_learned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tango_stepinfo import pickling

    monkeypatch.setattr(pickling, "_TEMPLATES", [])
    for data in (
        pickle.dumps(record(), protocol=2),  # BINPUT: memo indexes compared with positions
        pickle.dumps([1, 2, 3]),  # scanned, then refused after loading
    ):
        _outcome(data)
        _outcome(data)
        assert pickling._TEMPLATES == []


def test_a_failure_while_learning_never_fails_the_load(monkeypatch: pytest.MonkeyPatch) -> None:
    from tango_stepinfo import pickling

    def broken(*args: Any) -> None:
        raise RuntimeError("a bug while learning")

    monkeypatch.setattr(pickling, "_TEMPLATES", [])
    monkeypatch.setattr(pickling, "_learn", broken)
    data = pickle.dumps(record())
    assert loads(data) == loads(data) == pickle.loads(data)
    assert pickling._TEMPLATES == []


@pytest.mark.parametrize(
    "value",
    [
        [record(), record()],
        (record(),),
        {"a": record(), "b": record(step_name="other")},
        record(config={"a": [1, 2.5, None, True, "x"], "b": {"c": ["d"] * 3}, "e": -(2**70)}),
        StepState.FAILED,
    ],
)
def test_templates_of_lists_tuples_dicts_of_records_and_states(
    value: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for protocol in (4, 5):
        data = _learned(value, monkeypatch, protocol)
        assert _agrees(data)
        assert _outcome(data) == _without_templates(data, monkeypatch) == ("loaded", value)


def test_templates_shared_by_threads_load_what_pickle_loads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # templates are learned, reordered and dropped (more shapes than are kept) from 8 threads
    import threading

    from tango_stepinfo import pickling

    monkeypatch.setattr(pickling, "_TEMPLATES", [])
    monkeypatch.setattr(pickling, "_TEMPLATES_MAX", 4)
    monkeypatch.setattr(pickling, "_LEARN_EVERY", 2)
    blobs = []
    for i in range(12):
        info = full_record(i % 6)
        info.unique_id = f"Step-{i}"
        blobs.append(pickle.dumps(info))
    expected = [pickle.loads(b) for b in blobs]
    failures: List[BaseException] = []

    def run(k: int) -> None:
        try:
            for j in range(60):
                n = (j * 5 + k) % len(blobs)
                assert loads(blobs[n]) == expected[n]
        except BaseException as e:  # the test thread reports it
            failures.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    assert 0 < len(pickling._TEMPLATES) <= 4


def _dense(k: int, ints: int) -> bytes:
    """A record whose config holds ``ints`` small ints (a hole every 2 bytes) and a list of
    ``k + 1`` None: as many MEMOIZE bytes for every ``k``, another template each."""
    return pickle.dumps(record(config={"a": [i % 100 for i in range(ints)], "z": [None] * (k + 1)}))


def test_templates_hold_a_bounded_number_of_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each step (a chunk and its hole) costs about 90 bytes: 32 templates of 41 KB pickles of
    # small ints held 46 MB. A store of records written by an attacker fills them.
    from tango_stepinfo import pickling

    monkeypatch.setattr(pickling, "_TEMPLATES", [])
    monkeypatch.setattr(pickling, "_SEEN", set())
    monkeypatch.setattr(pickling, "_FAILED", set())
    for k in range(40):
        data = _dense(k, 3000)
        assert loads(data) == loads(data) == pickle.loads(data)
    held = [len(steps) for _, steps, _, _ in pickling._TEMPLATES]
    assert len(held) > 4 and sum(held) <= 1 << 15
    # a shape of more steps than a quarter of them is not learned (nor tried at every load)
    data = _dense(0, 10_000)
    for _ in range(3):
        assert loads(data) == pickle.loads(data)
    assert all(len(steps) <= 1 << 13 for _, steps, _, _ in pickling._TEMPLATES)


def test_a_miss_walks_the_input_about_once_whatever_the_templates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 32 templates that share a long start and part at the end: a pickle of that start missed
    # each of them at its end, walking 32 times over the input (0.13 s for 63 KB against 6.5 ms
    # for its scan, 3.11). Counted here as steps: each compares one chunk.
    from tango_stepinfo import pickling

    monkeypatch.setattr(pickling, "_TEMPLATES", [])
    monkeypatch.setattr(pickling, "_SEEN", set())
    monkeypatch.setattr(pickling, "_FAILED", set())
    for k in range(32):
        data = _dense(k, 300)
        loads(data)
        loads(data)
    assert len(pickling._TEMPLATES) == 32
    _no_more_learning(monkeypatch)
    compared = []

    class Counted(bytes):
        def startswith(self, *args: Any) -> bool:
            compared.append(1)
            return super().startswith(*args)

    probe = _dense(40, 300)
    assert pickling._matched(Counted(probe), probe.count(0x94)) == -1
    assert len(compared) <= len(probe) // 2  # (32 walks of 430 steps before)
    assert (
        _outcome(probe) == _without_templates(probe, monkeypatch) == ("loaded", pickle.loads(probe))
    )


def test_a_shape_that_gives_no_template_is_not_learned_at_every_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a list referenced twice in config: a longer string would count twice, so no template;
    # trying to learn it again at every load made each load 2.7 times as long (3.11)
    from tango_stepinfo import pickling

    shared = ["a string inside a list that is fetched again"]
    data = pickle.dumps(record(config={"a": shared, "b": shared}))
    monkeypatch.setattr(pickling, "_TEMPLATES", [])
    monkeypatch.setattr(pickling, "_SEEN", set())
    monkeypatch.setattr(pickling, "_FAILED", set())
    tries = []

    def learn(*args: Any) -> Any:
        tries.append(1)
        return _LEARN(*args)

    monkeypatch.setattr(pickling, "_learn", learn)
    for _ in range(64):
        assert loads(data) == pickle.loads(data)
    assert pickling._TEMPLATES == [] and 1 <= len(tries) <= 2
    # the same list twice, as two lists: a shape of its own, learned as before
    other = pickle.dumps(record(config={"a": list(shared), "b": shared}))
    assert loads(other) == loads(other) == pickle.loads(other)
    assert len(pickling._TEMPLATES) == 1


_LEARN = pickling_module._learn


def test_a_set_field_given_by_the_dict_opcode_or_a_made_tuple_may_only_hold_strings() -> None:
    # MARK, key, value ..., DICT: the scan checked set fields in SETITEM(S) only, so 30,000
    # ints that all hash alike reached __setstate__, whose set of them took 6 s (359 KB)
    def text(value: str) -> bytes:
        return b"\x8c" + bytes([len(value)]) + value.encode()

    def long(value: int) -> bytes:
        return b"\x8a" + bytes([len(pickle.encode_long(value))]) + pickle.encode_long(value)

    ints = b"".join(long(k * (2**61 - 1)) for k in range(1, 50))  # (each hash is 0)
    start = b"\x80\x04" + text("tango_stepinfo.step_info") + text("StepInfo") + b"\x93)\x81("
    for key, value in (("dependencies", b"](" + ints + b"e"), ("dependencies", b"K\x01\x85")):
        data = start + text(key) + value + b"db."
        with pytest.raises(CorruptPickleError, match="set field may only hold strings"):
            loads(data)
    # nor in the dict of a (dict, slots) state that a call to tuple made (its items unseen)
    state = b"}" + text("dependencies") + b"](" + ints + b"es"  # SETITEM: checked
    made = text("builtins") + text("tuple") + b"\x93](" + state + b"Ne\x85R"
    with pytest.raises(CorruptPickleError, match="state may only be a dict or"):
        loads(start[:-1] + made + b"b.")
    with pytest.raises(CorruptPickleError, match="set field may only hold strings"):
        loads(start[:-1] + state + b"N\x86b.")  # (dict, slots) as pickle writes it
    # strings, or another key, load as before (and are refused afterwards as incomplete)
    for key, value in (("dependencies", b"]" + text("a") + b"a"), ("config", b"](" + ints + b"e")):
        with pytest.raises(StepInfoDecodeError):
            loads(start + text(key) + value + b"db.")


def _learned_bytes(data: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Learn the pickle ``data`` (it loads) as the only template."""
    from tango_stepinfo import pickling

    monkeypatch.setattr(pickling, "_missed", _MISSED)
    monkeypatch.setattr(pickling, "_TEMPLATES", [])
    monkeypatch.setattr(pickling, "_SEEN", set())
    monkeypatch.setattr(pickling, "_FAILED", set())
    assert loads(data) == loads(data)
    assert len(pickling._TEMPLATES) == 1
    _no_more_learning(monkeypatch)


@pytest.mark.parametrize(("value", "holds_strings"), [(b"]K\x01a", False), (b"]\x8c\x01aa", True)])
def test_a_key_learned_as_free_text_cannot_become_a_set_field(
    value: bytes, holds_strings: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An attacker stores a record whose state has a key no field has (dropped on loading), then
    # the same bytes with that key renamed to a set field: the scan reads the key when its value
    # may hold something else than strings, so the template keeps it; else the key is a hole,
    # and any text in it is what the scan accepts too.
    state = b")\x81\x94}\x94("
    base = pickle.dumps(record())
    at = base.index(state) + len(state)
    learned = base[:at] + b"\x8c\x0cxdependencie" + value + base[at:]
    _learned_bytes(learned, monkeypatch)
    attack = learned.replace(b"\x8c\x0cxdependencie", b"\x8c\x0cdependencies", 1)
    assert _agrees(attack) == holds_strings
    if holds_strings:
        assert _outcome(attack) == _without_templates(attack, monkeypatch)
        assert loads(attack) == pickle.loads(attack)
    else:
        with pytest.raises(CorruptPickleError, match="set field may only hold strings"):
            loads(attack)


def test_a_string_memoized_again_and_fetched_gives_no_template(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # DUP then MEMOIZE: the string is in the memo at an index the holes' bookkeeping does not
    # tie to it; fetched again, its size counts more than once, which the rescan of learning
    # sees: no template, so its text can never be changed unscanned
    import pickletools

    from tango_stepinfo import pickling

    base = pickle.dumps(record())
    index = sum(op.name == "MEMOIZE" for op, _, _ in pickletools.genops(base))
    extra = b"\x8c\x0bxfree_text2" + b"2\x94" + b"00" + b"h" + bytes([index]) + b"0"
    data = base[:-1] + extra + b"."
    monkeypatch.setattr(pickling, "_TEMPLATES", [])
    monkeypatch.setattr(pickling, "_SEEN", set())
    monkeypatch.setattr(pickling, "_FAILED", set())
    for _ in range(3):
        assert loads(data) == pickle.loads(data)
    assert pickling._TEMPLATES == []


def test_a_frame_that_ends_inside_an_operand_hides_no_opcode_from_the_scan() -> None:
    # From a file, the C unpickler read a FRAME's bytes at once, then an operand that went past
    # the frame's end from the bytes after the frame, skipping the rest of the frame; the scan
    # reads on. Here the scan sees pytz.utc made and dropped, then a record given a state; the C
    # unpickler skipped the drop and the record (44 bytes) and gave pytz.utc that state (BUILD),
    # for the whole process, before the result was refused.
    def text(value: str) -> bytes:
        return b"\x8c" + bytes([len(value)]) + value.encode()

    utc = text("pytz") + text("_UTC") + b"\x93)R"
    hidden = b"00" + text("tango_stepinfo.step_info") + text("StepInfo") + b"\x93)\x81" + text("x")
    head = b"\x80\x04\x95" + b"\0" * 8 + utc
    frame_end = len(head) + 2 + len(hidden)  # inside the 100 bytes of a LONG1
    data = head + b"\x8a\x64" + b"A" * 100 + hidden + b"0}" + text("zone") + text("EVIL") + b"sb."
    data = data[:3] + (frame_end - 11).to_bytes(8, "little") + data[11:]
    assert pickle_module_scan(data) == len(data)
    try:
        with pytest.raises(StepInfoDecodeError, match="unique_id: required field is missing"):
            loads(data)  # read as the scan read it: a record with no field
        assert pytz.utc.zone == "UTC" and "zone" not in vars(pytz.utc)
    finally:
        vars(pytz.utc).pop("zone", None)
    # a record whose FRAME is too short by the bytes inserted after it loads as without frames
    base = pickle.dumps(record())
    at = base.index(b")\x81\x94}\x94(") + 6
    longer = base[:at] + text("not_a_field") + b"]K\x01a" + base[at:]
    assert loads(longer) == pickle.loads(longer[:2] + longer[11:]) == pickle.loads(base)


def pickle_module_scan(data: bytes) -> int:
    return pickling_module._scan(data)
