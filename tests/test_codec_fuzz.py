"""Fuzz tests: bad JSON and bad pickle bytes give our errors, never a crash or a hang."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, List, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tango_stepinfo import (
    EnvironmentMetadata,
    GitMetadata,
    PlatformMetadata,
    StepInfo,
    StepInfoDecodeError,
    TangoMetadata,
)
from tango_stepinfo.pickling import loads

from .conftest import TANGO_DATA
from .strategies import full_record, json_values, step_infos

RECORD_CLASSES = [StepInfo, PlatformMetadata, EnvironmentMetadata, GitMetadata, TangoMetadata]

# A hang fails: every example must finish within 2 s.
fuzz = settings(deadline=2000, suppress_health_check=[HealthCheck.too_slow])


# --- JSON --------------------------------------------------------------------------------------

# anything json.loads can return, with keys a record has so the decoder gets past the top
field_names = st.sampled_from(
    sorted({f for cls in RECORD_CLASSES for f in cls.__dataclass_fields__})
)
any_json = st.recursive(
    json_values,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.one_of(field_names, st.text(max_size=5)), inner, max_size=6)
    ),
    max_leaves=20,
)


@fuzz
@given(st.sampled_from(RECORD_CLASSES), any_json)
def test_from_json_dict_of_any_json_value(cls: Any, value: Any) -> None:
    try:
        result = cls.from_json_dict(value)
    except StepInfoDecodeError:
        return
    assert type(result) is cls


def paths_of(value: Any, prefix: Tuple[Any, ...] = ()) -> List[Tuple[Any, ...]]:
    """Every path to a value inside nested dicts and lists."""
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += paths_of(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += paths_of(item, (*prefix, i))
    return out


@st.composite
def mutated_records(draw: Any) -> Any:
    """The JSON form of a valid record with one to three places replaced, removed or added."""
    info = draw(step_infos())
    data = info.to_json_dict(tango_compat=draw(st.booleans()))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths_of(data)))
        if not path:
            data = draw(any_json)
            continue
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "remove", "add"]))
        if action == "remove" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.one_of(field_names, st.text(max_size=5)))] = draw(any_json)
        else:
            parent[path[-1]] = draw(any_json)
        if not isinstance(data, (dict, list)):
            break
    return data


@fuzz
@given(mutated_records())
def test_from_json_dict_of_mutated_records(data: Any) -> None:
    try:
        result = StepInfo.from_json_dict(data)
    except StepInfoDecodeError as e:
        assert str(e)
        return
    assert type(result) is StepInfo
    assert StepInfo.from_json_dict(result.to_json_dict()) == result


# --- pickles -----------------------------------------------------------------------------------


def real_pickles() -> List[bytes]:
    ours = [pickle.dumps(full_record(n_packages=2), protocol=p) for p in range(6)]
    tango = [p.read_bytes() for p in sorted((TANGO_DATA / "pickle").glob("completed.p*.pickle"))]
    return ours + tango


REAL = real_pickles()


def load_or_our_error(data: bytes) -> None:
    try:
        loads(data)
    except (pickle.UnpicklingError, StepInfoDecodeError) as e:
        assert str(e)


@fuzz
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    load_or_our_error(data)


@fuzz
@given(st.sampled_from([b"\x80\x02", b"\x80\x04\x95", b"\x80\x05", b"("]), st.binary(max_size=200))
def test_random_bytes_after_a_header(header: bytes, data: bytes) -> None:
    load_or_our_error(header + data)


@st.composite
def mutated_pickles(draw: Any) -> bytes:
    data = bytearray(draw(st.sampled_from(REAL)))
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "insert", "delete", "byte"]))
        if action == "insert":
            data[where:where] = draw(st.binary(min_size=1, max_size=4))
        elif where < len(data):
            if action == "flip":
                data[where] ^= 1 << draw(st.integers(0, 7))
            elif action == "delete":
                del data[where : where + draw(st.integers(1, 4))]
            else:
                data[where] = draw(st.integers(0, 255))
    return bytes(data)


@fuzz
@given(mutated_pickles())
def test_mutated_pickles(data: bytes) -> None:
    load_or_our_error(data)


@pytest.mark.parametrize("data", REAL, ids=[f"real{i}" for i in range(len(REAL))])
def test_every_truncation_of_a_real_pickle(data: bytes) -> None:
    loads(data)
    for end in range(len(data)):
        load_or_our_error(data[:end])


def test_every_single_byte_flip_of_a_small_pickle() -> None:
    data = pickle.dumps(TangoMetadata("1.0"), protocol=2)
    assert loads(data) == TangoMetadata("1.0")
    for i in range(len(data)):
        for bit in range(8):
            mutated = bytearray(data)
            mutated[i] ^= 1 << bit
            load_or_our_error(bytes(mutated))


def test_fixtures_exist() -> None:
    assert len(REAL) == 12, [p.name for p in Path(TANGO_DATA / "pickle").glob("completed*")]
