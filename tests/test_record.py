"""A record class grows by one line: the field-history rule, through every stored fixture.

Each record class gets a variant with one added plain field and one added probed field (of the
kinds the coming fields use: ``Optional[List[<record>]]``, ``Optional[Dict[str, str]]``, plus a
new nested record class), declared only with ``dataclasses.field(metadata={"since": ...})``.
The variants replace the shipped classes in their modules, and every stored fixture (Tango
1.3.2's JSON, pickles and SQLite workspace, tango_stepinfo 0.1.0's pickles) is loaded through
them, by ``from_json_dict``, ``pickle.loads`` and the safe loader. No codec, pickle, schema or
CLI code is touched: the new fields are ``None`` in old records, never probed, left out of
Tango's JSON, in the JSON Schema, and shown by ``show``, ``diff`` and the capture summary.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import enum
import inspect
import json
import os
import pickle
import re
import shutil
import sqlite3
import subprocess
import sys
import types
from pathlib import Path, PurePath, PurePosixPath
from typing import Any, Dict, Iterator, List, Optional

import pytest
import pytz

from tango_stepinfo import StepState, _kinds, _plans, _record, metadata, pickling, step_info
from tango_stepinfo._diff import compare, diff_text
from tango_stepinfo._record import Record
from tango_stepinfo._schema import schema
from tango_stepinfo._show import capture_summary, show_record

from .conftest import DATA, TANGO_DATA
from .strategies import full_record, raw_pickle

_MISSING: Any = dataclasses.MISSING

OURS_0_1_0 = DATA / "tango_stepinfo_0_1_0"

PROBED: List[str] = []  # the names of added probed fields whose factory ran


def _probe(name: str, value: Any) -> Any:
    def factory() -> Any:
        PROBED.append(name)
        return value

    return factory


def _field_specs(cls: type) -> List[Any]:
    """``cls``'s fields as ``make_dataclass`` takes them: ``(name, type, field)``."""
    return [
        (
            f.name,
            f.type,
            dataclasses.field(
                default=f.default, default_factory=f.default_factory, metadata=f.metadata
            ),
        )
        for f in dataclasses.fields(cls)
    ]


def _variant(cls: type, added: List[Any], namespace: Optional[Dict[str, Any]] = None) -> type:
    """``cls`` with the fields ``added`` (``(name, type, field)``), in ``cls``'s module."""
    fields = _field_specs(cls)
    ns = {"__module__": cls.__module__, "__qualname__": cls.__name__, "__doc__": cls.__doc__}
    names = {f.name for f in dataclasses.fields(cls)}
    # The class's own methods and properties (StepInfo.state, GitMetadata.check_for_repo, ...).
    ns.update({k: v for k, v in vars(cls).items() if not k.startswith("__") and k not in names})
    ns.update(namespace or {})
    extra: Dict[str, Any] = {"module": cls.__module__} if sys.version_info >= (3, 12) else {}
    return dataclasses.make_dataclass(
        cls.__name__,
        fields + added,
        bases=(Record,),
        namespace=ns,
        eq=False,
        repr=False,
        **extra,
    )


def _since(**kw: Any) -> Any:
    return dataclasses.field(**kw)


@pytest.fixture
def grown(monkeypatch: pytest.MonkeyPatch) -> Iterator[Dict[str, type]]:
    """Variants of every record class, each with an added plain and an added probed field, put
    where the shipped classes are (modules, registry, safe loader) for one test."""
    saved = dict(_record.RECORDS)
    PROBED.clear()
    plain = {"since": "9.0"}
    probed = {"since": "9.0", "probe": True}
    gpu = dataclasses.make_dataclass(
        "GpuLike",
        [
            ("name", str),
            ("memory", Optional[int], dataclasses.field(default=None)),
        ],
        bases=(Record,),
        namespace={"__module__": "tango_stepinfo.metadata", "__doc__": "A GPU.\n\n:ivar name: x"},
        eq=False,
        repr=False,
        **({"module": "tango_stepinfo.metadata"} if sys.version_info >= (3, 12) else {}),
    )
    classes: Dict[str, type] = {"GpuLike": gpu}
    monkeypatch.setattr(metadata, "GpuLike", gpu, raising=False)
    specs = [
        (metadata, "GitMetadata", "signed", Optional[bool], "tag", Optional[str], "v1"),
        (metadata, "TangoMetadata", "build", Optional[str], "extras", Optional[List[str]], ["a"]),
        (
            metadata,
            "PlatformMetadata",
            "rack",
            Optional[str],
            "accelerators",
            Optional[List[gpu]],  # type: ignore[valid-type]
            [gpu("A100", 80)],
        ),
        (
            metadata,
            "EnvironmentMetadata",
            "venv",
            Optional[str],
            "labels",
            Optional[Dict[str, str]],
            {"id": "42", "queue": "gpu"},
        ),
        (step_info, "StepInfo", "attempt", Optional[int], "runner", Optional[str], "ci-7"),
    ]
    for module, name, plain_name, plain_tp, probed_name, probed_tp, value in specs:
        original = getattr(module, name)
        variant = _variant(
            original,
            [
                (plain_name, plain_tp, _since(default=None, metadata=plain)),
                (
                    probed_name,
                    probed_tp,
                    _since(default_factory=_probe(probed_name, value), metadata=probed),
                ),
            ],
        )
        classes[name] = variant
        monkeypatch.setattr(module, name, variant)
        if name in ("PlatformMetadata", "EnvironmentMetadata"):
            monkeypatch.setattr(step_info, name, variant)  # StepInfo's hints name them there
    # The codec's caches start empty and are dropped after the test: a plan built while the
    # variants stand in module namespaces resolves its hints to them, even for a shipped class.
    for module, cache in (
        (_plans, "_FIELDS"),
        (_plans, "_PLANS"),
        (_plans, "_DECODERS"),
        (_record, "_STATES"),
        (_kinds, "_FOUND"),
    ):
        monkeypatch.setattr(module, cache, {})
    monkeypatch.setattr(_plans, "_ENCODERS", {mode: {} for mode in _plans._ENCODERS})
    # The safe loader's tables are rebuilt with the variants.
    monkeypatch.setattr(pickling, "_ALLOWED", None)
    monkeypatch.setattr(pickling, "_FOUND", {})
    monkeypatch.setattr(pickling, "_KINDS", {})
    monkeypatch.setattr(pickling, "_SET_FIELDS", None)
    monkeypatch.setattr(pickling, "_REQUIRED", {})
    monkeypatch.setattr(pickling, "_TEMPLATES", [])
    monkeypatch.setattr(pickling, "_FIELD_NAMES", None)
    yield classes
    _record.RECORDS.clear()
    _record.RECORDS.update(saved)


def _added(cls: type) -> List[str]:
    return [f.name for f in dataclasses.fields(cls) if "since" in f.metadata]


def _walk(record: Any) -> Iterator[Any]:
    yield record
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if dataclasses.is_dataclass(value):
            yield from _walk(value)


def _assert_grown_fields_are_none(record: Any) -> None:
    for part in _walk(record):
        for name in _added(type(part)):
            if name not in ("branch", "dirty"):
                assert getattr(part, name) is None, (type(part).__name__, name)


def test_the_variants_replace_the_shipped_classes(grown: Dict[str, type]) -> None:
    info = step_info.StepInfo.from_json_dict(
        json.loads((TANGO_DATA / "json" / "completed.json").read_text("utf-8"))
    )
    assert type(info) is grown["StepInfo"]
    assert type(info.platform) is grown["PlatformMetadata"]
    assert type(info.environment.git) is grown["GitMetadata"]


@pytest.mark.parametrize("path", sorted((TANGO_DATA / "json").glob("*.json")), ids=str)
def test_tango_json_loads_through_grown_classes(grown: Dict[str, type], path: Path) -> None:
    data = json.loads(path.read_text("utf-8"))
    info = grown["StepInfo"].from_json_dict(data)
    _assert_grown_fields_are_none(info)
    # Tango's JSON written back is what Tango wrote, the added fields left out.
    again = info.to_json_dict(tango_compat=True)
    assert "runner" not in again and "attempt" not in again
    assert grown["StepInfo"].from_json_dict(again) == info
    assert PROBED == []


@pytest.mark.parametrize("path", sorted((TANGO_DATA / "pickle").glob("*.pickle")), ids=str)
def test_tango_pickles_load_through_grown_classes(grown: Dict[str, type], path: Path) -> None:
    value = pickling.loads(path.read_bytes())
    assert type(value).__name__ in grown
    assert type(value) is grown[type(value).__name__]
    _assert_grown_fields_are_none(value)
    back = pickle.loads(pickle.dumps(value))
    assert back == value
    assert PROBED == []


def test_tango_sqlite_workspace_loads_through_grown_classes(grown: Dict[str, type]) -> None:
    for db in ("stepinfo", "stepinfo_rerun"):
        con = sqlite3.connect(f"file:{TANGO_DATA / 'sqlite' / (db + '.sqlite')}?mode=ro", uri=True)
        try:
            rows = con.execute('SELECT key, value FROM "unnamed"').fetchall()
        finally:
            con.close()
        assert rows
        for key, blob in rows:
            value = pickling.loads(bytes(blob))
            assert type(value) is grown["StepInfo"] and value.unique_id == key
            _assert_grown_fields_are_none(value)
    assert PROBED == []


@pytest.mark.parametrize("path", sorted(OURS_0_1_0.glob("*.pickle")), ids=str)
def test_our_0_1_0_pickles_load_through_grown_classes(grown: Dict[str, type], path: Path) -> None:
    expected = json.loads((OURS_0_1_0 / "expected.json").read_text("utf-8"))
    for load in (pickle.loads, pickling.loads):
        value = load(path.read_bytes())
        assert type(value) is grown["StepInfo"]
        _assert_grown_fields_are_none(value)
        data = value.to_json_dict()
        assert data["runner"] is None and data["platform"]["accelerators"] is None
        want = expected[path.name.split(".")[0]]
        _drop_added(data, want)  # every field 0.1.0 did not have is null
        assert data == want
    assert PROBED == []


def _drop_added(data: Dict[str, Any], old: Dict[str, Any]) -> None:
    """Remove from ``data`` the keys ``old`` lacks, checking that each is null."""
    for key in list(data):
        if key not in old:
            assert data.pop(key) is None, key
        elif isinstance(data[key], dict) and isinstance(old[key], dict):
            _drop_added(data[key], old[key])


def _full(grown: Dict[str, type]) -> Any:
    """Tango's completed record, grown, with every added field set (nothing probed)."""
    base = json.loads((TANGO_DATA / "json" / "completed.json").read_text("utf-8"))
    base["attempt"], base["runner"] = 2, "ci-7"
    base["platform"].update(rack="r1", accelerators=[{"name": "A100", "memory": 80}])
    base["environment"].update(venv="/v", labels={"id": "42", "queue": "gpu"})
    base["environment"]["git"].update(signed=True, tag="v1")
    base["environment"]["tango"].update(build="b", extras=["a"])
    return grown["StepInfo"].from_json_dict(base)


def test_grown_records_round_trip_and_their_fields_are_in_the_schema(
    grown: Dict[str, type],
) -> None:
    info = _full(grown)
    assert info.platform.accelerators == [grown["GpuLike"]("A100", 80)]
    assert info.environment.labels == {"id": "42", "queue": "gpu"}
    assert grown["StepInfo"].from_json_dict(info.to_json_dict()) == info
    assert pickle.loads(pickle.dumps(info)) == info
    assert pickling.loads(pickle.dumps(info)) == info
    out = schema(grown["StepInfo"])
    platform = out["$defs"]["PlatformMetadata"]["properties"]
    assert platform["accelerators"]["type"] == ["array", "null"]
    assert platform["accelerators"]["items"] == {"$ref": "#/$defs/GpuLike"}
    env = out["$defs"]["EnvironmentMetadata"]["properties"]
    assert env["labels"] == {"type": ["object", "null"], "additionalProperties": {"type": "string"}}
    assert "labels" not in out["$defs"]["EnvironmentMetadata"]["required"]
    # Wrong values are named with their path, at every depth of the new kinds.
    data = info.to_json_dict()
    data["platform"]["accelerators"][0]["memory"] = "lots"
    with pytest.raises(
        ValueError, match=r"^platform\.accelerators\[0\]\.memory: expected an integer"
    ):
        grown["StepInfo"].from_json_dict(data)
    info.platform.accelerators[0].name = 5
    with pytest.raises(ValueError, match=r"^platform\.accelerators\[0\]\.name: expected a string"):
        pickling.loads(pickle.dumps(info))
    assert PROBED == []


def test_a_new_grown_record_probes_its_added_probed_fields(grown: Dict[str, type]) -> None:
    platform = grown["PlatformMetadata"]()
    assert platform.accelerators == [grown["GpuLike"]("A100", 80)] and platform.rack is None
    assert "accelerators" in PROBED


def test_show_diff_and_summary_list_the_added_fields(grown: Dict[str, type]) -> None:
    info = _full(grown)
    shown = show_record(info)
    for line in (
        "  attempt:",
        "  runner:",
        "  rack:",
        "  accelerators[0] name:",
        "  accelerators[0] memory:",
        "  venv:",
        "  labels id:",
        "  labels queue:",
        "  git signed:",
        "  git tag:",
    ):
        assert line in shown, shown
    summary = capture_summary(info.platform, info.environment)
    for line in ("rack:", "accelerators[0] name:", "labels queue:", "git tag:", "venv:"):
        assert f"\n{line}" in summary, summary
    other = _full(grown)
    other.platform.accelerators[0].memory = 40
    other.environment.labels["queue"] = "cpu"
    other.environment.git.tag = "v2"
    other.platform.rack = "r2"
    a, b = (info.platform, info.environment), (other.platform, other.environment)
    differences = compare(a, b)
    assert differences["platform"]["accelerators[0].memory"] == {"a": 80, "b": 40}
    assert differences["platform"]["rack"] == {"a": "r1", "b": "r2"}
    assert differences["environment"]["labels.queue"] == {"a": "gpu", "b": "cpu"}
    assert differences["git"]["tag"] == {"a": "v1", "b": "v2"}
    text = diff_text("a", "b", differences, a, b)
    assert "  accelerators[0] memory: 80 -> 40\n" in text
    assert "Environment\n  labels queue: gpu -> cpu\n" in text
    # A record without the added fields (Tango's, 0.1.0's) says nothing about them.
    old = grown["StepInfo"].from_json_dict(
        json.loads((TANGO_DATA / "json" / "completed.json").read_text("utf-8"))
    )
    assert "accelerators" not in show_record(old) and "runner" not in show_record(old)
    assert compare((old.platform, old.environment), (old.platform, old.environment)) == {}
    mixed = compare((old.platform, old.environment), a)
    assert "rack" not in mixed.get("platform", {})
    assert PROBED == []


def test_fields_without_since_are_required_from_old_records(grown: Dict[str, type]) -> None:
    # The rule is "since": a probed field without it stays required, as Tango's own are.
    data = json.loads((TANGO_DATA / "json" / "completed.json").read_text("utf-8"))
    del data["platform"]["host"]
    with pytest.raises(ValueError, match=r"^platform\.host: required field is missing"):
        grown["StepInfo"].from_json_dict(data)


# --- repr never drives a terminal (issue 10) ----------------------------------------------------

EVIL = "a\x1b[2J\x1b]0;owned\x07\x00\x7f\x9b31m\x85z"
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


class _Loud:
    """An object in ``config`` whose repr holds raw control characters."""

    def __repr__(self) -> str:
        return EVIL


class _LoudZone(dt.tzinfo):
    def utcoffset(self, when: Optional[dt.datetime]) -> dt.timedelta:
        return dt.timedelta(0)

    def __repr__(self) -> str:
        return EVIL


def _time_in_evil_pytz_zone() -> dt.datetime:
    """A time in a pytz zone whose name holds ESC and BEL, as a crafted pickle can build one."""
    real = pytz.timezone("Europe/Paris").localize(dt.datetime(2024, 3, 10, 7))
    zone = dt.tzinfo.__new__(type(real.tzinfo))
    zone.__dict__.update(real.tzinfo.__dict__)
    zone.zone = "Europe/\x1b[2J\x07"  # type: ignore[attr-defined]
    return real.replace(tzinfo=zone)


def _fill_strings(record: Any) -> None:
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if isinstance(value, str):
            setattr(record, f.name, EVIL)
        elif isinstance(value, Record):
            _fill_strings(value)
        elif isinstance(value, list) and value and isinstance(value[0], Record):
            for item in value:
                _fill_strings(item)


def test_repr_escapes_control_characters_in_every_kind_of_field() -> None:
    info = full_record()
    _fill_strings(info)
    info.dependencies = {EVIL, "b"}
    info.start_time = _time_in_evil_pytz_zone()
    info.end_time = dt.datetime(2024, 3, 10, 8, tzinfo=_LoudZone())
    info.config = {EVIL: [EVIL, (EVIL,), _Loud()], "z": {EVIL}}
    info.metadata = {"m": _Loud()}
    env = info.environment
    env.executable = Path(EVIL)
    env.root = PurePosixPath(EVIL)  # type: ignore[assignment]
    env.packages = [(EVIL, EVIL)]
    env.variables = {EVIL: EVIL}
    env.fallbacks = {EVIL: EVIL}
    info.platform.fallbacks = {EVIL: EVIL}
    assert env.git is not None and info.platform.gpus
    # Every kind of field holds control characters, and the parts' own reprs let some through.
    assert CONTROL.search(repr(info.end_time)) and CONTROL.search(repr(info.config))
    for shown in (repr(info), repr(env), repr(info.platform.gpus[0]), repr([info])):
        assert not CONTROL.search(shown), shown
        assert "\\x1b" in shown  # escaped, not dropped
    assert "Europe/\\x1b[2J\\x07" in repr(info)


BIDI_CHARS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
BIDI = re.compile(f"[{BIDI_CHARS}]")


class _Reversed:
    """An object in ``config`` whose repr holds raw bidirectional overrides ("Trojan Source")."""

    def __repr__(self) -> str:
        return f"admin\u202e{BIDI_CHARS}\u2066x\u2069"


def test_repr_escapes_bidirectional_overrides() -> None:
    info = full_record()
    info.unique_id = f"step\u202etxt.exe{BIDI_CHARS}"
    info.config = {"user\u202e": _Reversed()}
    assert BIDI.search(repr(info.config))  # the object's own repr lets them through
    shown = repr(info)
    assert not BIDI.search(shown), shown
    assert "step\\u202etxt.exe" in shown  # escaped as \u202e, not dropped
    assert "admin\\u202e" in shown
    for char in BIDI_CHARS:
        assert f"\\u{ord(char):04x}" in shown


# --- the pickled state: JSON values and plain strings (issue 10) --------------------------------


class _Ratio(float):
    """Stands for a numpy ``float64``: a float subclass from a module the safe loader does not
    know."""


class _Count(int):
    pass


class _Colour(enum.Enum):
    RED = "red"


def _odd_config() -> Dict[str, Any]:
    return {
        "lr": _Ratio(0.5),
        "epochs": _Count(3),
        "shape": (1, 2),
        "tags": {"b", "a"},
        "colour": _Colour.RED,
        "when": dt.datetime(2024, 3, 10, 7, tzinfo=dt.timezone.utc),
        "data": Path("/data/x"),
        "nested": [{"t": (_Ratio(1.5),)}],
    }


def _json_types_only(value: Any) -> bool:
    if type(value) is dict:
        return all(type(k) is str and _json_types_only(v) for k, v in value.items())
    if type(value) is list:
        return all(_json_types_only(v) for v in value)
    return type(value) in (str, int, float, bool, type(None))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_config_and_metadata_are_pickled_as_their_json_values(protocol: int) -> None:
    info = full_record()
    info.config = _odd_config()
    info.metadata = {"m": _odd_config()}
    want = info.to_json_dict()
    state = info.__getstate__()
    assert state["config"] == want["config"] and _json_types_only(state["config"])
    assert state["metadata"] == want["metadata"] and _json_types_only(state["metadata"])
    data = pickle.dumps(info, protocol=protocol)
    assert b"_Ratio" not in data and b"_Colour" not in data
    for back in (pickle.loads(data), pickling.loads(data)):
        assert back.config == want["config"] and _json_types_only(back.config)
        assert back.metadata == want["metadata"]
        assert back.to_json_dict() == want
    assert info.config["lr"].__class__ is _Ratio  # the record itself is left as it is


def test_a_config_that_is_json_already_keeps_its_key_order_in_the_state() -> None:
    info = full_record()
    info.config = {"b": 1, "a": [1, {"d": 2.5, "c": None}]}  # as Tango's own pickles hold it
    assert list(info.__getstate__()["config"]) == ["b", "a"]
    assert list(pickle.loads(pickle.dumps(info)).config["a"][1]) == ["d", "c"]
    info.config["e"] = (1,)  # not JSON: written as to_json_dict writes it, keys sorted
    assert list(info.__getstate__()["config"]) == ["a", "b", "e"]


def test_a_config_with_no_json_form_is_pickled_as_it_is() -> None:
    info = full_record()
    info.config = {"f": pytest}  # a module: neither JSON nor picklable
    with pytest.raises(TypeError):
        pickle.dumps(info)
    info.config = {"n": _Count(3), "x": complex(1, 2)}
    back = pickle.loads(pickle.dumps(info))
    assert back.config == info.config and type(back.config["n"]) is _Count


def test_earlier_pickles_with_raw_config_values_still_load() -> None:
    info = full_record()
    info.config = {"shape": (1, 2), "tags": {"a", "b"}, "data": Path("/x"), "s": StepState.RUNNING}
    data = raw_pickle(info)
    assert b"pathlib" in data
    assert pickle.loads(data).config == info.config  # as they were
    loaded = pickling.loads(data)
    assert loaded.config == {"shape": [1, 2], "tags": ["a", "b"], "data": "/x", "s": "running"}


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_paths_are_pickled_as_strings_and_load_as_paths(protocol: int) -> None:
    info = full_record()
    env = info.environment
    state = env.__getstate__()
    assert state["executable"] == str(env.executable) and state["root"] == str(env.root)
    assert not [v for v in state.values() if isinstance(v, PurePath)]
    data = pickle.dumps(info, protocol=protocol)
    assert b"pathlib" not in data
    for back in (pickle.loads(data), pickling.loads(data), pickling.loads(raw_pickle(info))):
        assert back == info
        assert type(back.environment.executable) is type(Path())


def test_a_record_pickled_by_python_3_13_loads_with_plain_pickle_loads(tmp_path: Path) -> None:
    python = shutil.which("python3.13")
    if python is None:
        pytest.skip("no python3.13 on PATH")
    # pytz alone, on the path of the other interpreter (it is pure Python)
    (tmp_path / "pytz").symlink_to(Path(pytz.__file__).parent)
    src = Path(pickling.__file__).parent.parent
    script = (
        "import json, pickle, sys\n"
        "from tango_stepinfo import StepInfo\n"
        "info = StepInfo.from_json_dict(json.loads(sys.stdin.read()))\n"
        "sys.stdout.write(pickle.dumps(info).hex())\n"
    )
    info = full_record()
    done = subprocess.run(
        [python, "-c", script],
        input=json.dumps(info.to_json_dict()),
        capture_output=True,
        text=True,
        env={**os.environ, "PYENV_VERSION": "3.13.0", "PYTHONPATH": f"{src}{os.pathsep}{tmp_path}"},
        check=True,
    )
    data = bytes.fromhex(done.stdout)
    assert b"pathlib" not in data
    back = pickle.loads(data)
    assert back == info and type(back.environment.executable) is type(Path())
    assert pickling.loads(data) == info


def test_copies_keep_the_config_as_it_is_and_equal_the_record() -> None:
    # An engine copying a running record (copy.copy, copy.deepcopy) gets an equal record, as
    # with Tango's plain dataclass: copies went through the pickled state, which writes config
    # and metadata as JSON values, so a config holding a tuple, set, Path or Enum came back
    # converted and the copy was not equal to the record.
    info = full_record()
    info.config = _odd_config()
    info.metadata = {"m": _odd_config()}
    info.start_time = dt.datetime(2024, 3, 10, 7, tzinfo=dt.timezone.utc)  # running
    info.end_time = info.error = None
    shallow = copy.copy(info)
    assert type(shallow) is step_info.StepInfo and shallow == info
    assert shallow.config is info.config and shallow.platform is info.platform
    deep = copy.deepcopy(info)
    assert type(deep) is step_info.StepInfo and deep == info
    assert deep.config is not info.config and deep.config["shape"] == (1, 2)
    assert type(deep.config["lr"]) is _Ratio and deep.environment is not info.environment
    assert deep.environment == info.environment
    deep.mark_completed()  # a copy is marked alone
    assert info.end_time is None and deep.end_time is not None
    box = [info, info]  # shared references stay shared
    twice = copy.deepcopy(box)
    assert twice[0] is twice[1] and twice[0] == info


# --- record_class: what @dataclass(init=False, eq=False, repr=False) makes -------------------


def _dataclass_twins(module: Any, monkeypatch: pytest.MonkeyPatch) -> Dict[str, type]:
    """The record classes of ``module`` as ``@dataclass(init=False, eq=False, repr=False)``
    makes them: its source run again with that decorator instead of ``record_class``, as
    another module (so that the twins are not registered as record classes)."""
    source = Path(module.__file__).read_text(encoding="utf-8")
    assert "@record_class" in source
    source = source.replace(
        "@record_class", "@dataclasses.dataclass(init=False, eq=False, repr=False)"
    )
    twin = types.ModuleType(f"tests.twin_{module.__name__.rpartition('.')[2]}")
    twin.__package__ = "tango_stepinfo"
    twin.dataclasses = dataclasses  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, twin.__name__, twin)  # @dataclass looks the module up
    exec(compile(source, module.__file__, "exec", dont_inherit=True), vars(twin))
    return {
        cls.__name__: getattr(twin, cls.__name__)
        for cls in _record.RECORDS
        if cls.__module__ == module.__name__
    }


def _same(value: Any) -> Any:
    # A default factory defined in the module is a new function in the twin: compared by name;
    # __dataclass_params__ objects by their repr (they define no ==).
    # The class body's properties and methods are compared by kind and name.
    if type(value).__name__ == "_DataclassParams":
        return repr(value)
    if isinstance(value, property):
        return "property", _same(value.fget)
    if isinstance(value, (classmethod, staticmethod)):
        return type(value).__name__, _same(value.__func__)
    return value.__qualname__ if callable(value) and hasattr(value, "__qualname__") else value


@pytest.mark.parametrize("module", [metadata, step_info], ids=lambda m: m.__name__)
def test_record_class_makes_what_dataclass_makes(
    module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    twins = _dataclass_twins(module, monkeypatch)
    assert twins and all(twin not in _record.RECORDS for twin in twins.values())
    slots = dataclasses.Field.__slots__
    for name, twin in twins.items():
        ours = getattr(module, name)
        assert dataclasses.is_dataclass(ours)
        assert list(ours.__dataclass_fields__) == list(twin.__dataclass_fields__), name
        for f, g in zip(ours.__dataclass_fields__.values(), twin.__dataclass_fields__.values()):
            for slot in slots:
                assert _same(getattr(f, slot)) == _same(getattr(g, slot)), (name, f.name, slot)
        # The same class attributes: plain defaults (a factory's field has none), and what
        # @dataclass adds (__dataclass_params__, __match_args__ from 3.10, __replace__ from 3.13).
        assert set(vars(ours)) == set(vars(twin)), name
        for key in set(vars(twin)) - {"__dataclass_fields__", "__module__", "__init__"}:
            assert _same(vars(ours)[key]) == _same(vars(twin)[key]), (name, key)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("x: list = []", ValueError),  # a mutable default shared by every record
        ("x: dict = dataclasses.field(default={})", ValueError),
        ("x = dataclasses.field(default=1)", TypeError),  # a field without annotation
    ],
)
def test_record_class_refuses_what_dataclass_refuses(body: str, error: type) -> None:
    for decorate in (_record._record_class, dataclasses.dataclass(init=False, eq=False)):
        namespace: Dict[str, Any] = {"dataclasses": dataclasses}
        exec(f"class Bad:\n    {body}\n", namespace)
        with pytest.raises(error):
            decorate(namespace["Bad"])


def test_record_class_records_work_with_the_dataclasses_functions() -> None:
    git = metadata.GitMetadata("abc", branch="main")
    assert [f.name for f in dataclasses.fields(git)] == [
        "commit",
        "remote",
        "branch",
        "dirty",
        "diff",
    ]
    assert dataclasses.asdict(git) == {
        "commit": "abc",
        "remote": None,
        "branch": "main",
        "dirty": None,
        "diff": None,
    }
    other = dataclasses.replace(git, dirty=True)
    assert type(other) is metadata.GitMetadata and other.dirty is True and other.commit == "abc"
    assert metadata.GitMetadata.commit is None  # a plain default stays on the class
    assert "operating_system" not in vars(metadata.PlatformMetadata)  # a factory's field does not
    with pytest.raises(TypeError):
        dataclasses.replace(metadata.GpuMetadata("x"), no_such_field=1)


# --- the hand-written __init__ of each record class ------------------------------------------


def _generated(cls: type) -> type:
    """A twin of ``cls`` whose ``__init__`` is the one ``@dataclass`` generates from its fields
    (defined in this module, so that it is not registered as a record class)."""
    fields = _field_specs(cls)
    extra: Dict[str, Any] = {"module": __name__} if sys.version_info >= (3, 12) else {}
    twin = dataclasses.make_dataclass(
        cls.__name__,
        fields,
        bases=(Record,),
        namespace={"__module__": __name__},
        eq=False,
        repr=False,
        **extra,
    )
    assert twin not in _record.RECORDS
    return twin


def _parameters(function: Any) -> List[Any]:
    # Defaults by repr: the factory sentinels (ours, dataclasses') both show as <factory>.
    return [
        (p.name, p.kind, p.annotation, repr(p.default))
        for p in inspect.signature(function).parameters.values()
    ]


@pytest.mark.parametrize("cls", list(_record.RECORDS), ids=lambda c: c.__name__)
def test_each_init_takes_the_parameters_the_generated_one_takes(cls: type) -> None:
    params = _parameters(cls.__init__)  # type: ignore[misc]
    assert params == _parameters(_generated(cls).__init__)  # type: ignore[misc]
    assert [p[0] for p in params[1:]] == [f.name for f in dataclasses.fields(cls)]
    # Only the fields with a default factory show <factory>.
    factories = [f.name for f in dataclasses.fields(cls) if f.default_factory is not _MISSING]
    assert [p[0] for p in params if p[3] == "<factory>"] == factories


@pytest.mark.parametrize("cls", list(_record.RECORDS), ids=lambda c: c.__name__)
def test_each_init_assigns_every_argument_in_field_order(cls: type) -> None:
    values = [object() for _ in dataclasses.fields(cls)]
    names = [f.name for f in dataclasses.fields(cls)]
    twin = _generated(cls)
    for ours, theirs in [
        (cls(*values), twin(*values)),
        (cls(**dict(zip(names, values))), twin(**dict(zip(names, values)))),
    ]:
        assert [(k, id(v)) for k, v in vars(ours).items()] == [
            (k, id(v)) for k, v in vars(theirs).items()
        ]
        assert list(vars(ours)) == names


@pytest.mark.parametrize("cls", list(_record.RECORDS), ids=lambda c: c.__name__)
def test_each_init_fills_left_out_arguments_as_the_generated_one(
    cls: type, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the required arguments: every default and factory runs, in field order (the dict's
    # key order is the order of assignment, and each factory runs just before its assignment).
    # Outside any git repository, so that both records probe the same (no git status to time out).
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    required = [
        object()
        for f in dataclasses.fields(cls)
        if f.default is _MISSING and f.default_factory is _MISSING
    ]
    ours = cls(*required)
    theirs = _generated(cls)(*required)
    assert list(vars(ours)) == list(vars(theirs))
    for name, value in vars(theirs).items():
        assert type(getattr(ours, name)) is type(value), name
        assert getattr(ours, name) == value, name


def test_a_left_out_factory_argument_runs_the_fields_factory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    info = step_info.StepInfo("u", "C", set(), True, platform=None, environment=None)  # type: ignore[arg-type]
    assert info.platform is None and info.environment is None
    assert metadata.TangoMetadata("1.0").version == "1.0"
    monkeypatch.setattr(metadata._probe, "tango_version", lambda rescan=True: "9.9")
    assert metadata.TangoMetadata().version == "9.9"
    assert metadata.TangoMetadata(None).version is None  # type: ignore[arg-type]
