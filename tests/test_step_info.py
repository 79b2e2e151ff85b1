"""The StepInfo model: fields, state, times, new_from_step, refresh, Tango API parity."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
import pytz

from tango_stepinfo import (
    EnvironmentMetadata,
    GitMetadata,
    InvalidStepStateError,
    PlatformMetadata,
    StepInfo,
    StepState,
)
from tango_stepinfo.step_info import replace_steps_with_unique_id

from .conftest import since_none
from .strategies import full_record

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
    assert fields[12].default_factory is PlatformMetadata
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
