"""JSON and pickle codecs: lossless, deterministic, Tango-compatible, strict on bad input."""

from __future__ import annotations

import collections
import copy
import dataclasses
import datetime as dt
import enum
import json
import multiprocessing
import operator
import pickle
import re
import sys
import traceback
import typing
import zoneinfo
from pathlib import Path
from typing import Any, Dict, List, Optional, Set

import cloudpickle
import dill
import pytest
import pytz
from hypothesis import given
from hypothesis import strategies as st

from tango_stepinfo import (
    EnvironmentMetadata,
    GitMetadata,
    PlatformMetadata,
    StepInfo,
    StepInfoDecodeError,
    StepInfoEncodeError,
    TangoMetadata,
    UnsafePickleError,
    _limits,
    _plans,
    _probe,
    loads,
)
from tango_stepinfo._errors import Bad
from tango_stepinfo._record import Record
from tango_stepinfo._times import parse_time

from .conftest import TANGO_DATA, since_none, with_since_none
from .strategies import (
    DELETE,
    EqualsAll,
    StrLike,
    changed,
    edge_json_objects,
    full_record,
    mutated_records,
    naive_times,
    old_pickle,
    package_list_runs,
    step_infos,
)

UTC = dt.timezone.utc
TANGO_JSON = sorted((TANGO_DATA / "json").glob("*.json"))
BASE_CASES = ["incomplete", "running", "completed", "failed", "uncacheable"]


def roundtrip(info: StepInfo) -> StepInfo:
    return StepInfo.from_json_dict(json.loads(json.dumps(info.to_json_dict())))


# --- lossless and deterministic ----------------------------------------------------------------


@given(step_infos())
def test_json_round_trip_is_lossless(info: StepInfo) -> None:
    back = roundtrip(info)
    assert back == info
    for name in ("start_time", "end_time"):
        value = getattr(back, name)
        if value is not None:
            assert value.utcoffset() == dt.timedelta(0)
            assert value == getattr(info, name)


@given(step_infos(times=naive_times))
def test_naive_times_are_utc_and_come_back_aware(info: StepInfo) -> None:
    back = roundtrip(info)
    for name in ("start_time", "end_time"):
        value = getattr(info, name)
        if value is not None:
            assert getattr(back, name) == value.replace(tzinfo=UTC)


def keys_sorted_everywhere(value: Any) -> bool:
    if isinstance(value, dict):
        return list(value) == sorted(value) and all(map(keys_sorted_everywhere, value.values()))
    if isinstance(value, list):
        return all(map(keys_sorted_everywhere, value))
    return True


@given(step_infos())
def test_json_output_is_json_safe_sorted_and_deterministic(info: StepInfo) -> None:
    out = info.to_json_dict()
    assert keys_sorted_everywhere(out)
    assert out["dependencies"] == sorted(info.dependencies)
    # Same record built again (sets filled in another order): same bytes.
    again = copy.deepcopy(info)
    again.dependencies = set(reversed(sorted(info.dependencies)))
    assert json.dumps(again.to_json_dict()) == json.dumps(out)
    # Only JSON types inside.
    assert json.loads(json.dumps(out)) == out


def test_json_format_of_a_full_record() -> None:
    out = full_record(n_packages=2).to_json_dict()
    assert out["start_time"] == "2024-03-10T06:59:58.123456+00:00"
    assert out["end_time"] == "2024-03-10T07:42:03.654321+00:00"
    assert out["dependencies"] == ["DataStep-111", "TokenizeStep-222"]
    assert out["environment"]["packages"] == [["package-00", "1.0.0"], ["package-01", "1.1.0"]]
    assert out["environment"]["executable"] == "/opt/conda/bin/python"
    assert out["environment"]["git"] == {
        "branch": "main",
        "commit": "3f9c2d1e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e",
        "diff": None,
        "dirty": False,
        "remote": "https://github.com/example/project.git",
    }
    assert list(out) == sorted(out)


def test_non_utc_offsets_are_written_as_the_same_instant_in_utc() -> None:
    info = full_record()
    info.start_time = dt.datetime(2024, 3, 10, 1, 59, 58, 5, dt.timezone(dt.timedelta(hours=-5)))
    assert info.to_json_dict()["start_time"] == "2024-03-10T06:59:58.000005+00:00"
    assert roundtrip(info).start_time == info.start_time


def test_config_values_without_json_form_are_converted_deterministically() -> None:
    info = full_record()
    info.config = {"b": ("x", 1), "a": {"z", "y"}, "p": Path("/a/b"), "t": info.start_time}
    out = info.to_json_dict()["config"]
    assert out == {
        "a": ["y", "z"],
        "b": ["x", 1],
        "p": "/a/b",
        "t": "2024-03-10T06:59:58.123456+00:00",
    }
    assert list(out) == ["a", "b", "p", "t"]


def _at(data: Any, parts: List[str]) -> Any:
    """The value at an error's path (``parts`` innermost first), or DELETE where a key is
    missing at the end."""
    target = data
    for part in reversed(parts):
        if part.startswith("[") and isinstance(target, list):
            target = target[int(part[1:-1])]
        elif part in target:
            target = target[part]
        else:
            return DELETE
    return target


@given(mutated_records())
def test_decode_errors_point_at_the_bad_value_in_the_input(data: Any) -> None:
    # One generated decoder per class is the only path: its errors must still say where.
    try:
        _plans.plan(StepInfo).decode(data)
    except Bad as e:
        found = _at(data, e.parts)
        if found is DELETE:
            assert e.problem == "required field is missing"
        else:
            assert "got" in e.problem or "cannot" in e.problem or "range" in e.problem
        with pytest.raises(StepInfoDecodeError) as raised:
            StepInfo.from_json_dict(data)
        assert (raised.value.path, raised.value.problem) == (e.path(), e.problem)


@given(step_infos(), st.sampled_from(["step_name", "platform", "dependencies", "config"]))
def test_encode_errors_name_any_bad_field(info: StepInfo, name: str) -> None:
    setattr(info, name, {1j: 2} if name == "config" else 5)
    with pytest.raises(StepInfoEncodeError) as raised:
        info.to_json_dict()
    assert raised.value.path == name or raised.value.path.startswith(name)


def test_generated_code_is_in_linecache_for_tracebacks() -> None:
    import linecache

    for mode in ("native", "tango"):
        plan = _plans.plan(StepInfo, mode)
        for function in (plan.encode, plan.decode):
            filename = function.__code__.co_filename
            assert linecache.getline(filename, 1).startswith(f"def {function.__name__}(")
    info = full_record()
    info.step_name = 5  # type: ignore[assignment]
    with pytest.raises(Bad) as raised:
        _plans.plan(StepInfo).encode(info)
    lines = "".join(traceback.format_tb(raised.value.__traceback__)).splitlines()
    at = [i for i, line in enumerate(lines) if "<tango_stepinfo encode" in line]
    assert at and all(lines[i + 1].strip() and "File" not in lines[i + 1] for i in at)


# --- reading Tango's files, writing Tango's format ---------------------------------------------


def test_tango_fixtures_are_present() -> None:
    names = {p.stem for p in TANGO_JSON}
    assert set(BASE_CASES) <= names


@pytest.mark.parametrize("path", TANGO_JSON, ids=lambda p: p.stem)
def test_reads_tango_json(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    info = StepInfo.from_json_dict(data)
    assert info.unique_id == data["unique_id"]
    assert info.dependencies == set(data["dependencies"])
    assert isinstance(info.environment.executable, Path)
    assert str(info.environment.executable) == data["environment"]["executable"]
    if data["start_time"] is not None:
        assert info.start_time == dt.datetime.fromisoformat(data["start_time"]).replace(tzinfo=UTC)
        assert info.start_time is not None and info.start_time.tzinfo is not None
    packages = data["environment"]["packages"]
    if packages is not None:
        assert info.environment.packages == [tuple(p) for p in packages]
    git = data["environment"]["git"]
    if git is not None:
        assert info.environment.git == GitMetadata(git["commit"], git["remote"])
    assert info.config == data["config"]


@pytest.mark.parametrize("path", TANGO_JSON, ids=lambda p: p.stem)
def test_tango_compat_writer_reproduces_tango_files(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    out = StepInfo.from_json_dict(data).to_json_dict(tango_compat=True)
    expected = copy.deepcopy(data)
    expected["dependencies"] = sorted(expected["dependencies"])
    assert out == expected
    # Byte for byte as Tango's json.dumps(indent=2) output, once the set is sorted.
    assert json.dumps(out, indent=2) == json.dumps(expected, indent=2, sort_keys=True)


def test_tango_compat_drops_our_fields_and_microseconds() -> None:
    out = full_record().to_json_dict(tango_compat=True)
    assert out["start_time"] == "2024-03-10T06:59:58"
    assert out["environment"]["git"] == {
        "commit": "3f9c2d1e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e",
        "remote": "https://github.com/example/project.git",
    }


def test_unknown_keys_are_ignored() -> None:
    data = full_record().to_json_dict()
    data["added_in_v9"] = {"x": 1}
    data["environment"]["git"]["signed"] = True
    data["platform"]["gpu"] = "H100"
    assert StepInfo.from_json_dict(data) == full_record()


def test_from_json_dict_never_changes_its_input_and_shares_nothing() -> None:
    data = full_record().to_json_dict()
    data["config"]["deep"] = {"list": [1, {"x": [2]}]}
    before = copy.deepcopy(data)
    info = StepInfo.from_json_dict(data)
    assert data == before
    assert info.config is not None
    info.config["deep"]["list"][1]["x"].append(3)
    info.config["new"] = 1
    assert info.metadata is not None
    info.metadata["owner"] = "changed"
    assert info.environment.packages is not None
    info.environment.packages.append(("evil", "1"))
    assert data == before


@pytest.mark.parametrize("how", ["json", "pickle"])
def test_decoded_records_share_equal_package_rows_but_not_their_lists(how: str) -> None:
    info = full_record(n_packages=5)

    def decode() -> StepInfo:
        if how == "json":
            return StepInfo.from_json_dict(json.loads(json.dumps(info.to_json_dict())))
        back = pickle.loads(pickle.dumps(info))
        assert isinstance(back, StepInfo)
        return back

    one, two = decode(), decode()
    a, b = one.environment.packages, two.environment.packages
    assert a is not None and b is not None
    assert a == b == info.environment.packages
    assert all(x is y for x, y in zip(a, b))  # the rows (and so their strings) are shared
    assert all(type(row) is tuple and list(map(type, row)) == [str, str] for row in a)
    assert a is not b
    a.append(("evil", "1"))
    a[0] = ("changed", "2")
    assert b == info.environment.packages
    assert decode().environment.packages == info.environment.packages


def test_the_shared_package_rows_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from tango_stepinfo import _kinds

    monkeypatch.setattr(_kinds, "_ROWS", {})
    monkeypatch.setattr(_kinds, "_ROWS_MAX", 10)
    data = full_record(n_packages=3).to_json_dict()
    for i in range(25):
        data["environment"]["packages"] = [[f"p{i}-{j}", "1.0"] for j in range(3)]
        back = StepInfo.from_json_dict(data).environment.packages
        assert back == [(f"p{i}-{j}", "1.0") for j in range(3)]
        assert 0 < len(_kinds._ROWS) <= 10


def _package_problem(rows: Any) -> Optional[str]:
    """Where and why plain row-by-row decoding refuses ``rows`` (``None``: it takes them)."""
    for i, row in enumerate(rows):
        if type(row) not in (list, tuple) or len(row) != 2:
            return f"environment.packages[{i}]"
        for j, item in enumerate(row):
            if type(item) is not str:
                return f"environment.packages[{i}][{j}]"
    return None


def _decode_packages(data: Dict[str, Any], rows: Any) -> Any:
    try:
        return StepInfo.from_json_dict(changed(data, "environment.packages", rows))
    except StepInfoDecodeError as e:
        return e


# The whole-list check (marshal) is never used from 3.12, where marshal runs a class's own
# __buffer__ (PEP 688): it is tested where it may be chosen.
_BOTH_WAYS = [True, False] if sys.version_info < (3, 12) else [False]


@pytest.fixture(params=_BOTH_WAYS, ids=["whole-list", "row-by-row"][-len(_BOTH_WAYS) :])
def whole_list(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Both ways package lists from JSON are checked (``_kinds._WHOLE_LIST``, which the Python
    version picks), where both may be used: each must give the same rows and the same errors."""
    from tango_stepinfo import _kinds

    monkeypatch.setattr(_kinds, "_WHOLE_LIST", request.param)
    return typing.cast(bool, request.param)


def _forget_rows() -> Any:
    """Empty the decoder's kept package rows; returns what to put back (:func:`_keep_rows`)."""
    from tango_stepinfo import _kinds

    kept = (_kinds._ROWS, _kinds._last_rows, _kinds._last_json)
    _kinds._ROWS, _kinds._last_rows, _kinds._last_json = {}, [], ()
    return kept


def _keep_rows(kept: Any) -> None:
    from tango_stepinfo import _kinds

    _kinds._ROWS, _kinds._last_rows, _kinds._last_json = kept


@pytest.mark.parametrize("whole", [True, False], ids=["whole-list", "row-by-row"])
@given(runs=package_list_runs)
def test_package_lists_decode_as_row_by_row_whatever_came_before(
    whole: bool, runs: List[Any]
) -> None:
    # Each list is decoded after the ones before it (the decoder keeps the last list's rows, its
    # marshal bytes and every row by name), then with nothing kept: both give what plain
    # row-by-row decoding gives, whichever way the lists are checked (_kinds._WHOLE_LIST).
    from tango_stepinfo import _kinds

    default, _kinds._WHOLE_LIST = _kinds._WHOLE_LIST, whole
    try:
        _check_package_runs(full_record(n_packages=0).to_json_dict(), runs)
    finally:
        _kinds._WHOLE_LIST = default


def _check_package_runs(data: Dict[str, Any], runs: List[Any]) -> None:
    # The decoder starts empty, so that what a run shares comes from the run itself.
    start = _forget_rows()
    try:
        _check_runs_from_empty(data, runs)
    finally:
        _keep_rows(start)


def _check_runs_from_empty(data: Dict[str, Any], runs: List[Any]) -> None:
    before: Optional[List[Any]] = None
    for rows in runs:
        warm = _decode_packages(data, rows)
        kept = _forget_rows()
        try:
            cold = _decode_packages(data, rows)
        finally:
            _keep_rows(kept)
        problem = _package_problem(rows)
        if problem is not None:
            assert isinstance(warm, StepInfoDecodeError) and isinstance(cold, StepInfoDecodeError)
            assert str(warm) == str(cold)
            assert str(warm).startswith(problem + ": ")
            before = None
            continue
        assert isinstance(warm, StepInfo) and isinstance(cold, StepInfo)
        got = warm.environment.packages
        assert got == cold.environment.packages == [tuple(row) for row in rows]
        assert got is not None and got is not before
        assert all(type(row) is tuple and list(map(type, row)) == [str, str] for row in got)
        if before is not None and before == got:
            assert all(map(operator.is_, before, got))  # an equal list: its rows shared
        before = got


def test_an_equal_package_list_decodes_to_independent_lists_of_shared_rows(
    whole_list: bool,
) -> None:
    data = full_record(n_packages=4).to_json_dict()
    rows = data["environment"]["packages"]
    one = StepInfo.from_json_dict(json.loads(json.dumps(data))).environment.packages
    two = StepInfo.from_json_dict(json.loads(json.dumps(data))).environment.packages
    assert one is not None and two is not None
    assert one == two == [tuple(row) for row in rows] and one is not two
    assert all(x is y for x, y in zip(one, two))
    one[0] = ("changed", "1")
    # One row differs (a package upgraded): the others stay shared, the new one is new.
    other = changed(data, "environment.packages", [*rows[:2], ["package-02", "9"], rows[3]])
    three = StepInfo.from_json_dict(other).environment.packages
    assert three is not None
    assert three == [*map(tuple, rows[:2]), ("package-02", "9"), tuple(rows[3])]
    assert [x is y for x, y in zip(two, three)] == [True, True, False, True]
    # Another length, rows in another order: shared by name.
    four = StepInfo.from_json_dict(changed(data, "environment.packages", rows[::-2]))
    assert four.environment.packages == [tuple(rows[3]), tuple(rows[1])]
    assert four.environment.packages[1] is two[1]


def test_package_lists_of_a_few_environments_in_turn_keep_sharing_rows(whole_list: bool) -> None:
    # A store holding records of two environments, read in turn: each list's rows stay shared
    # (row by row, the row that differs is made anew each time: its name's row is the other's).
    data = json.loads(json.dumps(full_record(n_packages=5).to_json_dict()))
    other = changed(data, "environment.packages.2", ["package-02", "9.9"])
    got = [
        StepInfo.from_json_dict(copy.deepcopy(d)).environment.packages
        for d in (data, other, data, other, data)
    ]
    assert got[0] == got[2] == got[4] == [tuple(row) for row in data["environment"]["packages"]]
    assert got[1] == got[3] and got[1] != got[0]
    for a, b in [(got[0], got[2]), (got[2], got[4]), (got[1], got[3])]:
        assert a is not b
        assert [x is y for x, y in zip(a, b)] == [True, True, whole_list, True, True]


def test_a_package_list_changed_while_decoded_does_not_change_the_kept_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Another thread changes the caller's list just after its marshal bytes were taken: the rows
    # kept beside those bytes are still the rows they stand for, so a later list equal to the
    # first decodes to its own versions.
    import marshal

    from tango_stepinfo import _kinds

    monkeypatch.setattr(_kinds, "_WHOLE_LIST", True)
    text = json.dumps(full_record(n_packages=3).to_json_dict())
    rows = [tuple(row) for row in json.loads(text)["environment"]["packages"]]
    kept = _forget_rows()
    try:

        class Meddling:
            @staticmethod
            def dumps(value: Any) -> bytes:
                blob = marshal.dumps(value)
                value[1][1] = "6.6.6"
                return blob

            loads = staticmethod(marshal.loads)

        monkeypatch.setattr(_kinds, "marshal", Meddling)
        StepInfo.from_json_dict(json.loads(text))
        monkeypatch.setattr(_kinds, "marshal", marshal)
        assert StepInfo.from_json_dict(json.loads(text)).environment.packages == rows
    finally:
        _keep_rows(kept)


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (["package-01", StrLike("1.1.0")], r"\[1\]\[1\]: expected a string, got '1.1.0'"),
        ([StrLike("package-01"), "1.1.0"], r"\[1\]\[0\]: expected a string, got 'package-01'"),
        (["package-01", EqualsAll()], r"\[1\]\[1\]: expected a string, got a value of type"),
        (["package-01", "1.1.0", "x"], r"\[1\]: expected a list of 2 items, got 3"),
    ],
)
def test_a_package_row_equal_to_a_shared_one_is_still_checked(
    row: Any, problem: str, whole_list: bool
) -> None:
    # The same list decoded just before: its rows are kept, and this one compares equal to them.
    data = full_record(n_packages=3).to_json_dict()
    StepInfo.from_json_dict(data)
    rows = data["environment"]["packages"]
    bad = changed(data, "environment.packages", [rows[0], row, rows[2]])
    with pytest.raises(StepInfoDecodeError, match=r"^environment\.packages" + problem):
        StepInfo.from_json_dict(bad)


class _Exports:
    """An object that exports a buffer (3.12+: ``__buffer__``, PEP 688; before, a plain method
    nothing calls), counting the calls: decoding must never call it."""

    calls = 0

    def __buffer__(self, flags: int) -> memoryview:
        _Exports.calls += 1
        return memoryview(b"1.1.0")


@pytest.mark.parametrize("warm", [True, False], ids=["warm", "cold"])
@pytest.mark.parametrize(
    ("item", "shown"),
    [
        (lambda: StrLike("1.1.0"), "'1.1.0'"),
        (lambda: bytearray(b"1.1.0"), "a value of type 'bytearray'"),
        (lambda: memoryview(b"1.1.0"), "a value of type 'memoryview'"),
        (_Exports, "a value of type '_Exports'"),
        (EqualsAll, "a value of type 'EqualsAll'"),
    ],
)
def test_a_package_list_equal_to_the_last_one_but_for_one_item_is_refused(
    item: Any, shown: str, warm: bool, whole_list: bool
) -> None:
    # Fresh lists as json.loads makes them, the last one decoded (warm) or nothing kept (cold):
    # an item that is not a plain str is refused the same way by either check, even when it
    # holds or compares equal to the same text, and no code of it runs.
    data = json.loads(json.dumps(full_record(n_packages=3).to_json_dict()))
    kept = _forget_rows()
    try:
        if warm:
            StepInfo.from_json_dict(copy.deepcopy(data))
        bad = copy.deepcopy(data)
        bad["environment"]["packages"][1][1] = item()
        _Exports.calls = 0
        with pytest.raises(StepInfoDecodeError) as e:
            StepInfo.from_json_dict(bad)
        assert _Exports.calls == 0
        assert str(e.value) == f"environment.packages[1][1]: expected a string, got {shown}"
        # The plain list after it still decodes to its rows.
        back = StepInfo.from_json_dict(copy.deepcopy(data)).environment.packages
        assert back == [tuple(row) for row in data["environment"]["packages"]]
    finally:
        _keep_rows(kept)


def test_decoding_never_probes_the_reader(probe_calls: List[str]) -> None:
    data = full_record().to_json_dict()
    StepInfo.from_json_dict(data)
    for path in TANGO_JSON:
        StepInfo.from_json_dict(json.loads(path.read_text(encoding="utf-8")))
    assert probe_calls == []


@pytest.mark.parametrize("missing", ["platform", "environment"])
def test_missing_probed_field_is_an_error_not_a_probe(missing: str, probe_calls: List[str]) -> None:
    data = full_record().to_json_dict()
    del data[missing]
    with pytest.raises(StepInfoDecodeError, match=rf"^{missing}: required field is missing$"):
        StepInfo.from_json_dict(data)
    assert probe_calls == []


def test_missing_plain_defaults_take_them() -> None:
    data = full_record().to_json_dict()
    for name in ("step_name", "version", "error", "config", "metadata", "result_location"):
        del data[name]
    del data["environment"]["git"]["branch"]
    del data["environment"]["tango"]["library"]
    info = StepInfo.from_json_dict(data)
    assert (info.step_name, info.version, info.error, info.config) == (None, None, None, None)
    assert info.environment.git is not None and info.environment.git.branch is None
    assert info.environment.tango == TangoMetadata(data["environment"]["tango"]["version"], None)


def test_missing_tango_version_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # Its default is a probe (the installed ai2-tango), which decoding never runs.
    data = full_record().to_json_dict()
    del data["environment"]["tango"]["version"]
    calls: List[bool] = []
    monkeypatch.setattr(_probe, "tango_version", lambda rescan=True: calls.append(rescan))
    with pytest.raises(StepInfoDecodeError, match=r"^environment\.tango\.version: required"):
        StepInfo.from_json_dict(data)
    assert calls == []


# --- errors ------------------------------------------------------------------------------------


def mutated(path: str, value: Any) -> Dict[str, Any]:
    return changed(full_record(n_packages=3).to_json_dict(), path, value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, "expected an object, got null"),
        ([1, 2], "expected an object, got a list"),
        ("record", "expected an object, got 'record'"),
        (mutated("unique_id", DELETE), "unique_id: required field is missing"),
        (mutated("cacheable", DELETE), "cacheable: required field is missing"),
        (mutated("environment.python", DELETE), "environment.python: required field is missing"),
        (
            mutated("environment.git.commit", 5),
            "environment.git.commit: expected a string or null, got 5",
        ),
        (mutated("unique_id", None), "unique_id: expected a string, got null"),
        (mutated("cacheable", "yes"), "cacheable: expected a boolean, got 'yes'"),
        (
            mutated("platform.cpu_count", True),
            "platform.cpu_count: expected an integer or null, got true",
        ),
        (
            mutated("platform.cpu_count", 2.5),
            "platform.cpu_count: expected an integer or null, got 2.5",
        ),
        (mutated("dependencies", "a"), "dependencies: expected a list, got 'a'"),
        (mutated("dependencies", ["a", 1]), "dependencies[1]: expected a string, got 1"),
        (
            mutated("environment.packages", [["a", "1"], ["b"]]),
            "environment.packages[1]: expected a list of 2 items, got 1",
        ),
        (
            mutated("environment.packages", [["a", "1"], ["b", 2]]),
            "environment.packages[1][1]: expected a string, got 2",
        ),
        (
            mutated("environment.packages", {"a": "1"}),
            "environment.packages: expected a list or null, got an object",
        ),
        (
            mutated("environment.git", "abc"),
            "environment.git: expected an object or null, got 'abc'",
        ),
        (
            mutated("environment.executable", 3),
            "environment.executable: expected a path string, got 3",
        ),
        (mutated("platform", 5), "platform: expected an object or null, got 5"),
        (mutated("config", [1]), "config: expected an object or null, got a list"),
        (
            mutated("start_time", "yesterday"),
            "start_time: expected an ISO 8601 time or null, got 'yesterday'",
        ),
        (
            mutated("start_time", "2024-02-30T00:00:00"),
            "start_time: expected an ISO 8601 time or null, got '2024-02-30T00:00:00'",
        ),
        (
            mutated("end_time", 1700000000),
            "end_time: expected an ISO 8601 time or null, got 1700000000",
        ),
        (
            mutated("environment.tango.version", None),
            "environment.tango.version: expected a string, got null",
        ),
    ],
)
def test_decode_errors_name_the_field(data: Any, message: str) -> None:
    with pytest.raises(StepInfoDecodeError) as excinfo:
        StepInfo.from_json_dict(data)
    assert str(excinfo.value).startswith(message)
    assert isinstance(excinfo.value, ValueError)


def test_decode_error_inside_free_form_config() -> None:
    data = full_record().to_json_dict()
    data["config"]["x"] = [1, {"y": {1, 2}}]
    with pytest.raises(StepInfoDecodeError, match=r"^config\.x\[1\]\.y: expected a JSON value"):
        StepInfo.from_json_dict(data)


def test_decode_error_carries_path_and_problem() -> None:
    with pytest.raises(StepInfoDecodeError) as excinfo:
        StepInfo.from_json_dict(mutated("environment.git.commit", 5))
    assert excinfo.value.path == "environment.git.commit"
    assert excinfo.value.problem == "expected a string or null, got 5"
    assert pickle.loads(pickle.dumps(excinfo.value)).args == excinfo.value.args


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"step_name": 5}, "step_name: expected a string or null, got 5"),
        ({"dependencies": ["a"]}, "dependencies: expected a set, got a list"),
        ({"environment": 5}, "environment: expected an EnvironmentMetadata or null, got 5"),
        (
            {"platform": PlatformMetadata("os", "2", "u", "h")},
            "platform.cpu_count: expected an integer or null, got '2'",
        ),
        ({"config": {"f": object()}}, "config.f: a value of type 'object' has no JSON form"),
        ({"config": {1: "x"}}, "config: object keys must be strings, got 1"),
        ({"start_time": "2024"}, "start_time: expected a datetime or null, got '2024'"),
    ],
)
def test_encode_errors_name_the_field(change: Dict[str, Any], message: str) -> None:
    info = full_record()
    for key, value in change.items():
        setattr(info, key, value)
    with pytest.raises(StepInfoEncodeError) as excinfo:
        info.to_json_dict()
    assert str(excinfo.value) == message
    assert isinstance(excinfo.value, TypeError)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-10T06:59:58", dt.datetime(2024, 3, 10, 6, 59, 58, tzinfo=UTC)),
        ("2024-03-10 06:59:58.5", dt.datetime(2024, 3, 10, 6, 59, 58, 500000, tzinfo=UTC)),
        ("2024-03-10T06:59:58.123456+00:00", dt.datetime(2024, 3, 10, 6, 59, 58, 123456, UTC)),
        ("2024-03-10T06:59:58Z", dt.datetime(2024, 3, 10, 6, 59, 58, tzinfo=UTC)),
        ("2024-03-10T06:59:58,123456+00:00", dt.datetime(2024, 3, 10, 6, 59, 58, 123456, UTC)),
        ("2024-03-10 06:59:58.123456+00:00", dt.datetime(2024, 3, 10, 6, 59, 58, 123456, UTC)),
        ("2024-03-10T01:59:58-05:00", dt.datetime(2024, 3, 10, 6, 59, 58, tzinfo=UTC)),
        ("2024-03-10T12:29:58+0530", dt.datetime(2024, 3, 10, 6, 59, 58, tzinfo=UTC)),
    ],
)
def test_parse_time(text: str, expected: dt.datetime) -> None:
    value = parse_time(text)
    assert value == expected
    assert value.tzinfo is pytz.utc  # as in the records Tango makes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # .NET's round-trip form ("o"): 7 digits
        ("2024-03-10T06:59:58.1234567Z", dt.datetime(2024, 3, 10, 6, 59, 58, 123456, UTC)),
        # Go's RFC3339Nano, Java's Instant: up to 9 digits (cut, not rounded, as Python 3.11 does)
        ("2024-03-10T06:59:58.999999999Z", dt.datetime(2024, 3, 10, 6, 59, 58, 999999, UTC)),
        ("2024-03-10t06:59:58z", dt.datetime(2024, 3, 10, 6, 59, 58, tzinfo=UTC)),  # RFC 3339
        # PostgreSQL's text form of a timestamptz: an offset of hours only
        ("2024-03-10 11:59:58.5+05", dt.datetime(2024, 3, 10, 6, 59, 58, 500000, UTC)),
        # a leap second: the last microsecond of its minute (a datetime has no second 60)
        ("2016-12-31T23:59:60Z", dt.datetime(2016, 12, 31, 23, 59, 59, 999999, UTC)),
        ("2017-01-01T05:29:60.5+05:30", dt.datetime(2016, 12, 31, 23, 59, 59, 999999, UTC)),
    ],
)
def test_parse_time_reads_what_other_tools_write(text: str, expected: dt.datetime) -> None:
    info = StepInfo.from_json_dict({**full_record().to_json_dict(), "start_time": text})
    assert info.start_time == expected
    assert info.start_time.tzinfo is pytz.utc
    assert StepInfo.from_json_dict(info.to_json_dict()) == info


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2024-03-10",
        "2024-03-10T06:59",
        "2024-13-01T00:00:00",
        "2024-03-10T06:59:58+24:00",
        "x",
        "2024-03-10T06:59:61",
        "2024-03-10T06:59:58.",
        "2024-03-10T06:59:58+5",
    ],
)
def test_parse_time_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


class _Text(str):
    """A str subclass: refused by a time field whether or not an equal string came before."""


def test_time_fields_answer_a_time_seen_last_as_a_new_one() -> None:
    info = full_record()
    first = dt.datetime(2024, 3, 10, 6, 59, 58, tzinfo=UTC)
    info.start_time = first
    assert info.to_json_dict()["start_time"] == "2024-03-10T06:59:58.000000+00:00"
    assert info.to_json_dict()["start_time"] == "2024-03-10T06:59:58.000000+00:00"
    assert info.to_json_dict(tango_compat=True)["start_time"] == "2024-03-10T06:59:58"
    # An equal instant in another zone, a naive time, a pytz time: each written for itself.
    info.start_time = dt.datetime(2024, 3, 10, 7, 59, 58, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert info.to_json_dict()["start_time"] == "2024-03-10T06:59:58.000000+00:00"
    info.start_time = dt.datetime(2024, 3, 10, 6, 59, 58, 7)
    assert info.to_json_dict()["start_time"] == "2024-03-10T06:59:58.000007+00:00"
    info.start_time = first.replace(microsecond=9, tzinfo=pytz.utc)
    assert info.to_json_dict()["start_time"] == "2024-03-10T06:59:58.000009+00:00"
    info.start_time = "not a time"  # type: ignore[assignment]
    with pytest.raises(StepInfoEncodeError, match="start_time: expected a datetime or null"):
        info.to_json_dict()

    data = full_record().to_json_dict()
    one, two = StepInfo.from_json_dict(data), StepInfo.from_json_dict(json.loads(json.dumps(data)))
    assert one.start_time == two.start_time and one.start_time is two.start_time  # immutable
    assert one.end_time is two.end_time and one.start_time != one.end_time
    text = data["start_time"]
    data["start_time"] = text.replace("2024", "2023", 1)
    assert StepInfo.from_json_dict(data).start_time == parse_time(data["start_time"])
    data["start_time"] = _Text(text)  # on a warm cache as on a cold one
    with pytest.raises(StepInfoDecodeError, match="start_time: expected an ISO 8601 time"):
        StepInfo.from_json_dict(data)


# --- pickle ------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_round_trip_every_protocol(protocol: int) -> None:
    info = full_record()
    back = pickle.loads(pickle.dumps(info, protocol=protocol))
    assert back == info
    assert type(back.environment.git) is GitMetadata


@given(step_infos(), st.integers(0, pickle.HIGHEST_PROTOCOL))
def test_pickle_round_trip_property(info: StepInfo, protocol: int) -> None:
    assert pickle.loads(pickle.dumps(info, protocol=protocol)) == info


def test_pickles_are_deterministic() -> None:
    a = full_record()
    b = full_record()
    b.dependencies = set(reversed(sorted(a.dependencies)))
    assert pickle.dumps(a, protocol=5) == pickle.dumps(b, protocol=5)


@pytest.mark.parametrize("module", [dill, cloudpickle], ids=["dill", "cloudpickle"])
def test_dill_and_cloudpickle(module: Any) -> None:
    info = full_record()
    assert module.loads(module.dumps(info)) == info
    assert pickle.loads(module.dumps(info)) == info


def _child_roundtrip(info: StepInfo) -> StepInfo:
    # Runs in a fresh (spawned) interpreter: unpickles, changes, pickles back.
    assert info.state.value == "completed"
    info.metadata = {"seen_by": "child"}
    return info


def test_pickle_across_processes_with_spawn() -> None:
    info = full_record()
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        back = pool.apply(_child_roundtrip, (info,))
    assert back.metadata == {"seen_by": "child"}
    back.metadata = info.metadata
    assert back == info


def test_unpickling_never_probes(probe_calls: List[str]) -> None:
    data = pickle.dumps(full_record())
    pickle.loads(data)
    assert probe_calls == []


@pytest.mark.parametrize("protocol", [2, 5])
def test_old_git_pickle_without_added_fields(protocol: int) -> None:
    data = old_pickle(GitMetadata, {"commit": "abc", "remote": "r"}, protocol)
    assert pickle.loads(data) == GitMetadata("abc", "r", None, None)


def test_unknown_attributes_in_a_pickle_are_dropped() -> None:
    data = old_pickle(GitMetadata, {"commit": "abc", "signed_by": "key", "branch": "b"})
    back = pickle.loads(data)
    assert back == GitMetadata("abc", None, "b", None)
    assert not hasattr(back, "signed_by")


def test_old_pickle_missing_plain_default_fields() -> None:
    info = full_record()
    state = dict(info.__dict__)
    state["dependencies"] = sorted(state["dependencies"])
    del state["result_location"], state["metadata"]
    back = pickle.loads(old_pickle(StepInfo, state))
    assert back.result_location is None and back.metadata is None
    info.result_location = info.metadata = None
    assert back == info
    assert isinstance(back.dependencies, set)
    assert pickle.loads(old_pickle(TangoMetadata, {})) == TangoMetadata(None, None)  # type: ignore[arg-type]


def test_old_pickle_missing_probed_fields_come_back_none(probe_calls: List[str]) -> None:
    env = full_record().environment
    state = {k: v for k, v in env.__dict__.items() if k not in ("packages", "git", "root")}
    back = pickle.loads(old_pickle(EnvironmentMetadata, state))
    assert (back.packages, back.git, back.root) == (None, None, None)
    assert back.python == env.python
    platform_back = pickle.loads(old_pickle(PlatformMetadata, {"user": "me"}))
    assert platform_back == PlatformMetadata(
        None,  # type: ignore[arg-type]
        None,
        "me",
        None,  # type: ignore[arg-type]
        **since_none(PlatformMetadata),
    )
    info = pickle.loads(old_pickle(StepInfo, {"unique_id": "u", "cacheable": True}))
    assert info.platform is None and info.environment is None
    assert probe_calls == []


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("record", [GitMetadata(), TangoMetadata(), GitMetadata(dirty=False)])
def test_records_with_only_none_fields_pickle_at_every_protocol(record: Any, protocol: int) -> None:
    back = pickle.loads(pickle.dumps(record, protocol=protocol))
    assert back == record
    assert set(back.__dict__) == set(record.__dict__)


def test_copy_and_deepcopy() -> None:
    info = full_record()
    assert copy.copy(info) == info
    deep = copy.deepcopy(info)
    assert deep == info
    assert deep.environment.packages is not info.environment.packages


def test_pickle_size_is_small() -> None:
    # Tango 1.3.2 pickles this shape of record (67 packages) in 2,441 bytes; ours must not be
    # larger. The benchmark measures both; this guards the shape of our state.
    info = full_record(n_packages=67)
    state = info.__getstate__()
    assert "error" not in state  # None fields are left out
    assert state["dependencies"] == sorted(info.dependencies)
    packages = info.environment.packages
    assert packages is not None
    flat = info.environment.__getstate__()["packages"]
    assert flat == tuple(part for row in packages for part in row)


def test_a_pickled_package_row_equal_to_a_shared_one_is_left_for_the_check() -> None:
    env = full_record(n_packages=2).environment
    state = env.__getstate__()
    again = pickle.loads(pickle.dumps(env))  # its rows are kept: the next equal ones are shared
    assert again.packages == env.packages
    flat = state["packages"]
    for odd in [(*flat[:3], StrLike(flat[3])), (*flat[:2], EqualsAll(), flat[3])]:
        back = pickle.loads(old_pickle(EnvironmentMetadata, {**state, "packages": odd}))
        assert back.packages is not None and type(back.packages) is tuple  # as it was pickled
        assert [type(x) for x in back.packages] == [type(x) for x in odd]
        with pytest.raises(UnsafePickleError):  # the safe loader refuses the odd item's class
            loads(old_pickle(EnvironmentMetadata, {**state, "packages": odd}))


def test_old_pickle_with_packages_as_a_list_of_pairs() -> None:
    # Tango and any reader that predates flattening store a plain list of tuples.
    env = full_record(n_packages=3).environment
    state = dict(env.__dict__)
    back = pickle.loads(old_pickle(EnvironmentMetadata, state))
    assert back == env
    assert back.packages == [
        ("package-00", "1.0.0"),
        ("package-01", "1.1.0"),
        ("package-02", "1.2.0"),
    ]


OUR_0_1_0 = TANGO_DATA.parent / "tango_stepinfo_0_1_0"


@pytest.mark.parametrize(
    "path", sorted(OUR_0_1_0.glob("*.pickle")), ids=lambda p: p.name.replace(".pickle", "")
)
def test_pickles_written_by_0_1_0_still_load(path: Path) -> None:
    expected = json.loads((OUR_0_1_0 / "expected.json").read_text(encoding="utf-8"))
    case = path.name.split(".")[0]
    back = pickle.loads(path.read_bytes())
    assert back == StepInfo.from_json_dict(expected[case])
    assert back.environment.tango is not None and back.environment.tango.library is None
    assert back.to_json_dict() == with_since_none(StepInfo, expected[case])


def test_0_1_0_pickles_are_all_there() -> None:
    assert len(list(OUR_0_1_0.glob("*.pickle"))) == 4 * 6


def test_packages_given_as_a_tuple_of_pairs_survive_pickling() -> None:
    env = full_record(n_packages=0).environment
    env.packages = (("a", "1"), ("b", "2"))  # type: ignore[assignment]
    back = pickle.loads(pickle.dumps(env))
    assert back.packages == (("a", "1"), ("b", "2"))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_numbers_have_no_json_form(value: float) -> None:
    info = full_record()
    info.config = {"lr": value}
    with pytest.raises(StepInfoEncodeError, match=r"^config\.lr: .* has no JSON form$"):
        info.to_json_dict()
    info.config = {"deep": [1, {"x": value}]}
    with pytest.raises(StepInfoEncodeError, match=r"^config\.deep\[1\]\.x: "):
        info.to_json_dict()
    data = full_record().to_json_dict()
    data["metadata"] = {"loss": value}
    with pytest.raises(StepInfoDecodeError, match=r"^metadata\.loss: expected a JSON value"):
        StepInfo.from_json_dict(data)


def test_integral_floats_are_integers() -> None:
    # JSON cannot tell 4.0 from 4 (and JSON Schema's "integer" accepts both).
    data = full_record().to_json_dict()
    data["platform"]["cpu_count"] = 4.0
    info = StepInfo.from_json_dict(data)
    assert info.platform.cpu_count == 4 and type(info.platform.cpu_count) is int


def test_dict_subclasses_are_read_as_objects() -> None:
    data = full_record().to_json_dict()
    ordered = collections.OrderedDict(data)
    ordered["platform"] = collections.OrderedDict(data["platform"])
    assert StepInfo.from_json_dict(ordered) == full_record()


def test_times_in_any_zone_pickle_as_the_same_instant() -> None:
    info = full_record()
    info.start_time = dt.datetime(2024, 7, 1, 12, 0, 0, 5, zoneinfo.ZoneInfo("America/New_York"))
    info.end_time = dt.datetime(2024, 7, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    back = pickle.loads(pickle.dumps(info))
    assert back == info
    assert back.start_time.utcoffset() == dt.timedelta(0)  # converted: zoneinfo is not allowed
    assert back.end_time.utcoffset() == dt.timedelta(hours=2)  # a fixed offset is kept


class EngineTime(dt.datetime):
    """A datetime subclass, as engines' times are (pendulum's in Airflow, pandas' Timestamp)."""


@pytest.mark.parametrize(
    "tz",
    [UTC, pytz.utc, dt.timezone(dt.timedelta(hours=2)), zoneinfo.ZoneInfo("Europe/Paris")],
    ids=str,
)
def test_times_of_a_datetime_subclass_pickle_as_plain_datetimes(tz: dt.tzinfo) -> None:
    # The subclass went into the pickle: pickle.loads read it, the safe loader refused the record
    # ("refused to load global 'tests.test_codec.EngineTime'"), though its JSON reads.
    info = full_record()
    info.start_time = EngineTime(2024, 7, 1, 12, 0, 0, 5, tzinfo=tz)
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        back = loads(pickle.dumps(info, protocol=protocol))
        assert back == info and back.to_json_dict() == info.to_json_dict()
        assert type(back.start_time) is dt.datetime
        assert back.start_time.utcoffset() == info.start_time.utcoffset() or isinstance(
            tz, zoneinfo.ZoneInfo
        )  # a zoneinfo zone is stored as UTC, as for a plain datetime


class _Named(str, enum.Enum):
    """A str mixin enum, as engines name steps: ``str()`` gives ``_Named.TRAIN`` up to 3.12."""

    TRAIN = "train"


class _Shown(str):
    """A str subclass whose ``str()`` is not its text."""

    def __str__(self) -> str:
        return "shown"


class _Counted(int):
    """An int subclass whose ``int()`` is not its value."""

    def __int__(self) -> int:
        return -1


def test_subclasses_of_str_and_int_are_written_as_their_own_value() -> None:
    # to_json_dict wrote str(value): "_Named.TRAIN" for an enum member "train", and any
    # subclass's own __str__ / __int__, a value the record never held (its pickle held "train").
    info = full_record()
    info.step_name = _Named.TRAIN
    info.unique_id = _Shown("Train-1")
    info.dependencies = {_Named.TRAIN, _Shown("b")}
    assert info.platform is not None and info.environment is not None
    info.platform.cpu_count = _Counted(8)
    info.environment.packages = [(_Shown("pkg"), _Named.TRAIN)]
    assert info.environment.git is not None
    info.environment.git.commit = _Shown("abc")
    info.environment.variables = {"V": _Shown("x")}
    for tango_compat in (False, True):
        doc = info.to_json_dict(tango_compat=tango_compat)
        assert (doc["step_name"], doc["unique_id"]) == ("train", "Train-1")
        assert doc["dependencies"] == ["b", "train"]
        assert doc["platform"]["cpu_count"] == 8
        assert doc["environment"]["packages"] == [["pkg", "train"]]
        assert doc["environment"]["git"]["commit"] == "abc"
        assert json.loads(json.dumps(doc)) == doc
    assert info.to_json_dict()["environment"]["variables"] == {"V": "x"}
    assert StepInfo.from_json_dict(info.to_json_dict()) == info


def test_repeated_package_lists_encode_to_fresh_equal_lists() -> None:
    info = full_record(n_packages=3)
    first = info.to_json_dict()["environment"]["packages"]
    first[0][1] = "changed"
    first.append(["x", "1"])
    second = info.to_json_dict()["environment"]["packages"]
    assert second == [["package-00", "1.0.0"], ["package-01", "1.1.0"], ["package-02", "1.2.0"]]
    assert info.environment.packages is not None
    info.environment.packages[1] = ("package-01", "9.9")
    third = info.to_json_dict()["environment"]["packages"]
    assert third[1] == ["package-01", "9.9"]
    info.environment.packages[1] = ("package-01", 9)  # type: ignore[call-overload]
    with pytest.raises(StepInfoEncodeError, match=r"^environment\.packages\[1\]\[1\]: "):
        info.to_json_dict()


def test_package_rows_changed_in_place_or_equal_but_odd_are_encoded_afresh() -> None:
    info = full_record(n_packages=2)
    rows: Any = [["package-00", "1.0"], ["package-01", "1.1"]]  # list rows: they may change
    info.environment.packages = rows
    assert info.to_json_dict()["environment"]["packages"] == rows
    rows[1][1] = "2.0"
    assert info.to_json_dict()["environment"]["packages"][1] == ["package-01", "2.0"]
    info.environment.packages = [("package-00", "1.0"), ("package-01", "1.1")]
    info.to_json_dict()
    # Rows equal to the ones encoded just before, but not plain strings.
    info.environment.packages = [("package-00", "1.0"), ("package-01", EqualsAll())]  # type: ignore[list-item]
    with pytest.raises(StepInfoEncodeError, match=r"^environment\.packages\[1\]\[1\]: "):
        info.to_json_dict()
    info.environment.packages = [("package-00", "1.0"), ("package-01", StrLike("1.1"))]
    out = info.to_json_dict()["environment"]["packages"]
    assert out == [["package-00", "1.0"], ["package-01", "1.1"]]
    assert type(out[1][1]) is str  # a str subclass is written as its plain string


@dataclasses.dataclass(eq=False, repr=False)
class Tagged(Record):
    """A record type with fields the shipped ones do not have: ``Optional`` sets and times."""

    tags: Optional[Set[str]] = None
    seen: Optional[dt.datetime] = None


def test_optional_sets_and_times_get_the_same_pickled_form_as_plain_ones() -> None:
    record = Tagged(
        {"b", "a", "c"}, dt.datetime(2024, 7, 1, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
    )
    state = record.__getstate__()
    assert state["tags"] == ["a", "b", "c"]  # sorted: the same bytes every time
    assert state["seen"].utcoffset() == dt.timedelta(0)  # a zoneinfo zone is stored as UTC
    back = pickle.loads(pickle.dumps(record))
    assert back == record and back.tags == {"a", "b", "c"}


@dataclasses.dataclass(eq=False, repr=False)
class _Grown(Record):
    """A record class that grew: one original field, one plain and one probed addition."""

    name: str
    extra: Optional[str] = dataclasses.field(default="x", metadata={"since": "9.9"})
    probed: Optional[int] = dataclasses.field(
        default_factory=lambda: 1 / 0, metadata={"since": "9.9", "probe": True}
    )


def test_a_field_declared_since_a_version_is_none_when_missing_from_json_or_pickle() -> None:
    assert _Grown.from_json_dict({"name": "a"}).__dict__ == {
        "name": "a",
        "extra": None,
        "probed": None,
    }
    state_only_name = old_pickle(_Grown, {"name": "a"})
    assert pickle.loads(state_only_name).__dict__ == {"name": "a", "extra": None, "probed": None}
    grown = _Grown("a", "y", 3)
    assert grown.to_json_dict() == {"name": "a", "extra": "y", "probed": 3}
    assert grown.to_json_dict(tango_compat=True) == {"name": "a"}


def test_decoding_never_runs_a_setattr_or_descriptor_of_the_class() -> None:
    # Decoded fields go straight into the instance, as __setstate__ puts them: a class with a
    # __setattr__ of its own, or a descriptor under a field's name, is filled the same way as
    # one without (which gets attribute stores).
    calls: List[str] = []

    @dataclasses.dataclass(eq=False, repr=False)
    class Guarded(Record):
        name: str
        size: Optional[int] = None

        def __setattr__(self, key: str, value: Any) -> None:
            calls.append(key)
            object.__setattr__(self, key, value)

    calls.clear()
    back = Guarded.from_json_dict({"name": "a", "size": 2})
    assert back.__dict__ == {"name": "a", "size": 2} and calls == []

    class Loud:
        def __get__(self, obj: Any, owner: Any = None) -> Any:
            return obj.__dict__["size"] if obj is not None else None

        def __set__(self, obj: Any, value: Any) -> None:
            calls.append("size")

    @dataclasses.dataclass(eq=False, repr=False)
    class Plain(Record):
        name: str
        size: Optional[int] = None

    Described = type("Described", (Plain,), {"size": Loud()})
    back = Described.from_json_dict({"name": "b", "size": 3})
    assert back.__dict__ == {"name": "b", "size": 3} and calls == []


def test_a_field_declared_since_a_version_needs_a_default() -> None:
    @dataclasses.dataclass(eq=False, repr=False)
    class NoDefault(Record):
        name: Optional[str] = dataclasses.field(metadata={"since": "9.9"})

    with pytest.raises(TypeError, match="'name' is declared 'since'"):
        NoDefault.from_json_dict({})


# --- platform and environment may be None; paths may be strings -------------------------------


@pytest.mark.parametrize("name", ["platform", "environment"])
def test_platform_and_environment_may_be_null(name: str, probe_calls: List[str]) -> None:
    info = full_record()
    setattr(info, name, None)
    data = info.to_json_dict()
    assert data[name] is None
    assert info.to_json_dict(tango_compat=True)[name] is None
    back = StepInfo.from_json_dict(json.loads(json.dumps(data)))
    assert getattr(back, name) is None and back == info
    assert pickle.loads(pickle.dumps(info)) == info
    from tango_stepinfo import loads

    assert loads(pickle.dumps(info)) == info
    assert probe_calls == []


def test_tango_records_with_null_platform_and_environment_read_and_export() -> None:
    data = json.loads((TANGO_DATA / "json" / "completed.json").read_text("utf-8"))
    data["platform"] = data["environment"] = None
    info = StepInfo.from_json_dict(data)
    assert info.platform is None and info.environment is None
    assert info.to_json_dict()["platform"] is None
    # An old Tango pickle without them (documented to load with None) now exports too.
    old = pickle.loads(
        old_pickle(
            StepInfo,
            {"unique_id": "u", "step_class_name": "S", "dependencies": set(), "cacheable": True},
        )
    )
    assert old.to_json_dict()["environment"] is None


class _FsPath:
    """An os.PathLike that is not a pathlib path."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __fspath__(self) -> str:
        return self.path


@pytest.mark.parametrize(
    "value",
    ["/opt/conda/bin/python", Path("/opt/conda/bin/python"), _FsPath("/opt/conda/bin/python")],
)
def test_any_path_like_or_string_in_a_path_field_encodes_as_that_path(value: Any) -> None:
    info = full_record()
    info.environment.executable = value
    assert info.to_json_dict()["environment"]["executable"] == "/opt/conda/bin/python"
    assert StepInfo.from_json_dict(info.to_json_dict()).environment.executable == Path(
        "/opt/conda/bin/python"
    )


def test_a_bytes_path_like_is_refused_with_its_field() -> None:
    info = full_record()
    info.environment.root = _FsPath(b"/x")  # type: ignore[arg-type]
    with pytest.raises(StepInfoEncodeError, match=r"^environment\.root: expected a path"):
        info.to_json_dict()


# --- bounds: ints and depth, the same on both sides (issue 10) ----------------------------------

HUGE = 10**5000  # 5,001 digits: past Python's int-to-str limit


@pytest.mark.parametrize(
    "path, change",
    [
        ("platform.cpu_count", lambda d: d["platform"].__setitem__("cpu_count", HUGE)),
        ("platform.memory", lambda d: d["platform"].__setitem__("memory", -HUGE)),
        ("config.x[1]", lambda d: d.__setitem__("config", {"x": [1, HUGE]})),
        ("metadata.n", lambda d: d.__setitem__("metadata", {"n": 10**4300})),
    ],
)
def test_ints_past_the_bound_are_refused_both_ways_naming_the_field(path: str, change: Any) -> None:
    data = full_record().to_json_dict()
    change(data)
    with pytest.raises(StepInfoDecodeError, match="^" + re.escape(path) + ": an integer of"):
        StepInfo.from_json_dict(data)
    info = full_record()
    top, _, rest = path.partition(".")
    if top == "platform":
        setattr(info.platform, rest, HUGE)
    else:
        setattr(info, top, data[top])
    with pytest.raises(StepInfoEncodeError, match="^" + re.escape(path) + ": an integer of"):
        info.to_json_dict()


def test_huge_ints_in_config_sets_and_keys_are_refused_not_a_bare_value_error() -> None:
    info = full_record()
    info.config = {"s": {1, "a", HUGE}}
    with pytest.raises(StepInfoEncodeError, match=r"^config[.]s\[\d\]: an integer of 5001 digits"):
        info.to_json_dict()
    info.config = {"k": {HUGE: 1, "a": 2}}
    with pytest.raises(StepInfoEncodeError, match=r"^config[.]k: .*an integer of 5001 digits"):
        info.to_json_dict()


@given(edge_json_objects)
def test_what_decodes_encodes_again_at_the_bounds(config: Dict[str, Any]) -> None:
    data = full_record().to_json_dict()
    data["config"] = config
    try:
        info = StepInfo.from_json_dict(data)
    except StepInfoDecodeError as e:
        assert "nested more than" in str(e) or "an integer of" in str(e)
        record = full_record()
        record.config = config
        with pytest.raises(StepInfoEncodeError):
            record.to_json_dict()
    else:
        assert info.to_json_dict()["config"] == config
        assert StepInfo.from_json_dict(info.to_json_dict()) == info


def test_ints_at_the_bound_go_both_ways() -> None:
    edge = 10**4300 - 1  # 4,300 digits: what json.dumps and json.loads still handle
    info = full_record()
    info.platform.cpu_count = edge
    info.platform.memory = -edge
    info.config = {"x": [edge, -edge], "y": 2**14284}
    data = json.loads(json.dumps(info.to_json_dict()))
    assert StepInfo.from_json_dict(data) == info


def test_a_huge_int_of_the_wrong_type_is_a_decode_error_that_never_prints_it() -> None:
    for field in ("step_name", "start_time", "dependencies", "config"):
        data = full_record().to_json_dict()
        data[field] = HUGE
        with pytest.raises(StepInfoDecodeError, match=rf"^{field}: .*an integer of 5001 digits"):
            StepInfo.from_json_dict(data)
    data = full_record().to_json_dict()
    data["platform"]["cpu_count"] = 7 * 10**50  # within the bound, but too long to print
    data["platform"]["user"] = 7 * 10**50
    with pytest.raises(StepInfoDecodeError, match=r"^platform[.]user: .*an integer of 51 digits$"):
        StepInfo.from_json_dict(data)


@dataclasses.dataclass(eq=False, repr=False)
class _Measured(Record):
    """A record type with a number field (the shipped ones have none)."""

    ratio: float = 0.0
    count: int = 0


def test_a_huge_int_in_a_number_field_is_refused_not_an_overflow() -> None:
    assert _Measured.from_json_dict({"ratio": 10**300}).ratio == 1e300
    for value in (10**400, HUGE):
        with pytest.raises(StepInfoDecodeError, match=r"^ratio: an integer of \d+ digits is out"):
            _Measured.from_json_dict({"ratio": value})
        with pytest.raises(StepInfoEncodeError, match=r"^ratio: an integer of \d+ digits is out"):
            _Measured(ratio=value).to_json_dict()
    with pytest.raises(StepInfoDecodeError, match=r"^count: an integer of 5001 digits is out"):
        _Measured.from_json_dict({"count": HUGE})


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for i in range(depth - 1):  # the config object itself is level 1
        value = [value] if i % 2 else {"k": value}
    return {"k": value}


def test_one_depth_limit_for_free_values_both_ways() -> None:
    ok = _nested(_limits.MAX_DEPTH)
    info = full_record()
    info.config = ok
    data = json.loads(json.dumps(info.to_json_dict()))
    assert StepInfo.from_json_dict(data) == info
    for depth in (_limits.MAX_DEPTH + 1, 600, 5000):
        deep = _nested(depth)
        data = full_record().to_json_dict()
        data["config"] = deep
        with pytest.raises(StepInfoDecodeError, match=r"^config[.]k.*: nested more than 200 level"):
            StepInfo.from_json_dict(data)
        info.config = deep
        with pytest.raises(
            StepInfoEncodeError, match=r"^config[.]k.*: nested more than 200 levels"
        ):
            info.to_json_dict()
        info.metadata = {"m": [deep]}
        info.config = None
        with pytest.raises(StepInfoEncodeError, match=r"^metadata[.]m\[0\][.]k.*: nested more"):
            info.to_json_dict()
        info.metadata = None


def test_sets_and_tuples_count_as_levels_when_encoding() -> None:
    value: Any = "leaf"
    for i in range(_limits.MAX_DEPTH):
        value = frozenset([value]) if i % 2 else (value,)
    info = full_record()
    info.config = {"k": value}
    with pytest.raises(StepInfoEncodeError, match=r"^config[.]k.*: nested more than 200 levels"):
        info.to_json_dict()


def test_decoded_short_strings_are_shared_between_records() -> None:
    # Interned on decoding, so that many decoded records hold one copy of each host, user...
    text = json.dumps(full_record(n_packages=2).to_json_dict())
    a = StepInfo.from_json_dict(json.loads(text))
    b = StepInfo.from_json_dict(json.loads(text))
    assert a == b
    assert a.step_name is b.step_name
    assert a.platform is not None and b.platform is not None
    assert a.platform.host is b.platform.host  # Optional[...] record field, str inside
    long = "x" * 101
    c = StepInfo.from_json_dict({**json.loads(text), "step_name": long})
    d = StepInfo.from_json_dict({**json.loads(text), "step_name": long * 1})
    assert c.step_name == d.step_name == long


def test_a_string_field_equal_to_the_last_one_decoded_is_still_checked() -> None:
    # Each string field keeps its last decoded value and answers an equal string with it.
    data = full_record(n_packages=2).to_json_dict()
    first = StepInfo.from_json_dict(data)
    assert first.platform is not None
    host = first.platform.host
    again = StepInfo.from_json_dict(json.loads(json.dumps(data)))
    assert again.platform is not None and again.platform.host is host
    for odd, shown in [(StrLike(host), repr(host)), (EqualsAll(), "a value of type 'EqualsAll'")]:
        problem = re.escape(f"platform.host: expected a string, got {shown}")
        with pytest.raises(StepInfoDecodeError, match=f"^{problem}$"):
            StepInfo.from_json_dict(changed(data, "platform.host", odd))
    other = StepInfo.from_json_dict(changed(data, "platform.host", "other-host"))
    assert other.platform is not None and other.platform.host == "other-host"
    back = StepInfo.from_json_dict(json.loads(json.dumps(data)))
    assert back.platform is not None and back.platform.host == host


def test_optional_field_of_wrong_type_still_says_or_null() -> None:
    data = full_record(n_packages=2).to_json_dict()
    with pytest.raises(StepInfoDecodeError, match=r"^platform: expected an object or null"):
        StepInfo.from_json_dict({**data, "platform": 3})


def test_lone_surrogates_that_json_allows_survive_every_codec() -> None:
    # "\ud800" is valid JSON (an escape of broken UTF-16): json.loads gives a lone surrogate,
    # which has no UTF-8 form. It stays as it is in every string of a record, through JSON,
    # pickles of every protocol (the safe loader too) and copies (docs/format.rst).
    doc = json.loads((TANGO_DATA / "json" / "completed.json").read_text())
    doc["unique_id"] = "Step-\ud800"
    doc["error"] = "Error: \udcff"
    doc["config"] = {"k\udfff": ["\ud83d", {"\udc00": "x"}]}
    doc["metadata"] = {"m": "\ud800\ud800"}
    doc["dependencies"] = ["Dep-\udbff"]
    doc["environment"]["command"] = "run \udcc3"
    doc["environment"]["root"] = "/data/\udcff"  # os.fsdecode's form of the byte 0xff
    doc["environment"]["packages"] = [["pkg\ud800", "1.0\udfff"]]
    doc["platform"]["host"] = "host-\ud800"
    text = json.dumps(doc)  # ensure_ascii: the surrogates written as escapes
    info = StepInfo.from_json_dict(json.loads(text))
    assert info.error == "Error: \udcff" and info.config == doc["config"]
    assert info.environment.packages == [("pkg\ud800", "1.0\udfff")]
    again = StepInfo.from_json_dict(json.loads(json.dumps(info.to_json_dict())))
    assert again == info and again.to_json_dict() == info.to_json_dict()
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        data = pickle.dumps(info, protocol=protocol)
        assert loads(data) == info == pickle.loads(data)
    assert copy.deepcopy(info) == info == copy.copy(info)
    assert "\\ud800" in repr(info) and "\ud800" not in repr(info)  # escaped, never raw


def test_a_record_of_another_class_of_the_same_name_is_named_with_its_module() -> None:
    # An engine mixing in Tango's own metadata class read "expected a PlatformMetadata or null,
    # got a value of type 'PlatformMetadata'".
    import dataclasses

    foreign = dataclasses.make_dataclass("PlatformMetadata", [("host", str)])
    foreign.__module__ = "tango.step_info"
    info = full_record()
    info.platform = foreign("h")
    with pytest.raises(StepInfoEncodeError) as raised:
        info.to_json_dict()
    assert str(raised.value) == (
        "platform: expected a PlatformMetadata or null, got a tango.step_info.PlatformMetadata,"
        " not tango_stepinfo.metadata's"
    )


def test_sets_nested_in_a_package_row_are_refused_at_once() -> None:
    """Python 3.11's marshal orders set items by their own marshal bytes, made again at each
    level: 40 nested frozensets would take days there, so the whole-list check is not used from
    3.11 (``_kinds._WHOLE_LIST``); on every Python such a row is refused, naming it."""
    nested: object = frozenset({"a"})
    for _ in range(40):
        nested = frozenset({nested, "b"})
    data = StepInfo(
        unique_id="s", step_class_name="S", dependencies=set(), cacheable=True
    ).to_json_dict()
    data["environment"]["packages"] = [["ok", "1.0"], [nested, "1.0"]]
    with pytest.raises(StepInfoDecodeError, match=r"environment\.packages\[1\]"):
        StepInfo.from_json_dict(data)
