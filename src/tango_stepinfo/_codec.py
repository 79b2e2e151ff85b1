"""The JSON and pickle codecs of the record dataclasses, derived from their fields and type hints.

Nothing here names a field of a particular class: each dataclass is compiled once, on first
use, into a plan of per-field encoders and decoders built from ``dataclasses.fields`` and
``typing.get_type_hints``. A new field needs no change here, only a type this module knows
(``str``, ``int``, ``bool``, ``float``, ``datetime``, ``Path``, ``Any``, ``Optional``, ``List``,
``Set``, ``Tuple``, ``Dict[str, X]`` and nested record dataclasses).

Field metadata understood by the plans:

- ``"probe": True``: the default factory probes the machine, so decoding must never call it: the
  field is required in JSON, and an old pickle that lacks it gets ``None``.
- ``"since": "<version>"``: the field was added by this library in that version. A JSON dict or
  a pickle state that lacks it gives ``None`` (never probed, never an error), and the
  Tango-compatible JSON leaves it out. Such a field must have a default or a default factory.

Errors travel as :class:`_Bad` from the innermost value outwards; every container on the way
prepends its part of the path, so the happy path pays nothing for error reporting.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import enum
import itertools
import math
import operator
import re
import typing
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any, Callable, ClassVar, Dict, List, Tuple, TypeVar

from . import _json_default
from .errors import StepInfoDecodeError, StepInfoEncodeError

__all__ = ["Record", "decode", "encode"]

_UTC = _dt.timezone.utc
_T = TypeVar("_T", bound="Record")

Convert = Callable[[Any], Any]


class _Bad(Exception):
    """A value was wrong; ``parts`` collects the path to it, innermost first."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.parts: List[str] = []

    def path(self) -> str:
        """The dotted path, outermost first (``environment.packages[3][0]``)."""
        out = ""
        for part in reversed(self.parts):
            out += part if part.startswith("[") or not out else "." + part
        return out


def _show(value: Any) -> str:
    """A short, safe description of ``value`` for an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return f"a value of type {type(value).__name__!r}"


# --- times -------------------------------------------------------------------------------------

# The ISO 8601 times the decoder reads (compiled on first use: importing stays cheap).
TIME_PATTERN = (
    r"([0-9]{4})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[T ]"
    r"([01][0-9]|2[0-3]):([0-5][0-9]):([0-5][0-9])(?:[.,]([0-9]{1,6}))?"
    r"(?:(Z|z)|([+-])([01][0-9]|2[0-3]):?([0-5][0-9])(?::?([0-5][0-9]))?)?"
)
"""The ISO 8601 times the decoder reads; ASCII digits and in-range fields only, so that the JSON
Schema (which uses it too) and the decoder agree (a day past the month's end is the decoder's
alone to refuse)."""
_time_re: re.Pattern[str] | None = None


_pytz_utc: _dt.tzinfo | None = None


def _decoded_utc() -> _dt.tzinfo:
    """The UTC of decoded times: ``pytz.utc``, as Tango's own times (imported on first use)."""
    global _pytz_utc
    if _pytz_utc is None:
        import pytz

        _pytz_utc = pytz.utc
    return _pytz_utc


def parse_time(text: str) -> _dt.datetime:
    """Parse an ISO 8601 time as Tango or this library writes it into an aware UTC datetime.

    Accepts ``2024-03-10T06:59:58`` (Tango: no offset, meaning UTC), an optional fraction of up to
    six digits, and ``Z`` or a ``+hh:mm`` offset. The same strings are accepted on every Python.
    The result's time zone is ``pytz.utc``, as in the records Tango makes: it pickles smaller
    than :data:`datetime.timezone.utc` and compares equal to the same instant in any zone.

    :raises ValueError: for anything else, or a date that does not exist.
    """
    global _time_re
    if _time_re is None:
        _time_re = re.compile(TIME_PATTERN, re.ASCII)
    m = _time_re.fullmatch(text)
    if m is None:
        raise ValueError("not an ISO 8601 time")
    utc = _pytz_utc or _decoded_utc()
    if len(text) == 19 or (len(text) == 32 and text[19] == "." and text.endswith("+00:00")):
        # The shapes Tango and this library write; the stdlib parses them alike on every Python.
        return _dt.datetime.fromisoformat(text).replace(tzinfo=utc)
    y, mo, d, h, mi, s, frac, _z, sign, oh, om, os_ = m.groups()
    micro = int(frac.ljust(6, "0")) if frac else 0
    value = _dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), micro, utc)
    if sign:
        offset = _dt.timedelta(hours=int(oh), minutes=int(om), seconds=int(os_ or 0))
        value -= -offset if sign == "-" else offset  # wall time at that offset -> UTC
    return value


def _safe_tz(tz: _dt.tzinfo | None) -> bool:
    """Whether ``tz`` pickles as something the safe loader reads: none, a fixed offset, pytz."""
    return tz is None or type(tz) is _dt.timezone or type(tz).__module__.startswith("pytz")


def _as_utc(value: _dt.datetime, utc: _dt.tzinfo = _UTC) -> _dt.datetime:
    """``value`` in UTC (kept as it is if it already is); a naive one is taken as UTC."""
    tz = value.tzinfo
    if tz is None or value.utcoffset() is None:
        return value.replace(tzinfo=utc)
    if tz is _UTC or tz is _pytz_utc:
        return value
    return value.astimezone(utc)


def _enc_time(value: Any) -> str:
    if not isinstance(value, _dt.datetime):
        raise _Bad(f"expected a datetime, got {_show(value)}")
    try:
        return _as_utc(value).isoformat(timespec="microseconds")
    except OverflowError:
        raise _Bad(f"{value!r} is out of range in UTC") from None


def _enc_time_tango(value: Any) -> str:
    if not isinstance(value, _dt.datetime):
        raise _Bad(f"expected a datetime, got {_show(value)}")
    try:
        return _as_utc(value).replace(tzinfo=None).isoformat(timespec="seconds")
    except OverflowError:
        raise _Bad(f"{value!r} is out of range in UTC") from None


def _dec_time(value: Any) -> _dt.datetime:
    if type(value) is str:
        try:
            return parse_time(value)
        except (ValueError, OverflowError) as e:
            raise _Bad(f"expected an ISO 8601 time, got {_show(value)} ({e})") from None
    if isinstance(value, _dt.datetime):
        try:
            return _as_utc(value, _pytz_utc or _decoded_utc()).replace(tzinfo=_pytz_utc)
        except OverflowError:
            raise _Bad(f"{value!r} is out of range in UTC") from None
    raise _Bad(f"expected an ISO 8601 time, got {_show(value)}")


# --- free-form JSON (config, metadata) ---------------------------------------------------------


def _enc_any(value: Any) -> Any:
    """A JSON-safe, deterministic copy of ``value``: dict keys sorted, sets sorted."""
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return value
    if t is float:
        if math.isfinite(value):
            return value
        raise _Bad(f"{value!r} has no JSON form")
    if t is dict and set(map(type, value)) <= _STR_TYPES:
        # The common case first; on any error the careful loop below says where.
        types = set(map(type, value.values()))
        if types <= _JSON_SCALAR_TYPES and (float not in types or _all_finite(value.values())):
            return {key: value[key] for key in sorted(value)}
        try:
            return {key: _enc_any(value[key]) for key in sorted(value)}
        except _Bad:
            pass
    if t is dict or isinstance(value, Mapping):
        keys = value.keys()
        plain = set(map(type, keys)) <= _STR_TYPES
        out = {}
        for key in sorted(keys) if plain else sorted(keys, key=_any_key_order):
            if not isinstance(key, str):
                raise _Bad(f"object keys must be strings, got {_show(key)}")
            try:
                out[key] = _enc_any(value[key])
            except _Bad as e:
                e.parts.append(key)
                raise
        return out
    if t is list or t is tuple:
        return _enc_list(value)
    if isinstance(value, (set, frozenset)):
        return _enc_list(sorted(value, key=_any_key_order))
    if isinstance(value, enum.Enum):
        return _enc_any(value.value)
    if isinstance(value, (str, int, float)):  # subclasses: str/int/float enums, numpy-free ints
        kind = str if isinstance(value, str) else float if isinstance(value, float) else int
        return _enc_any(kind(value))
    if isinstance(value, (list, tuple)):
        return _enc_list(value)
    if isinstance(value, _dt.datetime):
        return _enc_time(value)
    if isinstance(value, PurePath):
        return str(value)
    raise _Bad(f"{_show(value)} has no JSON form")


def _all_finite(values: Any) -> bool:
    return all(math.isfinite(v) for v in values if type(v) is float)


def _any_key_order(value: Any) -> Tuple[str, str]:
    """Sort key that orders mixed types deterministically (by type name, then text)."""
    return (type(value).__name__, value if isinstance(value, str) else repr(value))


def _enc_list(items: Any) -> List[Any]:
    out = []
    for i, item in enumerate(items):
        try:
            out.append(_enc_any(item))
        except _Bad as e:
            e.parts.append(f"[{i}]")
            raise
    return out


def _dec_any(value: Any) -> Any:
    """A deep copy of a JSON value; anything that is not JSON (NaN and infinities included) is
    refused."""
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return value
    if t is float:
        if math.isfinite(value):
            return value
        raise _Bad(f"expected a JSON value, got {value!r}")
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise _Bad(f"object keys must be strings, got {_show(key)}")
            try:
                out[key] = _dec_any(item)
            except _Bad as e:
                e.parts.append(key)
                raise
        return out
    if t is list or t is tuple:
        items = []
        for i, item in enumerate(value):
            try:
                items.append(_dec_any(item))
            except _Bad as e:
                e.parts.append(f"[{i}]")
                raise
        return items
    raise _Bad(f"expected a JSON value, got {_show(value)}")


# --- compiling type hints into converters ------------------------------------------------------


def _scalar(kind: type, expected: str) -> Tuple[Convert, Convert]:
    def enc(value: Any) -> Any:
        if type(value) is kind:
            return value
        if kind is not bool and isinstance(value, kind) and not isinstance(value, bool):
            return kind(value)
        if kind is float and type(value) is int:
            return value
        raise _Bad(f"expected {expected}, got {_show(value)}")

    def dec(value: Any) -> Any:
        if type(value) is kind:
            return value
        if kind is float and type(value) is int:
            return float(value)
        if kind is int and type(value) is float and value.is_integer():
            return int(value)  # 4.0: JSON does not tell it from 4 (nor does JSON Schema)
        raise _Bad(f"expected {expected}, got {_show(value)}")

    return enc, dec


def _enc_path(value: Any) -> str:
    if isinstance(value, PurePath):
        return str(value)
    raise _Bad(f"expected a path, got {_show(value)}")


# Paths are immutable and records repeat the same few (executable, root), while building one
# costs microseconds: decoded paths are shared through this small cache.
_PATHS: Dict[str, Path] = {}


def _dec_path(value: Any) -> Path:
    if type(value) is str:
        path = _PATHS.get(value)
        if path is None:
            if len(_PATHS) >= 256:
                _PATHS.clear()
            path = _PATHS[value] = Path(value)
        return path
    if isinstance(value, PurePath):
        return Path(value)
    raise _Bad(f"expected a path string, got {_show(value)}")


_SCALARS = (str, int, bool, float)


def classify(tp: Any) -> Tuple[str, Any]:
    """The shape of a supported type hint, as ``(kind, detail)``: the one reading of type hints
    that the converters, the error messages and the JSON Schema all follow.

    ``("any", None)``, ``("scalar", str|int|bool|float)``, ``("time", None)``, ``("path", None)``,
    ``("record", cls)``, ``("optional", X)``, ``("sequence", (origin, X))`` for ``List[X]``,
    ``Set[X]``, ``FrozenSet[X]`` and ``Tuple[X, ...]``, ``("tuple", (X, Y, ...))`` and
    ``("dict", X)`` for ``Dict[str, X]``.

    :raises TypeError: for any other hint.
    """
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return "any", None
    if tp in _SCALARS:
        return "scalar", tp
    if tp is _dt.datetime:
        return "time", None
    if isinstance(tp, type) and issubclass(tp, PurePath):
        return "path", None
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return "record", tp
    if origin is typing.Union and len(args) == 2 and args[1] is type(None):
        return "optional", args[0]
    if origin in (list, set, frozenset) or (origin is tuple and args[-1:] == (Ellipsis,)):
        return "sequence", (origin, args[0])
    if origin is tuple:
        return "tuple", args
    if origin is dict and args[0] is str:
        return "dict", args[1]
    raise TypeError(f"unsupported type hint {tp!r}")


_JSON_NAMES = {str: "a string", bool: "a boolean", int: "an integer", float: "a number"}


def _describe(tp: Any, python: bool = False) -> str:
    """How an error message names ``tp``: its JSON form, or with ``python`` its Python type."""
    kind, detail = classify(tp)
    if kind == "scalar":
        return _JSON_NAMES[detail]
    if kind == "time":
        return "a datetime" if python else "an ISO 8601 time"
    if kind == "path":
        return "a path" if python else "a path string"
    if kind == "record":
        name = detail.__name__
        if not python:
            return "an object"
        return f"an {name}" if name[0] in "AEIOU" else f"a {name}"
    if kind == "sequence" and python and detail[0] in (set, frozenset):
        return "a set"
    if kind in ("sequence", "tuple"):
        return "a list"
    if kind == "dict":
        return "an object"
    return "a JSON value"


class _Mode:
    """What JSON a plan writes: ours, or what ai2-tango 1.3.2 reads (plain strings: no enum
    class to build at import)."""

    NATIVE = "native"
    TANGO = "tango"


def _converters(tp: Any, mode: str) -> Tuple[Convert, Convert]:
    """Build the ``(encode, decode)`` pair for a type hint."""
    kind, detail = classify(tp)
    if kind == "any":
        return _enc_any, _dec_any
    if kind == "scalar":
        return _scalar(detail, _describe(detail))
    if kind == "time":
        return (_enc_time_tango if mode is _Mode.TANGO else _enc_time), _dec_time
    if kind == "path":
        return _enc_path, _dec_path
    if kind == "record":
        return _record_converters(detail, mode)
    if kind == "optional":
        inner_enc, inner_dec = _converters(detail, mode)
        return (
            _or_none(inner_enc, _describe(detail, python=True) + " or null"),
            _or_none(inner_dec, _describe(detail) + " or null"),
        )
    if kind == "sequence":
        return _sequence_converters(detail[0], detail[1], mode)
    if kind == "tuple":
        return _tuple_converters(detail, mode)
    return _dict_converters(detail, mode)


def _or_none(inner: Convert, expected: str) -> Convert:
    """The converter of ``Optional[X]``: ``None`` as it is, else ``inner``; a type error about the
    value itself says ``expected`` (``"a string or null"``)."""

    def convert(value: Any) -> Any:
        if value is None:
            return None
        try:
            return inner(value)
        except _Bad as e:
            if not e.parts and e.problem.startswith("expected "):
                e.problem = f"expected {expected}, got {_show(value)}"
            raise

    return convert


_STR_TYPES = frozenset({str})
_JSON_SCALAR_TYPES = frozenset({str, int, float, bool, type(None)})
_ROW_TYPES = frozenset({list, tuple})


def _fast_sequence(item_tp: Any, is_set: bool) -> Tuple[Convert | None, Convert | None]:
    """Fast paths for the two hot shapes, strings and string pairs (dependencies, packages).

    Each returns ``None`` when the value is not the plain shape, and the general converter then
    takes over (and reports any error with its path).
    """
    if item_tp is str:
        shapes = (set, frozenset) if is_set else (list, tuple)

        def enc_strs(value: Any) -> Any:
            if type(value) in shapes and set(map(type, value)) <= _STR_TYPES:
                return sorted(value) if is_set else list(value)
            return None

        return enc_strs, None
    if typing.get_origin(item_tp) is tuple and typing.get_args(item_tp) == (str, str):
        # Every record of a process carries the same package list: the last one encoded is
        # kept (a copy of it, and its rows) and an equal list is answered with fresh copies.
        last: List[Any] = [(None, None)]  # [(copy of the list, its encoded rows)]

        def enc_pairs(value: Any) -> Any:
            if type(value) is not list:
                return None
            snapshot, rows = last[0]  # one tuple, replaced whole: safe between threads
            try:
                if value == snapshot:
                    return list(map(list.copy, rows))
            except Exception:  # a row whose == raises: not the plain shape
                return None
            if set(map(type, value)) <= _ROW_TYPES:
                try:
                    out = [[a, b] for a, b in value if type(a) is str and type(b) is str]
                except ValueError:
                    return None
                if len(out) == len(value):
                    last[0] = (list(value), list(map(list.copy, out)))
                    return out
            return None

        def dec_pairs(value: Any) -> Any:
            if type(value) is list and set(map(type, value)) <= _ROW_TYPES:
                try:
                    out = [(a, b) for a, b in value if type(a) is str and type(b) is str]
                except ValueError:
                    return None
                if len(out) == len(value):
                    return out
            return None

        return enc_pairs, dec_pairs
    return None, None


def _sequence_converters(origin: Any, item_tp: Any, mode: str) -> Tuple[Convert, Convert]:
    item_enc, item_dec = _converters(item_tp, mode)
    is_set = origin in (set, frozenset)
    build: Callable[[List[Any]], Any] = origin if origin is not list else list
    kind = "a set" if is_set else "a list"
    fast_enc, fast_dec = _fast_sequence(item_tp, is_set)

    def enc(value: Any) -> Any:
        if fast_enc is not None:
            out = fast_enc(value)
            if out is not None:
                return out
        if is_set:
            if not isinstance(value, (set, frozenset)):
                raise _Bad(f"expected {kind}, got {_show(value)}")
            items: Any = value
        elif isinstance(value, (list, tuple)):
            items = value
        else:
            raise _Bad(f"expected {kind}, got {_show(value)}")
        out = []
        for i, item in enumerate(items):
            try:
                out.append(item_enc(item))
            except _Bad as e:
                e.parts.append(f"[{i}]")
                raise
        if is_set:
            try:
                out.sort()
            except TypeError:
                out.sort(key=_any_key_order)
        return out

    def dec(value: Any) -> Any:
        if fast_dec is not None:
            out = fast_dec(value)
            if out is not None:
                return out
        if type(value) is not list and not isinstance(value, (tuple, set, frozenset)):
            raise _Bad(f"expected a list, got {_show(value)}")
        out = []
        for i, item in enumerate(value):
            try:
                out.append(item_dec(item))
            except _Bad as e:
                e.parts.append(f"[{i}]")
                raise
            except TypeError:  # unhashable member of a set
                raise _Bad(f"[{i}] cannot be a set member") from None
        try:
            return build(out)
        except TypeError:
            raise _Bad("the members cannot form a set") from None

    return enc, dec


def _tuple_converters(args: Tuple[Any, ...], mode: str) -> Tuple[Convert, Convert]:
    pairs = [_converters(a, mode) for a in args]
    size = len(pairs)
    # The common case, Tuple[str, str] (package name and version), gets a fast path.
    all_str = all(a is str for a in args)

    def enc(value: Any) -> Any:
        if isinstance(value, (tuple, list)):
            if len(value) == size:
                if all_str and all(type(v) is str for v in value):
                    return list(value)
                out = []
                for i, ((item_enc, _), item) in enumerate(zip(pairs, value)):
                    try:
                        out.append(item_enc(item))
                    except _Bad as e:
                        e.parts.append(f"[{i}]")
                        raise
                return out
            raise _Bad(f"expected {size} items, got {len(value)}")
        raise _Bad(f"expected a list of {size} items, got {_show(value)}")

    def dec(value: Any) -> Any:
        if type(value) is list or type(value) is tuple:
            if len(value) == size:
                if all_str and all(type(v) is str for v in value):
                    return tuple(value)
                out = []
                for i, ((_, item_dec), item) in enumerate(zip(pairs, value)):
                    try:
                        out.append(item_dec(item))
                    except _Bad as e:
                        e.parts.append(f"[{i}]")
                        raise
                return tuple(out)
            raise _Bad(f"expected a list of {size} items, got {len(value)}")
        raise _Bad(f"expected a list of {size} items, got {_show(value)}")

    return enc, dec


def _dict_converters(value_tp: Any, mode: str) -> Tuple[Convert, Convert]:
    if value_tp is Any:
        # Free-form JSON object (config, metadata): sorted and copied at every level.
        def enc_free(value: Any) -> Any:
            if type(value) is not dict and not isinstance(value, Mapping):
                raise _Bad(f"expected an object, got {_show(value)}")
            return _enc_any(value)

        def dec_free(value: Any) -> Any:
            if not isinstance(value, dict):
                raise _Bad(f"expected an object, got {_show(value)}")
            return _dec_any(value)

        return enc_free, dec_free

    item_enc, item_dec = _converters(value_tp, mode)

    def enc(value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise _Bad(f"expected an object, got {_show(value)}")
        out = {}
        for key in sorted(value, key=_any_key_order):
            if not isinstance(key, str):
                raise _Bad(f"object keys must be strings, got {_show(key)}")
            try:
                out[key] = item_enc(value[key])
            except _Bad as e:
                e.parts.append(key)
                raise
        return out

    def dec(value: Any) -> Any:
        if not isinstance(value, dict):
            raise _Bad(f"expected an object, got {_show(value)}")
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise _Bad(f"object keys must be strings, got {_show(key)}")
            try:
                out[key] = item_dec(item)
            except _Bad as e:
                e.parts.append(key)
                raise
        return out

    return enc, dec


# --- record plans ------------------------------------------------------------------------------

_MISSING = dataclasses.MISSING


class _Plan:
    """How to encode, decode, pickle and unpickle one record dataclass.

    ``encode`` and ``decode`` are functions generated for the class (as ``dataclasses`` generates
    ``__init__``): straight-line code with the type checks of scalar fields inlined. They handle
    well-formed records only; on anything else they hand over to :func:`_encode_fields` /
    :func:`_decode_fields`, which walk the same field list one converter at a time and report the
    error with its path. The two must agree, which the tests check on random records.
    """

    __slots__ = (
        "cls",
        "decode",
        "decode_fields",
        "encode",
        "encode_fields",
        "pair_fields",
        "pickle_fill",
        "set_fields",
        "time_fields",
        "unpickled_checks",
    )

    def __init__(self, cls: type, mode: str) -> None:
        hints = typing.get_type_hints(cls)
        self.cls = cls
        # (name, type hint, encode); sorted by name so that output keys are sorted like Tango's.
        self.encode_fields: List[Tuple[str, Any, Convert]] = []
        # (name, type hint, decode, default for a missing key: a zero-argument callable, or
        # None = required), in declaration order.
        self.decode_fields: List[Tuple[str, Any, Convert, Callable[[], Any] | None]] = []
        # (name, fill for a field missing from a pickle's state)
        self.pickle_fill: List[Tuple[str, Callable[[], Any]]] = []
        # Fields whose pickled state is transformed (with or without ``Optional``).
        self.set_fields: List[str] = []
        self.pair_fields: List[str] = []
        self.time_fields: List[str] = []
        # What the safe loader checks on an unpickled record, per field: (name, nested record
        # class or None, encode, whether a missing field's None is accepted).
        self.unpickled_checks: List[Tuple[str, type | None, Convert, bool]] = []
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            tp = hints[f.name]
            enc, dec = _converters(tp, mode)
            kind, detail = _bare(tp)
            if kind == "sequence" and detail[0] in (set, frozenset):
                self.set_fields.append(f.name)
            if kind == "sequence" and detail[0] is list and _is_pair(detail[1]):
                self.pair_fields.append(f.name)
            if kind == "time":
                self.time_fields.append(f.name)
            default = field_default(f)
            self.decode_fields.append((f.name, tp, dec, default))
            self.pickle_fill.append((f.name, default or _none))
            self.unpickled_checks.append(
                (f.name, detail if kind == "record" else None, enc, default is None)
            )
            if mode is _Mode.TANGO and "since" in f.metadata:
                continue
            self.encode_fields.append((f.name, tp, enc))
        self.encode_fields.sort(key=lambda item: item[0])
        self.encode = _generate_encoder(self)
        self.decode = _generate_decoder(self)


def field_default(f: dataclasses.Field[Any]) -> Callable[[], Any] | None:
    """What a field missing from a record's JSON or pickle state takes: ``None`` for a field
    added by this library (metadata ``"since"``), else its plain default (as a function), the
    result of a factory that does not probe, or ``None`` when the field is required (no default,
    or a default that would probe this machine). The JSON Schema's ``required`` follows this.

    :raises TypeError: a field declared ``since`` a version has neither default nor factory.
    """
    if "since" in f.metadata:
        if f.default is _MISSING and f.default_factory is _MISSING:
            raise TypeError(f"field {f.name!r} is declared 'since' a version but has no default")
        return _none
    if f.default is None:
        return _none
    if f.default is not _MISSING:
        return _constant(f.default)
    if f.default_factory is not _MISSING and not f.metadata.get("probe"):
        return f.default_factory
    return None


def _bare(tp: Any) -> Tuple[str, Any]:
    """:func:`classify` of ``tp``, or of ``X`` when ``tp`` is ``Optional[X]``."""
    kind, detail = classify(tp)
    return classify(detail) if kind == "optional" else (kind, detail)


def _is_pair(tp: Any) -> bool:
    """Whether ``tp`` is a two-item ``Tuple[X, Y]`` (a row of ``packages``)."""
    kind, detail = classify(tp)
    return kind == "tuple" and len(detail) == 2


def _inline_check(tp: Any, var: str) -> str | None:
    """Python source that is true when ``var`` is a plain, valid value of ``tp``; None if none."""
    kind, detail = classify(tp)
    if kind == "scalar":
        return f"type({var}) is {detail.__name__}"
    if kind == "optional" and detail in _SCALARS:
        return f"({var} is None or type({var}) is {detail.__name__})"
    return None


def _generate(
    signature: str,
    head: List[str],
    fields: List[Tuple[str, str, Any, Convert]],
    result: List[str],
    namespace: Dict[str, Any],
) -> Convert:
    """Generate a record converter: ``head``, then inside ``try`` one load per field, the inline
    checks, and ``result`` with ``{fields}`` replaced by the converted ``name: value`` pairs.

    ``fields`` holds ``(load expression, field name, type hint, converter)``. Any failed check,
    ``_Bad`` or missing key hands the input to ``slow`` (the careful path) in ``namespace``.
    """
    loads, checks, items = [], [], []
    for i, (load, name, tp, convert) in enumerate(fields):
        loads.append(f"        v{i} = {load}")
        check = _inline_check(tp, f"v{i}")
        if check is None:
            namespace[f"c{i}"] = convert
            items.append(f"{name!r}: c{i}(v{i})")
        else:
            checks.append(check)
            items.append(f"{name!r}: v{i}")
    arg = signature[signature.index("(") + 1 : -1]
    lines = [f"def {signature}:", *head, "    try:", *loads]
    if checks:
        lines += [f"        if not ({' and '.join(checks)}):", "            raise _Bad('')"]
    lines += [f"        {line}".replace("{fields}", ", ".join(items)) for line in result]
    lines += ["    except (KeyError, _Bad):", f"        return slow({arg})"]
    namespace["_Bad"] = _Bad
    exec("\n".join(lines), namespace)  # our own generated source, as dataclasses does
    return typing.cast(Convert, namespace[signature[: signature.index("(")]])


def _generate_encoder(plan: _Plan) -> Convert:
    fields = [(f"d[{name!r}]", name, tp, enc) for name, tp, enc in plan.encode_fields]
    return _generate(
        "encode(record)",
        ["    d = record.__dict__"],
        fields,
        ["return {{fields}}"],
        {"slow": lambda record: _encode_fields(plan, record)},
    )


def _generate_decoder(plan: _Plan) -> Convert:
    namespace: Dict[str, Any] = {
        "slow": lambda data: _decode_fields(plan, data),
        "cls": plan.cls,
        "new": object.__new__,
    }
    fields = []
    for i, (name, tp, dec, default) in enumerate(plan.decode_fields):
        load = f"data[{name!r}]"
        if default is not None:
            namespace[f"d{i}"] = default
            load += f" if {name!r} in data else d{i}()"
        fields.append((load, name, tp, dec))
    return _generate(
        "decode(data)",
        ["    if type(data) is not dict:", "        return slow(data)"],
        fields,
        ["record = new(cls)", "record.__dict__.update({{fields}})", "return record"],
        namespace,
    )


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


def _none() -> None:
    return None


_PLANS: Dict[Tuple[type, str], _Plan] = {}


def _plan(cls: type, mode: str = _Mode.NATIVE) -> _Plan:
    plan = _PLANS.get((cls, mode))
    if plan is None:
        plan = _PLANS[(cls, mode)] = _Plan(cls, mode)
    return plan


def _record_converters(cls: type, mode: str) -> Tuple[Convert, Convert]:
    # Nested plans are looked up on first call, not while compiling: a record type may refer to
    # itself or to one that is not fully defined yet.
    encode: Convert | None = None
    decode: Convert | None = None

    def enc(value: Any) -> Any:
        nonlocal encode
        if not isinstance(value, cls):
            raise _Bad(f"expected {_describe(cls, python=True)}, got {_show(value)}")
        if encode is None:
            encode = _plan(cls, mode).encode
        return encode(value)

    def dec(value: Any) -> Any:
        nonlocal decode
        if decode is None:
            decode = _plan(cls).decode
        return decode(value)

    return enc, dec


def _encode_fields(plan: _Plan, record: Any) -> Dict[str, Any]:
    """Encode field by field, reporting the first error with its path (the careful path)."""
    out = {}
    values = record.__dict__
    for name, _, enc in plan.encode_fields:
        try:
            out[name] = enc(values[name])
        except _Bad as e:
            e.parts.append(name)
            raise
        except KeyError:
            missing = _Bad("the attribute is missing")
            missing.parts.append(name)
            raise missing from None
    return out


def _decode_fields(plan: _Plan, data: Any) -> Any:
    """Decode field by field, reporting the first error with its path (the careful path)."""
    if not isinstance(data, dict):
        raise _Bad(f"expected an object, got {_show(data)}")
    record: Any = object.__new__(plan.cls)
    values = record.__dict__
    for name, _, dec, default in plan.decode_fields:
        if name in data:
            try:
                values[name] = dec(data[name])
            except _Bad as e:
                e.parts.append(name)
                raise
        elif default is not None:
            values[name] = default()
        else:
            missing = _Bad("required field is missing")
            missing.parts.append(name)
            raise missing
    return record


def encode(record: Any, *, tango_compat: bool = False) -> Dict[str, Any]:
    """Encode a record dataclass into a new JSON-safe dict (see :meth:`Record.to_json_dict`)."""
    plan = _plan(type(record), _Mode.TANGO if tango_compat else _Mode.NATIVE)
    try:
        return typing.cast(Dict[str, Any], plan.encode(record))
    except _Bad as e:
        raise StepInfoEncodeError(e.path(), e.problem) from None
    except RecursionError:
        raise StepInfoEncodeError("", "the value is nested too deeply") from None


def decode(cls: type[_T], data: Any) -> _T:
    """Decode ``data`` into a new ``cls`` (see :meth:`Record.from_json_dict`)."""
    try:
        return typing.cast(_T, _plan(cls).decode(data))
    except _Bad as e:
        raise StepInfoDecodeError(e.path(), e.problem) from None
    except RecursionError:
        raise StepInfoDecodeError("", "the value is nested too deeply") from None


def check(record: Any, *, unpickled: bool = False) -> None:
    """Check that every field of ``record`` has a value of its declared type, at every depth.

    :param unpickled: the record comes from a pickle, which may predate some of its fields:
        accept ``None`` wherever :meth:`Record.__setstate__` fills in ``None`` for a missing field
        (a required field, or one whose default would probe).
    :raises StepInfoDecodeError: naming the first field at fault. Used on records that did not
        come through :func:`decode`, such as unpickled ones.
    """
    try:
        if not isinstance(record, Record):
            raise _Bad(f"expected a record, got {_show(record)}")
        if unpickled:
            _check_unpickled(record)
        else:
            _encode_fields(_plan(type(record)), record)
    except _Bad as e:
        raise StepInfoDecodeError(e.path(), e.problem) from None
    except RecursionError:
        raise StepInfoDecodeError("", "the value is nested too deeply") from None


def _check_unpickled(record: Any) -> None:
    values = record.__dict__
    for name, record_cls, enc, none_ok in _plan(type(record)).unpickled_checks:
        value = values.get(name, _MISSING)
        try:
            if value is _MISSING:
                raise _Bad("the attribute is missing")
            if value is None and none_ok:
                continue
            if record_cls is not None and value is not None:
                if not isinstance(value, record_cls):
                    raise _Bad(f"expected {_describe(record_cls, python=True)}, got {_show(value)}")
                _check_unpickled(value)
            else:
                enc(value)
        except _Bad as e:
            e.parts.append(name)
            raise


# --- the base class ----------------------------------------------------------------------------


_FIELD_VALUES: Dict[type, Callable[[Dict[str, Any]], Any]] = {}


def _field_values(cls: type) -> Callable[[Dict[str, Any]], Any]:
    """A fast getter of a record's field values, in field order, from its ``__dict__``."""
    getter = _FIELD_VALUES.get(cls)
    if getter is None:
        names = [f.name for f in dataclasses.fields(cls)]
        getter = _FIELD_VALUES[cls] = operator.itemgetter(*names)
    return getter


class Record:
    """Base of the record dataclasses: JSON and pickle support derived from their fields, and
    the ``==`` and ``repr`` that ``@dataclass`` would generate.

    The record classes are declared ``@dataclass(eq=False, repr=False)`` and get those two
    methods from here: one generic implementation instead of two generated and compiled per
    class, which keeps ``import tango_stepinfo`` about 1 ms cheaper. They behave as the
    generated ones: ``==`` compares the fields in order between records of the same class (else
    ``NotImplemented``), records are unhashable (they are mutable), and ``repr`` is
    ``Name(field=value, ...)``.
    """

    __dataclass_fields__: ClassVar[Dict[str, dataclasses.Field[Any]]]
    __hash__: ClassVar[None] = None  # type: ignore[assignment]

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        values = _field_values(self.__class__)
        try:
            return bool(values(self.__dict__) == values(other.__dict__))
        except KeyError:  # a field deleted from one of them
            names = [f.name for f in dataclasses.fields(self)]
            return [getattr(self, n, _MISSING) for n in names] == [
                getattr(other, n, _MISSING) for n in names
            ]

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{f.name}={getattr(self, f.name, '<missing>')!r}" for f in dataclasses.fields(self)
        )
        return f"{self.__class__.__qualname__}({fields})"

    def to_json_dict(self, *, tango_compat: bool | None = None) -> Dict[str, Any]:
        """Return a JSON-safe dict of this record: deterministic and lossless.

        Keys are sorted at every level, sets are written as sorted lists, tuples as lists, paths
        as strings and times as ISO 8601 in UTC with microseconds and offset
        (``2024-03-10T06:59:58.123456+00:00``). The result shares no mutable object with the
        record.

        :param tango_compat: write what ai2-tango 1.3.2 writes and reads instead: times in UTC
            to the second without an offset, and none of the fields this library added. When
            omitted, ``$TANGO_STEPINFO_JSON`` decides (``tango``: true; unset: false).
        :raises StepInfoEncodeError: a field holds a value of the wrong type, or ``config`` /
            ``metadata`` holds a value with no JSON form; the message names the field path.
        :raises InvalidSettingError: ``tango_compat`` is omitted and ``$TANGO_STEPINFO_JSON``
            holds an unknown value.
        """
        return encode(self, tango_compat=_json_default.tango_compat(tango_compat))

    @classmethod
    def from_json_dict(cls: type[_T], json_dict: Any) -> _T:
        """Build a record from a dict made by :meth:`to_json_dict` or by ai2-tango 1.3.2.

        Never changes ``json_dict`` and shares no mutable object with it. Never probes this
        machine: a missing field with a plain default takes it, a missing required or probed
        field is an error. Keys this version does not know are ignored.

        :param json_dict: the decoded JSON object.
        :raises StepInfoDecodeError: the input is not a record; the message gives the field path
            and the problem, e.g. ``environment.git.commit: expected a string or null, got 5``.
        """
        return decode(cls, json_dict)

    def __getstate__(self) -> Dict[str, Any]:
        """The pickled state: fields by name, ``None`` fields left out, sets as sorted lists,
        lists of pairs (``packages``) flattened into one tuple ``(name, version, name, ...)``,
        and aware times whose zone is neither a fixed offset nor a pytz zone in UTC.

        Leaving out what a reader fills back in by itself and flattening pairs keep pickles small
        (smaller than Tango's for a record with a real package list); sorting sets keeps them
        byte-for-byte deterministic; a time in another zone (``zoneinfo``, ``dateutil``) is stored
        as the same instant in UTC, which compares equal and loads with nothing but ``datetime``
        and ``pytz`` (a ``zoneinfo`` zone pickles as a call to ``getattr``, which the safe loader
        refuses). :meth:`__setstate__` reads this and every earlier form.
        """
        plan = _plan(type(self))
        values = self.__dict__
        state = {}
        for name, fill in plan.pickle_fill:
            value = values.get(name)
            if value is None and fill is _none:
                continue
            state[name] = value
        for name in plan.set_fields:
            value = state.get(name)
            if isinstance(value, (set, frozenset)):
                try:
                    state[name] = sorted(value)
                except TypeError:
                    state[name] = sorted(value, key=_any_key_order)
        for name in plan.pair_fields:
            value = state.get(name)
            if type(value) is list and all(
                type(row) is tuple and len(row) == 2 and type(row[0]) is str is type(row[1])
                for row in value
            ):
                state[name] = tuple(itertools.chain.from_iterable(value))
        for name in plan.time_fields:
            value = state.get(name)
            if isinstance(value, _dt.datetime) and not _safe_tz(value.tzinfo):
                with contextlib.suppress(OverflowError):  # out of range in UTC: kept as it is
                    state[name] = _as_utc(value, _pytz_utc or _decoded_utc())
        if not state and plan.pickle_fill:
            # Protocols 0 and 1 drop an empty state, and then __setstate__ is never called.
            state[plan.pickle_fill[0][0]] = None
        return state

    def __setstate__(self, state: Any) -> None:
        """Restore from a pickled state written by any version of this library or by Tango.

        Fields missing from ``state`` (added after the pickle was written) take their plain
        default, or ``None`` when the default would probe the machine or there is none;
        attributes this version does not know are dropped. Never probes.
        """
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slots state)
            state = state[0]
        if not isinstance(state, dict):
            raise StepInfoDecodeError(
                type(self).__name__, f"expected a dict as pickled state, got {_show(state)}"
            )
        plan = _plan(type(self))
        values = self.__dict__
        for name, fill in plan.pickle_fill:
            values[name] = state[name] if name in state else fill()
        for name in plan.set_fields:
            value = values[name]
            if isinstance(value, (list, tuple, frozenset)):
                with contextlib.suppress(TypeError):  # unhashable: left as it is for check()
                    values[name] = set(value)
        for name in plan.pair_fields:
            value = values[name]
            if type(value) is tuple and len(value) % 2 == 0 and all(type(x) is str for x in value):
                items = iter(value)
                values[name] = list(zip(items, items))
