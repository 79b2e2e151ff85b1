"""The JSON Schema of records: valid draft 2020-12, accepts what we and Tango write, and agrees
with the decoder on what is not a record."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from typing import Any, Dict, List, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from tango_stepinfo import (
    EnvironmentMetadata,
    GitMetadata,
    GpuMetadata,
    JobMetadata,
    PlatformMetadata,
    StepInfo,
    StepInfoDecodeError,
    TangoMetadata,
)
from tango_stepinfo._limits import MAX_DEPTH, MAX_INT
from tango_stepinfo._record import RECORDS, Record
from tango_stepinfo._schema import DIALECT, schema
from tango_stepinfo._times import TIME_PATTERN

from .conftest import TANGO_DATA
from .strategies import (
    DELETE,
    changed,
    edge_ints,
    edge_json_objects,
    edge_json_values,
    full_record,
    mutated_records,
    naive_times,
    step_infos,
    time_texts,
)

SCHEMA = schema()
VALIDATOR = Draft202012Validator(SCHEMA)
TANGO_JSON = sorted((TANGO_DATA / "json").glob("*.json"))


def decodes(data: Any) -> bool:
    try:
        StepInfo.from_json_dict(data)
    except StepInfoDecodeError:
        return False
    return True


def test_schema_is_valid_draft_2020_12() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == DIALECT == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["title"] == "StepInfo"
    # Every registered record class but the root is defined once.
    assert sorted(SCHEMA["$defs"]) == sorted(c.__name__ for c in RECORDS if c is not StepInfo)
    assert {"GpuMetadata", "JobMetadata"} <= set(SCHEMA["$defs"])


def test_schema_is_json_and_deterministic() -> None:
    assert json.dumps(schema()) == json.dumps(SCHEMA)
    assert json.loads(json.dumps(SCHEMA)) == SCHEMA


@pytest.mark.parametrize("cls", [StepInfo, PlatformMetadata, EnvironmentMetadata, GitMetadata])
def test_properties_are_the_dataclass_fields(cls: type) -> None:
    body = SCHEMA if cls is StepInfo else SCHEMA["$defs"][cls.__name__]
    assert list(body["properties"]) == [f.name for f in dataclasses.fields(cls)]


def test_required_fields_are_those_without_default_or_probed() -> None:
    assert SCHEMA["required"] == [
        "unique_id",
        "step_class_name",
        "dependencies",
        "cacheable",
        "platform",
        "environment",
    ]
    defs = SCHEMA["$defs"]
    assert defs["PlatformMetadata"]["required"] == ["operating_system", "cpu_count", "user", "host"]
    assert defs["EnvironmentMetadata"]["required"] == [
        "python",
        "executable",
        "command",
        "root",
        "packages",
        "git",
        "tango",
    ]
    assert defs["GitMetadata"]["required"] == []
    assert defs["TangoMetadata"]["required"] == ["version"]  # its default is a probe


def test_type_hints_become_json_types() -> None:
    props = SCHEMA["properties"]
    assert props["unique_id"]["type"] == "string"
    assert props["cacheable"]["type"] == "boolean"
    assert props["dependencies"]["type"] == "array"
    assert props["dependencies"]["items"] == {"type": "string"}
    assert props["step_name"]["type"] == ["string", "null"]
    assert props["step_name"]["default"] is None
    assert props["config"]["type"] == ["object", "null"]
    assert props["start_time"]["type"] == ["string", "null"]
    assert "pattern" in props["start_time"]
    # platform and environment may be null, as in Tango's records.
    assert props["platform"]["anyOf"] == [{"$ref": "#/$defs/PlatformMetadata"}, {"type": "null"}]
    env = SCHEMA["$defs"]["EnvironmentMetadata"]["properties"]
    assert env["packages"]["items"]["prefixItems"] == [{"type": "string"}, {"type": "string"}]
    assert env["packages"]["items"]["items"] is False
    assert env["git"]["anyOf"] == [{"$ref": "#/$defs/GitMetadata"}, {"type": "null"}]
    cpu = SCHEMA["$defs"]["PlatformMetadata"]["properties"]["cpu_count"]
    assert cpu["type"] == ["integer", "null"]


def test_descriptions_come_from_the_docstrings() -> None:
    assert SCHEMA["description"].startswith("The run record of one step")
    assert SCHEMA["properties"]["unique_id"]["description"] == "the step's unique id."
    remote = SCHEMA["$defs"]["GitMetadata"]["properties"]["remote"]["description"]
    # A continued :ivar: line is joined into one.
    assert remote.startswith("the URL of the ``origin`` remote")
    assert remote.endswith("``None`` when there is no remote.")


@dataclasses.dataclass
class Inner(Record):
    """Inner.

    :ivar n: a number.
    """

    n: float = 0.0


@dataclasses.dataclass
class Outer(Record):
    """Outer record."""

    tags: Dict[str, int]
    inner: Optional[Inner] = None
    pairs: List[Inner] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Odd(Record):
    """Odd."""

    value: complex


def test_new_fields_and_types_need_no_change_to_the_schema_code() -> None:
    out = schema(Outer)
    Draft202012Validator.check_schema(out)
    assert out["required"] == ["tags"]
    assert out["properties"]["tags"] == {
        "type": "object",
        "additionalProperties": {"type": "integer"},
    }
    assert out["$defs"]["Inner"]["properties"]["n"] == {
        "type": "number",
        "description": "a number.",
        "default": 0.0,
    }
    validator = Draft202012Validator(out)
    assert validator.is_valid(Outer({"a": 1}, Inner(2.5), [Inner()]).to_json_dict())
    assert not validator.is_valid({"tags": {"a": "one"}})
    assert not validator.is_valid({"tags": {}, "pairs": [{"n": "x"}]})


def test_unknown_type_hints_are_refused() -> None:
    with pytest.raises(TypeError, match="unsupported type hint"):
        schema(Odd)


@given(step_infos())
def test_everything_we_write_is_valid(info: StepInfo) -> None:
    VALIDATOR.validate(info.to_json_dict())
    VALIDATOR.validate(info.to_json_dict(tango_compat=True))


@given(step_infos(times=naive_times))
def test_naive_times_are_written_valid(info: StepInfo) -> None:
    VALIDATOR.validate(info.to_json_dict())


@pytest.mark.parametrize("path", TANGO_JSON, ids=lambda p: p.name)
def test_tango_files_are_valid(path: Any) -> None:
    VALIDATOR.validate(json.loads(path.read_text(encoding="utf-8")))


def test_tango_fixtures_are_there() -> None:
    assert len(TANGO_JSON) >= 5


BAD = [
    ("unique_id", 5),
    ("unique_id", None),
    ("step_class_name", ["TrainStep"]),
    ("dependencies", "DataStep-111"),
    ("dependencies", [1]),
    ("cacheable", "yes"),
    ("cacheable", 1),
    ("step_name", 5),
    ("start_time", "yesterday"),
    ("start_time", 1710053998),
    ("end_time", "2024-03-10"),
    ("config", ["lr", 0.001]),
    ("metadata", "owner"),
    ("platform", 5),
    ("platform.cpu_count", "32"),
    ("platform.cpu_count", True),
    ("platform.host", None),
    ("environment.python", 3.1),
    ("environment.executable", None),
    ("environment.packages", [["numpy"]]),
    ("environment.packages", [["numpy", "1.0", "extra"]]),
    ("environment.packages", [["numpy", 1]]),
    ("environment.packages", {"numpy": "1.0"}),
    ("environment.git", "3f9c2d1"),
    ("environment.git.commit", 5),
    ("environment.git.dirty", "no"),
    ("environment.tango.version", 1.3),
    ("platform.gpus", {"name": "x"}),
    ("platform.gpus", [{}]),
    ("platform.gpus", [{"name": "x", "memory": "1"}]),
    ("platform.gpus", [{"name": "x", "memory": 1.5}]),
    ("platform.fallbacks", {"cpu_count": None}),
    ("platform.fallbacks", ["cpu_count"]),
    ("environment.job", {"system": "slurm"}),
    ("environment.job.id", 7),
    ("environment.variables", {"A": 1}),
    ("environment.variables", ["A"]),
    ("environment.fallbacks", {"root": 1}),
    ("environment.tango", {"library": "x"}),
    ("environment.packages", [["numpy", None]]),
    ("start_time", "2024-03-10T06:59:58\n"),
    ("start_time", "0000-01-01T00:00:00+00:00"),
    ("start_time", "2024-03-10T06:59:58+24:00"),
    ("unique_id", DELETE),
    ("platform", DELETE),
    ("platform.user", DELETE),
    ("environment.packages", DELETE),
]


@pytest.mark.parametrize(("path", "value"), BAD, ids=[f"{p}={v!r}" for p, v in BAD])
def test_wrong_records_fail_validation_and_decoding(path: str, value: Any) -> None:
    good = full_record(n_packages=3).to_json_dict()
    assert VALIDATOR.is_valid(good)
    bad = changed(good, path, value)
    assert not VALIDATOR.is_valid(bad)
    assert not decodes(bad)


def test_not_an_object_fails() -> None:
    values: List[Any] = [None, [], "record", 5]
    for value in values:
        assert not VALIDATOR.is_valid(value)


FIELDS = [f.name for f in dataclasses.fields(StepInfo)] + [
    *(f"platform.{f.name}" for f in dataclasses.fields(PlatformMetadata)),
    *(f"platform.gpus.0.{f.name}" for f in dataclasses.fields(GpuMetadata)),
    *(f"environment.{f.name}" for f in dataclasses.fields(EnvironmentMetadata)),
    *(f"environment.git.{f.name}" for f in dataclasses.fields(GitMetadata)),
    *(f"environment.tango.{f.name}" for f in dataclasses.fields(TangoMetadata)),
    *(f"environment.job.{f.name}" for f in dataclasses.fields(JobMetadata)),
    "environment.packages.0",
]


@settings(max_examples=300)
@given(path=st.sampled_from(FIELDS), value=edge_json_values | time_texts)
def test_schema_accepts_whatever_the_decoder_accepts(path: str, value: Any) -> None:
    # The schema and the decoder agree, but for what docs/format.rst says the schema cannot
    # state: a time's day must exist and its instant in UTC be within years 1 to 9999 (these
    # values hold no int past the digit bound and nest far less than the depth bound).
    data = changed(full_record(n_packages=2).to_json_dict(), path, value)
    if decodes(data):
        assert VALIDATOR.is_valid(data)
    else:
        errors = list(VALIDATOR.iter_errors(data))
        no_such_day = (
            isinstance(value, str)
            and path.endswith("_time")
            and re.fullmatch(TIME_PATTERN, value) is not None
        )
        assert errors or no_such_day


GOOD = [
    ("platform.cpu_count", 4.0),  # an integer written as 4.0 reads as 4
    ("platform.memory", 2.0**40),
    ("platform.gpus", [{"name": "x", "memory": 1e10}]),
    ("platform.memory", MAX_INT - 1),  # 4,300 digits: the most there may be
    ("platform.gpus", []),
    ("platform.gpus", None),
    ("platform.gpus", [{"name": "x"}]),
    ("platform.fallbacks", {}),
    ("platform.fallbacks", {"cpu_count": "no /proc"}),
    ("environment.job", None),
    ("environment.job", {"system": "slurm", "id": "1"}),
    ("environment.variables", {}),
    ("environment.git", {}),
    ("environment.packages", None),
    ("environment.packages", []),
    ("dependencies", ["a", "a"]),
    ("dependencies", []),
    ("config", {"n": 4.0, "m": [1, 2.5, None]}),
    ("start_time", "2024-03-10T06:59:58"),
    ("start_time", "2024-03-10 06:59:58,1234567Z"),
    ("start_time", "2024-03-10t06:59:58.123456789-0530"),
    ("start_time", "2024-03-10T23:59:60+05"),
    ("start_time", "2024-03-10T06:59:58+01:00:30"),
    ("platform.new_key", 1),  # keys a later version may add
    ("environment.git.new_key", [1]),
    ("platform.gpus", DELETE),  # fields since 0.2.0 (or 0.1.0) may be missing
    ("environment.job", DELETE),
    ("environment.tango.library", DELETE),
    ("environment.git.branch", DELETE),
    ("step_name", DELETE),  # fields with a plain default too
    ("start_time", DELETE),
]


@pytest.mark.parametrize(("path", "value"), GOOD, ids=[f"{p}={v!r:.40}" for p, v in GOOD])
def test_right_records_pass_validation_and_decoding(path: str, value: Any) -> None:
    data = changed(full_record(n_packages=3).to_json_dict(), path, value)
    assert VALIDATOR.is_valid(data)
    assert decodes(data)


def _day_exists(text: str) -> bool:
    try:
        dt.date(int(text[:4]), int(text[5:7]), int(text[8:10]))
    except ValueError:
        return False
    return True


@settings(max_examples=300)
@given(time_texts)
def test_schema_and_decoder_agree_on_times(text: str) -> None:
    data = changed(full_record(n_packages=1).to_json_dict(), "start_time", text)
    valid = VALIDATOR.is_valid(data)
    if decodes(data):
        assert valid
    elif valid:
        # What the schema cannot say (docs/format.rst): the day must exist, and the instant in
        # UTC must be within years 1 to 9999 (only a time in year 1 or 9999 can leave them). Year
        # 0000 exists in no datetime: the schema's pattern refuses it.
        assert text[:4] != "0000"
        assert not _day_exists(text) or text[:4] in ("0001", "9999")


@pytest.mark.parametrize(
    "text",
    [
        "2024-02-30T00:00:00",
        "2023-02-29T12:00:00Z",
        "9999-12-31T23:59:59-01:00",
        "0001-01-01T00:00+01",
    ],
)
def test_times_only_the_decoder_refuses(text: str) -> None:
    data = changed(full_record(n_packages=1).to_json_dict(), "start_time", text)
    assert VALIDATOR.is_valid(data) == (re.fullmatch(TIME_PATTERN, text) is not None)
    assert not decodes(data)


def _is_json(data: Any) -> bool:
    try:
        json.dumps(data, allow_nan=False)
    except ValueError:
        return False
    return True


@settings(max_examples=200)
@given(mutated_records())
def test_schema_and_decoder_agree_on_mutated_records(data: Any) -> None:
    valid = VALIDATOR.is_valid(data)
    if decodes(data):
        assert valid
    elif _is_json(data):  # NaN and the infinities are no JSON: no schema speaks of them
        assert not valid


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def _largest_int(value: Any) -> int:
    if isinstance(value, dict):
        return max(map(_largest_int, value.values()), default=0)
    if isinstance(value, list):
        return max(map(_largest_int, value), default=0)
    return abs(value) if type(value) is int else 0


@settings(max_examples=50)
@given(edge_json_objects)
def test_bounds_the_schema_cannot_express(config: Any) -> None:
    # The schema accepts any depth and any int; the decoder refuses what is past the documented
    # bounds (docs/format.rst) and takes the rest.
    data = changed(full_record(n_packages=1).to_json_dict(), "config", config)
    assert VALIDATOR.is_valid(data)
    within = _depth(config) <= MAX_DEPTH and _largest_int(config) < MAX_INT
    assert decodes(data) == within


@given(edge_ints)
def test_int_fields_past_the_digit_bound_only_the_decoder_refuses(value: int) -> None:
    data = changed(full_record(n_packages=1).to_json_dict(), "platform.memory", value)
    assert VALIDATOR.is_valid(data)
    assert decodes(data) == (abs(value) < MAX_INT)
