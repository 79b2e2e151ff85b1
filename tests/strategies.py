"""Hypothesis strategies for records: the one home for them."""

from __future__ import annotations

import copy
import copyreg
import dataclasses
import datetime as dt
import io
import pickle
import typing
from pathlib import Path, PurePath
from typing import Any, Dict

from hypothesis import strategies as st

from tango_stepinfo import (
    EnvironmentMetadata,
    GitMetadata,
    GpuMetadata,
    JobMetadata,
    PlatformMetadata,
    StepInfo,
    TangoMetadata,
)
from tango_stepinfo._record import Record

texts = st.text(max_size=20)

# JSON values as json.loads returns them (no NaN/inf: they are not JSON).
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(texts, json_values, max_size=5)

# JSON values at the edges where the schema and the decoder could part: integers written as
# floats, ints at the digit bound, empty containers, rows of 1 to 3 strings, times.
edge_json_values = st.one_of(
    json_values,
    st.sampled_from([4.0, -0.0, 1e300, 0.5, 10**4300 - 1, "", [], {}, [[]], [{}]]),
    st.lists(st.text(max_size=3), min_size=1, max_size=3).map(lambda row: [row]),
    st.dictionaries(texts, texts | st.none(), max_size=3),
)


def _wrap(value: Any, shape: str) -> Any:
    for kind in shape:
        value = [value] if kind == "l" else {"k": value}
    return value


# Free JSON objects at the edges of the bounds (tango_stepinfo._limits): nested from 195 to 205
# levels, holding ints around MAX_INT.
edge_ints = st.sampled_from([10**4300 - 1, -(10**4300 - 1), 10**4300, -(10**4300), 10**5000])
edge_json_objects = st.builds(
    lambda leaf, shape: {"k": _wrap(leaf, shape)},
    json_values | edge_ints,
    st.text(alphabet="ld", min_size=194, max_size=204),
)

# Fixed offsets from -23:59 to +23:59, with seconds, plus UTC both ways.
offsets = st.one_of(
    st.just(dt.timezone.utc),
    st.timedeltas(
        min_value=-dt.timedelta(hours=23, minutes=59, seconds=59),
        max_value=dt.timedelta(hours=23, minutes=59, seconds=59),
    ).map(lambda d: dt.timezone(dt.timedelta(seconds=int(d.total_seconds())))),
)


def _pytz_utc() -> st.SearchStrategy[dt.tzinfo]:
    import pytz

    return st.just(pytz.utc)


aware_times = st.datetimes(
    min_value=dt.datetime(1900, 1, 2),
    max_value=dt.datetime(2200, 12, 30),
    timezones=st.one_of(offsets, _pytz_utc()),
)
naive_times = st.datetimes(min_value=dt.datetime(1900, 1, 2), max_value=dt.datetime(2200, 12, 30))


def _mostly(valid: Any, misses: Any) -> Any:
    """Values of ``valid`` three times in four, else a near miss of ``misses``."""
    return st.one_of(valid, valid, valid, misses)


def _either(*items: str) -> Any:
    return st.sampled_from(items)


# Texts shaped like times, in the forms the decoder reads and near misses (each part mostly
# right, so that whole texts often are): years at the ends of a datetime's range (0000 is
# none), days past the month's end, hour 24, a leap second, a fraction of 0 to 10 digits after
# "." or ",", offsets with and without colons, a trailing newline or space.
time_texts = st.builds(
    "".join,
    st.tuples(
        _mostly(
            _either("0001", "2024", "2023", "9999") | st.from_regex(r"\A[0-9]{4}\Z"),
            st.just("0000"),
        ),
        st.just("-"),
        _mostly(_either("01", "02", "12"), _either("00", "13")),
        st.just("-"),
        _mostly(_either("01", "29", "30", "31"), _either("00", "32")),
        _mostly(_either("T", "t", " "), _either("_", "")),
        _mostly(_either("00", "23"), st.just("24")),
        st.just(":"),
        _mostly(_either("00", "59"), st.just("60")),
        st.just(":"),
        _mostly(_either("00", "59", "60"), st.just("61")),
        _mostly(st.just("") | st.from_regex(r"\A[.,][0-9]{1,10}\Z"), st.just(".")),
        _mostly(
            _either("", "Z", "z", "+00:00", "-01:00", "+23:59", "+05", "+0530", "-00:30:15")
            | st.from_regex(r"\A[+-][01][0-9](:?[0-5][0-9](:?[0-5][0-9])?)?\Z"),
            _either("+24:00", "+01:60", "+1", "Z+01:00"),
        ),
        _mostly(st.just(""), _either("\n", " ")),
    ),
)

paths = texts.filter(lambda t: "\x00" not in t).map(Path)
packages = st.lists(st.tuples(texts, texts), max_size=8)


class StrLike(str):
    """A str subclass: refused in a package row, as the codecs take plain strings only there."""


class EqualsAll:
    """An object that says it equals anything: refused wherever a string is expected."""

    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = None  # type: ignore[assignment]


# Package rows as json.loads makes them (lists of two str), from a small pool so that lists
# repeat, share rows or differ in one row, now and then with an odd row (a str subclass, an
# object equal to anything, a number, another length, a tuple row) that a decoder must refuse
# or take exactly as the plain row-by-row decoding does, whatever it decoded before.
_pool_names = st.sampled_from(["numpy", "torch", "pytz", "six"]) | st.text(max_size=3)
_pool_versions = st.sampled_from(["1.0", "2.0", ""]) | st.text(max_size=3)
_odd_items = st.sampled_from([StrLike("numpy"), StrLike("1.0"), EqualsAll(), 1, None])
_plain_rows = st.lists(st.tuples(_pool_names, _pool_versions), max_size=6).map(
    lambda rows: [list(row) for row in rows]
)


@st.composite
def json_package_lists(draw: Any) -> Any:
    """One package list as ``from_json_dict`` may get it: mostly plain, sometimes odd."""
    rows = draw(_plain_rows)
    if rows and draw(st.integers(0, 3)) == 0:
        i = draw(st.integers(0, len(rows) - 1))
        odd = draw(st.integers(0, 3))
        if odd == 0:
            rows[i][draw(st.integers(0, 1))] = draw(_odd_items)
        elif odd == 1:
            rows[i] = rows[i] + [draw(_pool_versions)] if draw(st.booleans()) else rows[i][:1]
        elif odd == 2:
            rows[i] = tuple(rows[i])
        else:
            rows[i] = [StrLike(x) for x in rows[i]]
    return rows


package_list_runs = st.lists(json_package_lists(), min_size=1, max_size=6).flatmap(
    # Each list, or a copy of one before it (equal rows, fresh objects).
    lambda lists: st.lists(st.sampled_from(range(len(lists))), min_size=1, max_size=8).map(
        lambda picks: [copy.deepcopy(lists[i]) for i in picks]
    )
)


def of_type(tp: Any, times: st.SearchStrategy[dt.datetime] = aware_times) -> Any:
    """A strategy for values of the type hint ``tp``, for the kinds record fields use."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is str:
        return texts
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.integers(min_value=-(2**63), max_value=2**63)
    if tp is float:
        return st.floats(allow_nan=False, allow_infinity=False)
    if tp is dt.datetime:
        return times
    if isinstance(tp, type) and issubclass(tp, PurePath):
        return paths
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return records(tp, times)
    if origin is typing.Union and type(None) in args:
        inner = next(a for a in args if a is not type(None))
        return st.none() | of_type(inner, times)
    if origin in (set, frozenset):
        return st.sets(of_type(args[0], times), max_size=5).map(origin)
    if origin is list:
        return st.lists(of_type(args[0], times), max_size=8)
    if origin is tuple:
        return st.tuples(*(of_type(a, times) for a in args))
    if origin is dict and args[1] is Any:
        return json_objects
    if origin is dict:
        return st.dictionaries(texts, of_type(args[1], times), max_size=4)
    raise TypeError(f"no strategy for {tp!r}")


def records(cls: type, times: st.SearchStrategy[dt.datetime] = aware_times) -> Any:
    """Any record of class ``cls``, built from its fields (never probes this machine): a new
    field needs no change here. Fields that may be ``None`` (``Optional``, ``"nullable"``,
    ``"since"``) are sometimes ``None``."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        strategy = of_type(hints[f.name], times)
        if f.metadata.get("nullable") or "since" in f.metadata:
            strategy = st.none() | strategy
        kwargs[f.name] = strategy
    return st.builds(cls, **kwargs)


git_metadata = records(GitMetadata)
tango_metadata = records(TangoMetadata)
platform_metadata = records(PlatformMetadata)
environment_metadata = records(EnvironmentMetadata)


def step_infos(times: st.SearchStrategy[dt.datetime] = aware_times) -> Any:
    """Any StepInfo whose config and metadata are JSON values; never probes this machine."""
    return records(StepInfo, times)


DELETE = object()
"""Passed as ``value`` to :func:`changed`: delete the key instead."""


def changed(data: Dict[str, Any], path: str, value: Any) -> Dict[str, Any]:
    """A deep copy of a record's JSON with the value at dotted ``path`` replaced (or deleted); a
    part of digits indexes a list (``platform.gpus.0.name``)."""
    out = copy.deepcopy(data)
    *parents, last = path.split(".")
    target: Any = out
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    key: Any = int(last) if isinstance(target, list) else last
    if value is DELETE:
        del target[key]
    else:
        target[key] = value
    return out


def old_pickle(cls: type, state: Dict[str, Any], protocol: int = 4) -> bytes:
    """A pickle of a ``cls`` with exactly ``state``: what an older version would have written."""
    obj = object.__new__(cls)
    buffer = io.BytesIO()

    class OldPickler(pickle.Pickler):
        def reducer_override(self, o: Any) -> Any:
            if o is obj:
                return (copyreg.__newobj__, (cls,), state)
            return NotImplemented

    OldPickler(buffer, protocol=protocol).dump(obj)
    return buffer.getvalue()


def raw_pickle(value: Any, protocol: int = 4) -> bytes:
    """A pickle of ``value`` whose records hold their fields exactly as they are (paths as path
    objects, ``config`` as raw values): what versions before 0.2.0 wrote."""
    buffer = io.BytesIO()

    class RawPickler(pickle.Pickler):
        def reducer_override(self, o: Any) -> Any:
            if isinstance(o, Record):
                return (copyreg.__newobj__, (type(o),), dict(o.__dict__))
            return NotImplemented

    RawPickler(buffer, protocol=protocol).dump(value)
    return buffer.getvalue()


def full_record(n_packages: int = 70) -> StepInfo:
    """A realistic, fully filled record (fixed values, no probing)."""
    utc = dt.timezone.utc
    return StepInfo(
        unique_id="TrainStep-abc123",
        step_class_name="TrainStep",
        dependencies={"DataStep-111", "TokenizeStep-222"},
        cacheable=True,
        step_name="train",
        version="002",
        start_time=dt.datetime(2024, 3, 10, 6, 59, 58, 123456, utc),
        end_time=dt.datetime(2024, 3, 10, 7, 42, 3, 654321, utc),
        error=None,
        result_location="/data/ws/cache/TrainStep-abc123",
        config={"type": "train", "lr": 0.001, "data": {"type": "ref", "ref": "DataStep-111"}},
        metadata={"owner": "nlp-team"},
        platform=PlatformMetadata(
            "Linux-5.15.0-x86_64-with-glibc2.35",
            32,
            "researcher",
            "gpu-7",
            cpu_model="Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz",
            cpu_usable=8,
            memory=68719476736,
            gpus=[
                GpuMetadata(
                    "NVIDIA GeForce RTX 2080 Ti",
                    "GPU-5d49bdf4-b8d0-21ce-9260-a89c66748d92",
                    "0000:1a:00.0",
                    "465.19.01",
                    11554717696,
                )
            ],
            container="docker",
            fallbacks=None,
        ),
        environment=EnvironmentMetadata(
            python="3.10.12",
            executable=Path("/opt/conda/bin/python"),
            command="tango run experiment.jsonnet -w /data/ws",
            root=Path("/home/researcher/project"),
            packages=[(f"package-{i:02d}", f"1.{i}.0") for i in range(n_packages)],
            git=GitMetadata(
                commit="3f9c2d1e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e",
                remote="https://github.com/example/project.git",
                branch="main",
                dirty=False,
            ),
            tango=TangoMetadata("1.3.2"),
            implementation="cpython",
            job=JobMetadata("slurm", "4242_7", "train", None, "0"),
            fallbacks=None,
            variables={"CUDA_VISIBLE_DEVICES": "0,1", "OMP_NUM_THREADS": "8"},
            privacy=None,
        ),
    )


json_leaves = st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.floats()


@st.composite
def mutated_records(draw: Any) -> Any:
    """A valid record's JSON with one value somewhere replaced by an arbitrary one."""
    data = draw(step_infos()).to_json_dict()
    target: Any = data
    for _ in range(draw(st.integers(0, 3))):
        if isinstance(target, dict) and target:
            key = draw(st.sampled_from(sorted(target)))
            if not isinstance(target[key], (dict, list)) or not target[key]:
                break
            target = target[key]
        elif isinstance(target, list) and target:
            index = draw(st.integers(0, len(target) - 1))
            if not isinstance(target[index], (dict, list)) or not target[index]:
                break
            target = target[index]
    new = draw(json_leaves | st.lists(json_leaves, max_size=3) | st.just({}))
    if isinstance(target, dict) and target:
        key = draw(st.sampled_from(sorted(target)))
        if draw(st.booleans()):
            target[key] = new
        else:
            del target[key]
    elif isinstance(target, list) and target:
        target[draw(st.integers(0, len(target) - 1))] = new
    return data


identity_texts = st.lists(
    st.sampled_from(
        [
            "alice",
            "Alice",
            "node1",
            "node1.cs.uni.edu",
            "/home/alice/x",
            "~alice",
            "10.1.2.3",
            "1.2.3.4.5",
            "fe80::1",
            "::",
            "GPU-8d8b1c2e-1234-5678-9abc-def012345678",
            " ",
            "\t",
            "=",
            "'",
            "/",
            ".",
            ":",
            "anon:",
            "anonymous",
            "1",
            "C:\\Users\\alice\\x",
            "\\\\srv\\s",
            "git@github.com:alice/p.git",
        ]
    ),
    max_size=8,
).map("".join)
"""Texts made of what anonymous records look for (names, paths, addresses, UUIDs, stand-ins)
and what borders them, for the tests of ``anonymize()``."""

clock_readings = st.datetimes(
    min_value=dt.datetime(1900, 1, 2), max_value=dt.datetime(2200, 12, 30), timezones=_pytz_utc()
)
"""What the lifecycle's clock (``tango_stepinfo._clock.now``) returns: aware, in ``pytz.utc``,
in any order (a wall clock stepped back between two readings)."""

failures = st.one_of(
    texts,
    st.builds(ValueError, texts),
    st.builds(KeyboardInterrupt),
    st.builds(SystemExit, st.integers(0, 255)),
)
lifecycle_calls = st.lists(
    st.one_of(
        st.just(("start", None)),
        st.just(("complete", None)),
        st.tuples(st.just("fail"), failures),
    ),
    max_size=8,
)
"""Calls of the lifecycle helpers, in any order: ``(name, failure or None)``."""
