"""The StepInfo model: fields, state, times, new_from_step, refresh, Tango API parity."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, NamedTuple, Optional

import pytest
import pytz
from hypothesis import given, settings
from hypothesis import strategies as st

from tango_stepinfo import (
    EnvironmentMetadata,
    GitMetadata,
    InvalidStepStateError,
    PlatformMetadata,
    StepInfo,
    StepInfoEncodeError,
    StepState,
)
from tango_stepinfo.step_info import replace_steps_with_unique_id

from .conftest import exit_code_of_forked, import_fails, since_none
from .strategies import clock_readings, full_record, lifecycle_calls

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 3, 10, 6, 59, 58, tzinfo=UTC)
T1 = dt.datetime(2024, 3, 10, 7, 42, 3, tzinfo=UTC)


def record(**kwargs: Any) -> StepInfo:
    base = full_record()
    fields: Dict[str, Any] = {
        "unique_id": "u",
        "step_class_name": "C",
        "dependencies": set(),
        "cacheable": True,
        "platform": base.platform,
        "environment": base.environment,
    }
    fields.update(kwargs)
    return StepInfo(**fields)


def test_fields_names_order_and_defaults_match_tango() -> None:
    fields = dataclasses.fields(StepInfo)
    assert [f.name for f in fields] == [
        "unique_id",
        "step_class_name",
        "dependencies",
        "cacheable",
        "step_name",
        "version",
        "start_time",
        "end_time",
        "error",
        "result_location",
        "config",
        "metadata",
        "platform",
        "environment",
    ]
    required = [
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    assert required == ["unique_id", "step_class_name", "dependencies", "cacheable"]
    assert all(f.default is None for f in fields[4:12])
    # StepInfo's platform factory also starts the environment's git status ahead of need.
    assert fields[12].default_factory.__name__ == "_platform"
    assert fields[12].metadata["probe"] is True
    assert fields[13].default_factory is EnvironmentMetadata


def test_positional_construction_as_in_tango() -> None:
    info = StepInfo("u", "C", {"d"}, False, "name", "001", platform=full_record().platform,
                    environment=full_record().environment)  # fmt: skip
    assert (info.unique_id, info.step_class_name, info.dependencies, info.cacheable) == (
        "u",
        "C",
        {"d"},
        False,
    )
    assert (info.step_name, info.version) == ("name", "001")


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("incomplete", "INCOMPLETE"),
        ("running", "RUNNING"),
        ("completed", "COMPLETED"),
        ("failed", "FAILED"),
        ("uncacheable", "UNCACHEABLE"),
    ],
)
def test_step_state_is_a_str_enum(value: str, name: str) -> None:
    state = StepState(value)
    assert state is StepState[name]
    assert isinstance(state, str)
    assert state == value
    assert str(state) == value
    assert f"{state}" == value
    assert json.dumps(state) == f'"{value}"'


@pytest.mark.parametrize(
    ("cacheable", "start", "end", "error", "expected"),
    [
        (True, None, None, None, StepState.INCOMPLETE),
        (True, T0, None, None, StepState.RUNNING),
        (True, T0, T1, None, StepState.COMPLETED),
        (True, T0, T1, "boom", StepState.FAILED),
        (False, None, None, None, StepState.UNCACHEABLE),
        (False, T0, None, "boom", StepState.UNCACHEABLE),
        (False, None, T1, None, StepState.UNCACHEABLE),
    ],
)
def test_state_table(
    cacheable: bool,
    start: Optional[dt.datetime],
    end: Optional[dt.datetime],
    error: Optional[str],
    expected: StepState,
) -> None:
    info = record(cacheable=cacheable, start_time=start, end_time=end, error=error)
    assert info.state is expected


@pytest.mark.parametrize(
    ("start", "end", "error", "named"),
    [
        (None, T1, None, ["end_time", "start_time"]),
        (None, None, "boom", ["error", "start_time", "end_time"]),
        (T0, None, "boom", ["error", "end_time"]),
        (None, T1, "boom", ["end_time", "error", "start_time"]),
    ],
)
def test_invalid_state_names_the_fields(
    start: Optional[dt.datetime], end: Optional[dt.datetime], error: Optional[str], named: List[str]
) -> None:
    info = record(start_time=start, end_time=end, error=error)
    with pytest.raises(InvalidStepStateError) as excinfo:
        _ = info.state
    assert isinstance(excinfo.value, RuntimeError)
    message = str(excinfo.value)
    for name in named:
        assert name in message
    assert "'u'" in message


def test_duration() -> None:
    assert record().duration is None
    assert record(start_time=T0).duration is None
    assert record(end_time=T1).duration is None
    assert record(start_time=T0, end_time=T1).duration == dt.timedelta(minutes=42, seconds=5)
    # A naive time is UTC, so it can be mixed with an aware one.
    naive = T0.replace(tzinfo=None)
    assert record(start_time=naive, end_time=T1).duration == dt.timedelta(minutes=42, seconds=5)
    # pytz's UTC, as Tango writes, works the same.
    assert record(start_time=T0.replace(tzinfo=pytz.utc), end_time=T1).duration == dt.timedelta(
        minutes=42, seconds=5
    )


@pytest.fixture
def new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("new_york")
def test_local_times_use_the_rules_in_force_at_that_instant() -> None:
    july = dt.datetime(2024, 7, 1, 16, 0, tzinfo=UTC)
    january = dt.datetime(2024, 1, 15, 17, 0, tzinfo=UTC)
    info = record(start_time=january, end_time=july)
    start, end = info.start_time_local, info.end_time_local
    assert start is not None and end is not None
    assert start.utcoffset() == dt.timedelta(hours=-5)
    assert end.utcoffset() == dt.timedelta(hours=-4)
    assert (start.hour, end.hour) == (12, 12)
    assert start == january and end == july


@pytest.mark.usefixtures("new_york")
def test_local_time_of_a_naive_time_takes_it_as_utc() -> None:
    info = record(start_time=dt.datetime(2024, 7, 1, 16, 0))
    local = info.start_time_local
    assert local is not None
    assert local.utcoffset() == dt.timedelta(hours=-4)
    assert local.hour == 12
    assert record().start_time_local is None
    assert record().end_time_local is None


class FakeStep:
    """An object with Tango's Step attributes (a user's own step class, not ours)."""

    def __init__(
        self,
        unique_id: str,
        config: Any = None,
        dependencies: Optional[List[FakeStep]] = None,
        broken_config: bool = False,
    ) -> None:
        self.unique_id = unique_id
        self.name = unique_id.lower()
        self.class_name = "FakeStep"
        self.VERSION = "003"
        self.dependencies = dependencies or []
        self.cache_results = True
        self._config = config
        self._broken = broken_config
        self.metadata = {"owner": "me"}

    @property
    def config(self) -> Any:
        if self._broken:
            raise ValueError("no config")
        return self._config


class FakeIndexer:
    """Like Tango's StepIndexer: a step and a key into its result."""

    def __init__(self, step: FakeStep, key: Any) -> None:
        self.step = step
        self.key = key


def test_new_from_step(new_step_platform: Dict[str, Any]) -> None:
    data = FakeStep("Data-1")
    tok = FakeStep("Tok-2")
    step = FakeStep(
        "Train-3",
        config={
            "type": "train",
            "data": data,
            "pair": [tok, FakeIndexer(data, "valid")],
            "nested": {"t": (tok, 1)},
            "lr": 0.1,
        },
        dependencies=[data, tok],
    )
    info = StepInfo.new_from_step(step, **new_step_platform, start_time=T0)
    assert info.unique_id == "Train-3"
    assert info.step_name == "train-3"
    assert info.step_class_name == "FakeStep"
    assert info.version == "003"
    assert info.dependencies == {"Data-1", "Tok-2"}
    assert info.cacheable is True
    assert info.metadata == {"owner": "me"}
    assert info.start_time == T0
    assert info.config == {
        "type": "train",
        "data": {"type": "ref", "ref": "Data-1"},
        "pair": [{"type": "ref", "ref": "Tok-2"}, {"type": "ref", "ref": "Data-1", "key": "valid"}],
        "nested": {"t": ({"type": "ref", "ref": "Tok-2"}, 1)},
        "lr": 0.1,
    }
    assert info.state is StepState.RUNNING


def test_new_from_step_config_value_error_becomes_none(new_step_platform: Dict[str, Any]) -> None:
    info = StepInfo.new_from_step(FakeStep("X", broken_config=True), **new_step_platform)
    assert info.config is None


@pytest.fixture
def new_step_platform() -> Dict[str, Any]:
    base = full_record()
    return {"platform": base.platform, "environment": base.environment}


def test_replace_steps_keeps_plain_values() -> None:
    value = {"a": [1, "x", None, 2.5], "b": {"c": True}}
    assert replace_steps_with_unique_id(value) == value
    assert replace_steps_with_unique_id({"s": {FakeStep("A").unique_id}}) == {"s": {"A"}}


@pytest.mark.parametrize("dependency", ["Data-1", None, 5])
def test_new_from_step_with_a_dependency_that_is_not_a_step_names_it(
    dependency: Any, new_step_platform: Dict[str, Any]
) -> None:
    # An engine whose steps list their dependencies' ids (strings) got a bare AttributeError
    # ('str' object has no attribute 'unique_id'), as from Tango.
    step = FakeStep("Train-3", dependencies=[FakeStep("Tok-2"), dependency])
    expected = r"^dependencies: expected steps \(objects with a unique_id\), got "
    with pytest.raises(TypeError, match=expected):
        StepInfo.new_from_step(step, **new_step_platform)


class _Point(NamedTuple):
    x: Any
    y: Any


class _Pair(list):  # type: ignore[type-arg]
    """A list subclass whose constructor does not take an iterable."""

    def __init__(self, a: Any, b: Any) -> None:
        super().__init__([a, b])


def test_replace_steps_rebuilds_named_tuples_and_odd_sequence_subclasses() -> None:
    # type(value)(items) is what Tango does, and a namedtuple (or any subclass whose constructor
    # takes no iterable) in a step's config made new_from_step raise a bare TypeError from
    # inside (Point.__new__() missing 1 required positional argument: 'y').
    step = FakeStep("A")
    point = replace_steps_with_unique_id({"p": _Point(1, step)})["p"]
    assert type(point) is _Point and point == _Point(1, {"type": "ref", "ref": "A"})
    pair = replace_steps_with_unique_id(_Pair(step, 2))
    assert type(pair) is list and pair == [{"type": "ref", "ref": "A"}, 2]


@pytest.mark.parametrize("shape", ["dict", "list", "deep"])
def test_new_from_step_with_a_config_that_holds_itself_names_it(
    shape: str, new_step_platform: Dict[str, Any]
) -> None:
    # Replacing the steps inside recursed without end: a bare RecursionError.
    config: Dict[str, Any] = {"a": 1}
    if shape == "dict":
        config["self"] = config
    elif shape == "list":
        loop: List[Any] = [1]
        loop.append(loop)
        config["l"] = loop
    else:
        inner: List[Any] = []
        config["x"] = inner
        for _ in range(100_000):
            inner.append([])
            inner = inner[0]
    step = FakeStep("X", config=config)
    with pytest.raises(StepInfoEncodeError, match=r"^config: .*holds itself"):
        StepInfo.new_from_step(step, **new_step_platform)


def test_explicit_platform_and_environment_never_probe(probe_calls: List[str]) -> None:
    base = full_record()
    StepInfo("u", "C", set(), True, platform=base.platform, environment=base.environment)
    PlatformMetadata("os", 1, "me", "host", **since_none(PlatformMetadata))
    EnvironmentMetadata(
        "3.11", Path("/py"), "cmd", Path("/"), None, None, None, **since_none(EnvironmentMetadata)
    )
    assert probe_calls == []


def test_default_factories_probe(probe_calls: List[str]) -> None:
    info = StepInfo("u", "C", set(), True)
    assert "os.getcwd" in probe_calls
    assert info.platform.operating_system
    assert info.environment.root == Path.cwd()


def test_refresh_reprobes_in_place() -> None:
    info = record()
    assert info.platform.host == "gpu-7"
    info.refresh()
    assert info.platform == PlatformMetadata()
    assert info.environment.root == Path.cwd()
    assert info.environment.python != "3.10.12" or info.environment.executable != Path(
        "/opt/conda/bin/python"
    )


def test_records_are_mutable_and_compare_by_value() -> None:
    a, b = full_record(), full_record()
    assert a == b
    b.end_time = None
    assert a != b
    b.end_time = a.end_time
    b.environment.git.branch = "other"  # type: ignore[union-attr]
    assert a != b


@pytest.mark.parametrize(
    "record",
    [full_record(n_packages=2), full_record().platform, GitMetadata("abc", None, "main", True)],
    ids=["StepInfo", "PlatformMetadata", "GitMetadata"],
)
def test_eq_repr_and_hash_behave_as_dataclass_generated_ones(record: Any) -> None:
    cls = type(record)
    fields = [(f.name, f.type) for f in dataclasses.fields(cls)]
    reference_cls = dataclasses.make_dataclass(cls.__name__, fields)
    reference_cls.__qualname__ = cls.__qualname__
    values = {name: getattr(record, name) for name, _ in fields}
    assert repr(record) == repr(reference_cls(**values))
    twin = dataclasses.replace(record)
    assert record == twin
    assert (record != twin) is False
    changed = dataclasses.replace(record, **{fields[0][0]: "other"})
    assert record != changed
    assert record.__eq__(reference_cls(**values)) is NotImplemented
    with pytest.raises(TypeError, match="unhashable"):
        hash(record)


# --- lifecycle -----------------------------------------------------------------------------------

PHASES: Dict[str, Dict[str, Any]] = {
    "incomplete": {},
    "running": {"start_time": T0},
    "completed": {"start_time": T0, "end_time": T1},
    "failed": {"start_time": T0, "end_time": T1, "error": "boom"},
}
INVALID: List[Dict[str, Any]] = [
    {"end_time": T1},
    {"error": "boom"},
    {"end_time": T1, "error": "boom"},
    {"start_time": T0, "error": "boom"},
]
OK = {"start": "running", "complete": "completed", "fail": "failed"}
# (phase, call) -> the phase after the call, or None when the call raises; for cacheable records.
TRANSITIONS = {
    ("incomplete", "start"): "running",
    ("incomplete", "complete"): None,
    ("incomplete", "fail"): None,
    ("running", "start"): None,
    ("running", "complete"): "completed",
    ("running", "fail"): "failed",
    ("completed", "start"): None,
    ("completed", "complete"): None,
    ("completed", "fail"): None,
    ("failed", "start"): "running",
    ("failed", "complete"): None,
    ("failed", "fail"): None,
}


def call(info: StepInfo, name: str) -> None:
    if name == "start":
        info.mark_started()
    elif name == "complete":
        info.mark_completed()
    else:
        info.mark_failed("it broke")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> List[dt.datetime]:
    """Replace the one clock: each reading pops the next time of the returned list."""
    from tango_stepinfo import _clock

    times = [T0 + dt.timedelta(minutes=i, microseconds=i) for i in range(10, 20)]
    monkeypatch.setattr(_clock, "now", lambda: times.pop(0))
    return times


def test_the_transition_table_is_complete() -> None:
    assert set(TRANSITIONS) == {(p, c) for p in PHASES for c in ("start", "complete", "fail")}


@pytest.mark.parametrize("cacheable", [True, False])
@pytest.mark.parametrize(("phase", "name"), sorted(TRANSITIONS))
def test_transition_table(cacheable: bool, phase: str, name: str, clock: List[Any]) -> None:
    info = record(cacheable=cacheable, result_location="/r", **PHASES[phase])
    after = TRANSITIONS[(phase, name)]
    if not cacheable and (phase, name) == ("completed", "start"):
        after = "running"  # an uncacheable step runs every time it is needed
    if after is None:
        before = dataclasses.replace(info)
        with pytest.raises(InvalidStepStateError, match=r"^StepInfo 'u': cannot \w+ a step"):
            call(info, name)
        assert info == before  # unchanged
        return
    call(info, name)
    assert info._phase() is StepState(after)
    assert info.state is (StepState(after) if cacheable else StepState.UNCACHEABLE)


@pytest.mark.parametrize("cacheable", [True, False])
@pytest.mark.parametrize("name", ["start", "complete", "fail"])
@pytest.mark.parametrize("fields", INVALID)
def test_no_transition_from_an_invalid_state(
    cacheable: bool, name: str, fields: Dict[str, Any], clock: List[Any]
) -> None:
    info = record(cacheable=cacheable, **fields)
    with pytest.raises(InvalidStepStateError, match=r"^StepInfo 'u' is in an invalid state"):
        call(info, name)


def test_completing_a_record_never_started_says_so() -> None:
    with pytest.raises(InvalidStepStateError, match=r"complete a step that is incomplete \(it"):
        record().mark_completed()
    assert issubclass(InvalidStepStateError, RuntimeError)


def test_start_sets_the_time_and_clears_the_end_the_error_and_the_result(
    clock: List[dt.datetime],
) -> None:
    expected = clock[0]
    info = record(result_location="/old", **PHASES["failed"])
    info.mark_started()
    assert info.start_time == expected
    assert (info.end_time, info.error, info.result_location) == (None, None, None)


def test_complete_and_fail_set_the_end_time(clock: List[dt.datetime]) -> None:
    start, end, start2, end2 = clock[:4]
    info = record()
    info.mark_started()
    info.mark_completed()
    assert (info.start_time, info.end_time, info.duration) == (start, end, end - start)
    info = record()
    info.mark_started()
    info.mark_failed("no space left")
    assert (info.start_time, info.end_time, info.error) == (start2, end2, "no space left")


def test_the_end_is_never_before_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from tango_stepinfo import _clock

    times = [T1, T0]  # the wall clock was stepped back in between
    monkeypatch.setattr(_clock, "now", lambda: times.pop(0))
    info = record()
    info.mark_started()
    info.mark_completed()
    assert info.end_time == info.start_time == T1
    assert info.duration == dt.timedelta(0)


@pytest.mark.parametrize(
    "start",
    [
        dt.datetime(2999, 1, 1, 1, 0, tzinfo=dt.timezone(dt.timedelta(hours=1))),  # in the future
        dt.datetime(2999, 1, 1),  # naive: UTC
    ],
)
def test_a_start_set_by_hand_in_another_zone_is_compared_in_utc(start: dt.datetime) -> None:
    info = record(start_time=start)
    info.mark_completed()
    assert info.end_time is not None and info.end_time.tzinfo is pytz.utc
    assert info.end_time == start.replace(tzinfo=start.tzinfo or UTC)
    assert info.duration == dt.timedelta(0)
    earlier = record(start_time=dt.datetime(2000, 1, 1))
    earlier.mark_completed()
    assert earlier.duration is not None and earlier.duration > dt.timedelta(days=9000)


@pytest.mark.parametrize(
    ("start", "error", "message"),
    [
        ("2024-03-10T06:59:58", TypeError, r"^start_time: expected a datetime, got '2024-03-10T"),
        (dt.date(2024, 3, 10), TypeError, r"^start_time: expected a datetime, got a value of"),
        (1710053998.0, TypeError, r"^start_time: expected a datetime, got 1710053998\.0$"),
        # set by hand at an offset that puts it past the range of datetime in UTC
        (
            dt.datetime(9999, 12, 31, 23, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
            ValueError,
            r"^start_time: .* is out of range in UTC$",
        ),
        (
            dt.datetime(1, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=5))),
            ValueError,
            r"^start_time: .* is out of range in UTC$",
        ),
    ],
)
def test_ending_with_a_start_time_set_by_hand_that_is_not_a_time_names_it(
    start: Any, error: type, message: str
) -> None:
    # An engine that set start_time itself (an ISO string, a date, a POSIX timestamp) got a bare
    # AttributeError from inside the end-time check, and an OverflowError for a time whose UTC
    # falls outside year 1 to 9999; mark_failed had set the error already, which left the record
    # with no state. Now a clear error names the field, and the record is left as it was.
    for name in ("complete", "fail"):
        info = record(start_time=start)
        with pytest.raises(error, match=message):
            call(info, name)
        assert info.end_time is None and info.error is None
    info = record(start_time=start, end_time=T1)
    with pytest.raises(error, match=message):
        info.duration  # noqa: B018


def test_duration_of_an_end_time_set_by_hand_that_is_not_a_time_names_it() -> None:
    with pytest.raises(TypeError, match=r"^end_time: expected a datetime, got '2024-03-10"):
        record(start_time=T0, end_time="2024-03-10T07:42:03").duration  # noqa: B018


def test_local_times_of_times_set_by_hand_that_are_not_times_name_them() -> None:
    # A bare AttributeError ('str' object has no attribute 'tzinfo') before.
    info = record(start_time=dt.date(2024, 3, 10), end_time="2024-03-10T07:42:03")
    with pytest.raises(TypeError, match=r"^start_time: expected a datetime, got a value of type"):
        info.start_time_local  # noqa: B018
    with pytest.raises(TypeError, match=r"^end_time: expected a datetime, got '2024-03-10"):
        info.end_time_local  # noqa: B018


def test_the_real_clock_gives_aware_utc_times_with_microseconds() -> None:
    info = record()
    before = dt.datetime.now(UTC)
    info.mark_started()
    info.mark_completed()
    after = dt.datetime.now(UTC)
    assert info.start_time is not None and info.end_time is not None
    assert info.start_time.tzinfo is pytz.utc and info.end_time.tzinfo is pytz.utc
    assert before <= info.start_time <= info.end_time <= after
    # A JSON round trip gives back the same times, zone included (decoded times use pytz.utc).
    back = StepInfo.from_json_dict(json.loads(json.dumps(info.to_json_dict())))
    assert back == info and repr(back) == repr(info)
    assert info.to_json_dict()["start_time"] == info.start_time.isoformat(timespec="microseconds")


def _tango_exception_to_string(e: BaseException) -> str:
    # What ai2-tango 1.3.2 stores (tango.common.util.exception_to_string), re-stated.
    import traceback

    return "".join(traceback.format_exception(type(e), e, e.__traceback__))


def _raise_chained() -> None:
    try:
        {}["missing"]
    except KeyError as e:
        raise ValueError("could not read the shard") from e


def test_a_failure_is_stored_as_tango_stores_it() -> None:
    info = record()
    info.mark_started()
    try:
        _raise_chained()
    except ValueError as e:
        info.mark_failed(e)
        expected = _tango_exception_to_string(e)
    assert info.error == expected
    assert info.error is not None
    assert info.error.startswith("Traceback (most recent call last):\n")
    assert "KeyError: 'missing'" in info.error
    assert "direct cause of the following exception" in info.error
    assert "in _raise_chained" in info.error
    assert info.error.endswith("ValueError: could not read the shard\n")
    assert info.state is StepState.FAILED


def test_an_exception_never_raised_is_stored_without_traceback() -> None:
    info = record(start_time=T0)
    info.mark_failed(RuntimeError("lost the worker"))
    assert info.error == "RuntimeError: lost the worker\n"


def test_secret_shapes_are_redacted_from_failures() -> None:
    info = record(start_time=T0)
    try:
        raise ConnectionError("https://bob:s3cr3t@db.example.com/x failed; password=hunter2")
    except ConnectionError as e:
        info.mark_failed(e)
    assert info.error is not None
    assert "s3cr3t" not in info.error and "hunter2" not in info.error
    assert "https://db.example.com/x failed; password=***" in info.error
    text = record(start_time=T0)
    text.mark_failed("HF_TOKEN=hf_abc123 was rejected")
    assert text.error == "HF_TOKEN=*** was rejected"


def test_failing_with_something_else_is_a_type_error() -> None:
    info = record(start_time=T0)
    with pytest.raises(TypeError, match=r"^error: expected an exception or a string, got int$"):
        info.mark_failed(5)  # type: ignore[arg-type]
    assert info.state is StepState.RUNNING


class _Reason(str):
    """A str subclass, as an engine's own reason type or a str-mixin enum member would be."""


def test_a_failure_given_as_a_str_subclass_is_stored_as_a_plain_string() -> None:
    # The text was stored as given: the record then pickled with the subclass's class, which
    # the safe loader refuses, so a record failed by the helper could not be read back.
    import pickle

    from tango_stepinfo import loads

    for reason in (_Reason("worker lost: exit code -9"), StepState.FAILED):
        info = record(start_time=T0)
        info.mark_failed(reason)
        assert type(info.error) is str and info.error == str.__str__(reason)
        assert loads(pickle.dumps(info)) == info


class _RaisingGetattr(Exception):
    def __getattr__(self, name: str) -> Any:  # a proxy's: raises other than AttributeError
        raise RuntimeError(f"no remote attribute {name}")


class _RaisingCause(Exception):
    @property  # type: ignore[override]
    def __cause__(self) -> Any:
        raise RuntimeError("cause")


class _RaisingSuppress(Exception):
    @property  # type: ignore[override]
    def __suppress_context__(self) -> Any:
        raise RuntimeError("suppress")


class _BadTraceback(Exception):
    @property  # type: ignore[override]
    def __traceback__(self) -> Any:
        return 5


class _BadContext(Exception):
    @property  # type: ignore[override]
    def __context__(self) -> Any:
        return "not an exception"


@pytest.mark.parametrize(
    "kind", [_RaisingGetattr, _RaisingCause, _RaisingSuppress, _BadTraceback, _BadContext]
)
def test_running_fails_with_an_exception_that_traceback_cannot_format(kind: type) -> None:
    # traceback.format_exception raised from inside (a __getattr__ raising RuntimeError for
    # __notes__, a property raising, a __traceback__ that is no traceback): mark_failed raised
    # that instead, running() replaced the step's exception with it, and the record stayed
    # RUNNING, so it looked alive for good. Now the exception is stored with its own traceback
    # and text, read past its overrides.
    import pickle

    from tango_stepinfo import loads

    info = record()
    escaped: Optional[BaseException] = None
    try:  # not pytest.raises: pytest itself fails to report such an exception
        with info.running():
            raise kind("the step broke")
    except BaseException as e:
        escaped = e
    assert type(escaped).__name__ == kind.__name__
    assert info.state is StepState.FAILED and info.error is not None
    assert info.error.startswith("Traceback (most recent call last):\n")
    assert 'raise kind("the step broke")' in info.error
    # (3.13's traceback reports an error getting __notes__ on a line of its own after it)
    assert f"{kind.__qualname__}: the step broke\n" in info.error
    assert loads(pickle.dumps(info)) == info
    assert StepInfo.from_json_dict(json.loads(json.dumps(info.to_json_dict()))) == info


def test_running_completes() -> None:
    info = record()
    with info.running() as inside:
        assert inside is info
        assert info.state is StepState.RUNNING
    assert info.state is StepState.COMPLETED


@pytest.mark.parametrize(
    "error", [ValueError("bad"), KeyboardInterrupt(), SystemExit(3), MemoryError()]
)
def test_running_fails_and_re_raises_any_exception(error: BaseException) -> None:
    info = record()
    with pytest.raises(type(error)) as raised, info.running():
        raise error
    assert raised.value is error
    assert info.state is StepState.FAILED
    assert info.error == _tango_exception_to_string(error)


def test_running_fails_when_a_generator_is_closed_inside_it() -> None:
    info = record()

    def step() -> Iterator[int]:
        with info.running():
            yield 1
            yield 2

    steps = step()
    assert next(steps) == 1
    steps.close()  # GeneratorExit at the yield
    assert info.state is StepState.FAILED
    assert info.error is not None and info.error.endswith("GeneratorExit\n")


def test_running_a_step_that_cannot_start_does_not_run_the_body() -> None:
    info = record(**PHASES["completed"])
    ran = []
    with pytest.raises(InvalidStepStateError), info.running():
        ran.append(1)
    assert ran == []
    assert info.state is StepState.COMPLETED


def test_running_leaves_a_record_the_body_finished_and_re_raises() -> None:
    info = record()
    with pytest.raises(ValueError, match="late"), info.running():
        info.mark_failed("early")
        raise ValueError("late")
    assert info.error == "early"
    finished = record()
    expected = "cannot complete a step that is completed"
    with pytest.raises(InvalidStepStateError, match=expected), finished.running():
        finished.mark_completed()


def test_running_keeps_a_failure_the_body_recorded_and_returned() -> None:
    # An engine running a child process fails the step with its exit code and returns.
    info = record()
    with info.running():
        info.mark_failed("worker lost: exit code -9")
    assert info.state is StepState.FAILED
    assert info.error == "worker lost: exit code -9"
    assert info.end_time is not None


def test_the_lifecycle_never_probes(probe_calls: List[str]) -> None:
    info = record()
    with info.running():
        pass
    again = record(**PHASES["failed"])
    with pytest.raises(ZeroDivisionError), again.running():
        1 / 0  # noqa: B018
    assert probe_calls == []


# --- the same record marked from two threads ------------------------------------------------


def _race(monkeypatch: pytest.MonkeyPatch, first: str, second: str) -> List[str]:
    """Run ``call(info, first)`` in one thread, held inside its reading of the clock, and
    ``call(info, second)`` in another meanwhile; the names of those that were accepted."""
    import threading

    from tango_stepinfo import _clock

    inside, go = threading.Event(), threading.Event()
    times = iter([T0, T1, T1 + dt.timedelta(seconds=1)])

    def held_now() -> dt.datetime:
        if not inside.is_set():
            inside.set()
            go.wait(10)
        return next(times)

    info = record(start_time=T0 if first != "start" else None)
    monkeypatch.setattr(_clock, "now", held_now)
    accepted: List[str] = []

    def mark(name: str) -> None:
        try:
            call(info, name)
            accepted.append(name)
        except InvalidStepStateError:
            pass

    one = threading.Thread(target=mark, args=(first,))
    one.start()
    assert inside.wait(10)
    two = threading.Thread(target=mark, args=(second,))
    two.start()
    two.join(0.2)  # not a timing assert: lets the second get as far as it can before the first
    go.set()
    one.join(10)
    two.join(10)
    assert info._phase() is not StepState.INCOMPLETE
    return accepted


def test_two_threads_never_both_start_a_record(monkeypatch: pytest.MonkeyPatch) -> None:
    # Both checked that the record could start before either set its start time: two workers
    # of a pool were each told they own the step.
    assert _race(monkeypatch, "start", "start") == ["start"]


@pytest.mark.parametrize(("first", "second"), [("complete", "fail"), ("fail", "complete")])
def test_two_threads_never_both_end_a_record(
    monkeypatch: pytest.MonkeyPatch, first: str, second: str
) -> None:
    # A timeout thread failing a step while the worker completes it: both were accepted, and
    # the record kept the end of one and the error of the other.
    assert _race(monkeypatch, first, second) == [first]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_child_forked_while_another_thread_marks_a_record_can_mark_records() -> None:
    # The helpers' lock, held by a thread that the child does not have, is made anew there.
    import threading

    from tango_stepinfo import step_info

    holding, done = threading.Event(), threading.Event()

    def hold() -> None:
        with step_info._marking:
            holding.set()
            done.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)

        def child() -> bool:
            info = record()
            with info.running():
                pass
            return info.state is StepState.COMPLETED

        assert exit_code_of_forked(child) == 0
    finally:
        done.set()
        holder.join(10)


# --- any sequence of calls ------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    phase=st.sampled_from(sorted(PHASES)),
    cacheable=st.booleans(),
    calls=lifecycle_calls,
    readings=st.lists(clock_readings, min_size=16, max_size=16),
)
def test_any_sequence_of_calls_keeps_a_valid_record_that_round_trips(
    phase: str, cacheable: bool, calls: List[Any], readings: List[dt.datetime]
) -> None:
    import pickle

    from tango_stepinfo import _clock, loads

    info = record(cacheable=cacheable, result_location="/r", **PHASES[phase])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_clock, "now", readings.pop)
        for name, failure in calls:
            before = dataclasses.replace(info)
            expected = TRANSITIONS[(info._phase().value, name)]
            if not cacheable and (info._phase().value, name) == ("completed", "start"):
                expected = "running"
            try:
                if name == "fail":
                    info.mark_failed(failure)
                else:
                    call(info, name)
            except InvalidStepStateError:
                assert expected is None and info == before
                continue
            assert info._phase() is StepState(expected)
            if info.end_time is not None:
                assert info.start_time is not None and info.end_time >= info.start_time
            assert StepInfo.from_json_dict(json.loads(json.dumps(info.to_json_dict()))) == info
            assert loads(pickle.dumps(info)) == info


def test_running_fails_the_step_when_its_traceback_cannot_be_formatted_for_want_of_files(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A step that failed because the process ran out of file descriptors: `import traceback`
    # failed too, and its OSError replaced the step's own exception, the record left RUNNING.
    info = full_record(n_packages=1)
    info.start_time = info.end_time = info.error = None
    with pytest.raises(RuntimeError, match="token=s3cr3t"), monkeypatch.context() as m:
        import_fails(m, "traceback")
        with info.running():
            raise RuntimeError("no more files; token=s3cr3t")
    assert info.state == StepState.FAILED
    assert info.error == "RuntimeError (its text withheld: Too many open files while formatting it)"
