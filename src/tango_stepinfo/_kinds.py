"""The kinds of field types a record may have: one registry, one entry per kind.

Each kind says in one place how a value of it is encoded to JSON and decoded from it (for each
:class:`Mode`), how error messages name it, what it looks like in the JSON Schema, how it goes
into and out of a pickle's state, and how the safe loader checks it after loading. The record
plans (:mod:`._plans`), the pickle state rules (:mod:`._record`) and the JSON Schema
(:mod:`._schema`) all ask :func:`kind_of`; a new kind is one more entry in :data:`KINDS`.

The kinds: ``Any`` (a free JSON value), ``str``, ``int``, ``bool``, ``float``, ``datetime``,
paths, enums, nested records, ``Optional[X]``, ``Set[X]`` / ``FrozenSet[X]``, ``List[X]`` /
``Tuple[X, ...]``, ``List[Tuple[str, str]]`` (name/version pairs, kept flat in pickles), fixed
``Tuple[X, Y, ...]``, ``Dict[str, Any]`` (a free JSON object) and ``Dict[str, X]``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import enum
import marshal
import os
import sys
import typing
from collections.abc import Mapping
from operator import is_
from pathlib import Path, PurePath
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import _free, _limits, _times
from ._errors import Bad, Limit, show
from ._record import check_fields

__all__ = ["KINDS", "Kind", "Mode", "checker", "converters", "describe", "kind_of", "retell"]

Convert = Callable[[Any], Any]
NO = object()
"""What :meth:`Kind.match` returns for a type hint that is not of its kind."""


class Mode:
    """What JSON an encoder writes: ours, or what ai2-tango 1.3.2 reads (plain strings: no enum
    class to build at import)."""

    NATIVE = "native"
    TANGO = "tango"


class Kind:
    """One kind of field type. Subclasses override what differs from these defaults."""

    name = ""

    def match(self, tp: Any, origin: Any, args: Tuple[Any, ...]) -> Any:
        """The kind's detail for type hint ``tp`` (e.g. the item type), or :data:`NO`."""
        raise NotImplementedError

    def inner(self, detail: Any) -> Tuple[Any, ...]:
        """The type hints nested inside (item or value types)."""
        return ()

    def describe(self, detail: Any, python: bool) -> str:
        """How an error message names the kind: its JSON form, or with ``python`` its type."""
        raise NotImplementedError

    def converters(self, detail: Any, mode: str) -> Tuple[Convert, Convert]:
        """``(encode, decode)``: each returns the converted value or raises :class:`Bad`."""
        raise NotImplementedError

    def inline(self, detail: Any, var: str) -> Optional[str]:
        """Python source true when ``var`` needs no conversion either way (generated code)."""
        return None

    def direct(self, detail: Any, mode: str) -> Optional[Tuple[type, Convert, Convert]]:
        """``(T, encode, decode)`` for generated code: a value of exactly type ``T`` (either way)
        may be converted by these, skipping the kind's own checks (one Python call less per
        value), with the same result and errors; ``None``: no such shortcut."""
        return None

    def schema(self, detail: Any, builder: Any) -> Dict[str, Any]:
        """The JSON Schema of the JSON form; ``builder`` gives ``of_type`` and ``of_record``."""
        raise NotImplementedError

    def to_state(self, detail: Any) -> Optional[Convert]:
        """How a (non-None) value goes into a pickle's state; ``None``: as it is."""
        return None

    def from_state(self, detail: Any) -> Optional[Convert]:
        """How a (non-None) value comes out of a pickle's state; ``None``: as it is."""
        return None

    def check(self, detail: Any) -> Convert:
        """The safe loader's check of a loaded value (raises :class:`Bad`): by default its
        encoder, which checks the type at every depth."""
        return self.converters(detail, Mode.NATIVE)[0]


KINDS: List[Kind] = []
"""The registry, in the order kinds are tried."""

_FOUND: Dict[Any, Tuple[Kind, Any]] = {}


def kind_of(tp: Any) -> Tuple[Kind, Any]:
    """The kind of the type hint ``tp`` and its detail.

    :raises TypeError: no kind handles ``tp``.
    """
    try:
        return _FOUND[tp]
    except (KeyError, TypeError):
        pass
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    for kind in KINDS:
        detail = kind.match(tp, origin, args)
        if detail is not NO:
            with contextlib.suppress(TypeError):  # an unhashable hint is not kept
                _FOUND[tp] = (kind, detail)
            return kind, detail
    raise TypeError(f"unsupported type hint {tp!r}")


def describe(tp: Any, python: bool = False) -> str:
    """How an error message names ``tp``: its JSON form, or with ``python`` its Python type."""
    kind, detail = kind_of(tp)
    return kind.describe(detail, python)


def converters(tp: Any, mode: str = Mode.NATIVE) -> Tuple[Convert, Convert]:
    """The ``(encode, decode)`` pair of a type hint."""
    kind, detail = kind_of(tp)
    return kind.converters(detail, mode)


def checker(tp: Any) -> Convert:
    """The safe loader's check of a loaded value of type ``tp``."""
    kind, detail = kind_of(tp)
    return kind.check(detail)


def holds_records(tp: Any) -> bool:
    """Whether values of ``tp`` may hold records (which loaded pickles check differently)."""
    kind, detail = kind_of(tp)
    return isinstance(kind, _RecordKind) or any(holds_records(t) for t in kind.inner(detail))


# --- scalars, free values, times, paths, enums -------------------------------------------------


class _Free(Kind):
    name = "any"

    def match(self, tp: Any, origin: Any, args: Tuple[Any, ...]) -> Any:
        return None if tp is Any else NO

    def describe(self, detail: Any, python: bool) -> str:
        return "a JSON value"

    def converters(self, detail: Any, mode: str) -> Tuple[Convert, Convert]:
        return _free.encode, _free.decode

    def schema(self, detail: Any, builder: Any) -> Dict[str, Any]:
        return {}

    def to_state(self, detail: Any) -> Optional[Convert]:
        return _free_state


class _Scalar(Kind):
    def __init__(self, cls: type, json_name: str, schema_type: str) -> None:
        self.cls = cls
        self.name = cls.__name__
        self.json_name = json_name
        self.schema_type = schema_type

    def match(self, tp: Any, origin: Any, args: Tuple[Any, ...]) -> Any:
        return None if tp is self.cls else NO

    def describe(self, detail: Any, python: bool) -> str:
        return self.json_name

    def inline(self, detail: Any, var: str) -> Optional[str]:
        if self.cls is int:
            # Every int below 2**_INT_BITS is within the bound; the converter checks the rest
            # exactly (a C method call: about 25 ns a field).
            return f"(type({var}) is int and {var}.bit_length() < {_INT_BITS})"
        return f"type({var}) is {self.name}"

    def converters(self, detail: Any, mode: str) -> Tuple[Convert, Convert]:
        cls: Any = self.cls
        expected = self.json_name
        # A subclass's value as the base type holds it: str() of a str mixin enum member is
        # "Kind.TRAIN" up to 3.12, and any subclass may override __str__ or __int__.
        plain: Any = {str: str.__str__, int: int.__int__, float: float.__float__}.get(cls)

        def enc(value: Any) -> Any:
            if type(value) is cls and cls is not int:
                return value
            if cls is not bool and isinstance(value, cls) and not isinstance(value, bool):
                return _bounded(plain(value)) if cls is int else plain(value)
            if cls is float and type(value) is int:
                _number(value)
                return value
            raise Bad(f"expected {expected}, got {show(value)}")

        def dec(value: Any) -> Any:
            if type(value) is cls:
                return _bounded(value) if cls is int else value
            if cls is float and type(value) is int:
                return _number(value)
            if cls is int and type(value) is float and value.is_integer():
                return int(value)  # 4.0: JSON does not tell it from 4 (nor does JSON Schema)
            raise Bad(f"expected {expected}, got {show(value)}")

        return enc, dec

    def schema(self, detail: Any, builder: Any) -> Dict[str, Any]:
        return {"type": self.schema_type}

    def check(self, detail: Any) -> Convert:
        if self.cls is not int:
            return super().check(detail)

        # The type only: the safe loader checks the bound itself, after the types
        # (pickling._check_loaded), and reports it as a corrupt pickle.
        def check(value: Any) -> Any:
            if not isinstance(value, int) or isinstance(value, bool):
                raise Bad(f"expected an integer, got {show(value)}")

        return check


_INT_BITS = (_limits.MAX_INT - 1).bit_length()  # 2**(_INT_BITS - 1) < MAX_INT <= 2**_INT_BITS


def _bounded(value: int) -> int:
    """``value`` if it is within :data:`~._limits.MAX_INT` (and, in a number field, a float)."""
    if _limits.MIN_INT < value < _limits.MAX_INT:
        return value
    raise Limit(f"{show(value)} is out of range: ints have at most {_limits.MAX_INT_DIGITS} digits")


def _number(value: int) -> float:
    """The int ``value`` in a number field, as a float."""
    try:
        return float(_bounded(value))
    except OverflowError:
        raise Bad(f"{show(value)} is out of range for a number") from None


class _Time(Kind):
    name = "datetime"

    def match(self, tp: Any, origin: Any, args: Tuple[Any, ...]) -> Any:
        return None if tp is _dt.datetime else NO

    def describe(self, detail: Any, python: bool) -> str:
        return "a datetime" if python else "an ISO 8601 time"

    def converters(self, detail: Any, mode: str) -> Tuple[Convert, Convert]:
        # Each field its own pair, each keeping its last time (see _times.encoder).
        return _times.encoder(mode is Mode.TANGO), _times.decoder()

    def schema(self, detail: Any, builder: Any) -> Dict[str, Any]:
        # "$(?!\n)": the end of the text in every dialect; Python's ``re`` (which Python
        # validators use) also matches a bare "$" before a final newline, the decoder does not.
        return {
            "type": "string",
            "pattern": f"^(?:{_times.TIME_PATTERN})$(?!\\n)",
            "description": "ISO 8601 time; without an offset it means UTC",
        }

    def to_state(self, detail: Any) -> Optional[Convert]:
        return _times.to_state


# Paths are immutable and records repeat the same few (executable, root), while building one
# costs microseconds: decoded paths are shared through this small cache.
_PATHS: Dict[str, Path] = {}


def _enc_path(value: Any) -> str:
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, str):  # Tango writes strings into path fields
        return str(value)
    if isinstance(value, os.PathLike):
        text = os.fspath(value)
        if isinstance(text, str):
            return text
    raise Bad(f"expected a path, got {show(value)}")


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
    raise Bad(f"expected a path string, got {show(value)}")


class _Path(Kind):
    name = "path"

    def match(self, tp: Any, origin: Any, args: Tuple[Any, ...]) -> Any:
        return None if isinstance(tp, type) and issubclass(tp, PurePath) else NO

    def describe(self, detail: Any, python: bool) -> str:
        return "a path" if python else "a path string"

    def converters(self, detail: Any, mode: str) -> Tuple[Convert, Convert]:
        return _enc_path, _dec_path

    def schema(self, detail: Any, builder: Any) -> Dict[str, Any]:
        return {"type": "string"}

    def to_state(self, detail: Any) -> Optional[Convert]:
        # A path goes into the state as its text: Python 3.13 pickles a Path as
        # ``pathlib._local.PosixPath``, which Python 3.12 and earlier cannot load.
        return lambda value: str(value) if isinstance(value, PurePath) else value

    def from_state(self, detail: Any) -> Optional[Convert]:
        # Text (this version's pickles, and strings Tango put in path fields) becomes a Path as
        # from_json_dict makes it; a pickled path object (earlier pickles) stays as it is.
        return lambda value: _dec_path(value) if type(value) is str else value


class _Enum(Kind):
    """An enum: its value in JSON and in pickles (so that loading needs no enum class)."""

    name = "enum"

    def match(self, tp: Any, origin: Any, args: Tuple[Any, ...]) -> Any:
        return tp if isinstance(tp, type) and issubclass(tp, enum.Enum) else NO

    def describe(self, detail: Any, python: bool) -> str:
        if python:
            return f"a {detail.__name__}"
        return "one of " + ", ".join(show(m.value) for m in detail)

    def converters(self, detail: Any, mode: str) -> Tuple[Convert, Convert]:
        expected_member = self.describe(detail, True)
        expected_value = self.describe(detail, False)

        def enc(value: Any) -> Any:
            if isinstance(value, detail):
                return _free.encode(value.value)
            raise Bad(f"expected {expected_member}, got {show(value)}")

        def dec(value: Any) -> Any:
            if isinstance(value, detail):
                return value
            try:
                return detail(value)
            except (ValueError, TypeError):
                raise Bad(f"expected {expected_value}, got {show(value)}") from None

        return enc, dec

    def schema(self, detail: Any, builder: Any) -> Dict[str, Any]:
        return {"enum": [m.value for m in detail]}

    def to_state(self, detail: Any) -> Optional[Convert]:
        return lambda value: value.value if isinstance(value, detail) else value

    def from_state(self, detail: Any) -> Optional[Convert]:
        def restore(value: Any) -> Any:
            try:
                return detail(value)
            except (ValueError, TypeError):  # left as it is for the check to report
                return value

        return restore


# --- records -----------------------------------------------------------------------------------


class _RecordKind(Kind):
    name = "record"

    def match(self, tp: Any, origin: Any, args: Tuple[Any, ...]) -> Any:
        return tp if isinstance(tp, type) and dataclasses.is_dataclass(tp) else NO

    def describe(self, detail: Any, python: bool) -> str:
        if not python:
            return "an object"
        name = detail.__name__
        return f"an {name}" if name[0] in "AEIOU" else f"a {name}"

    def converters(self, detail: Any, mode: str) -> Tuple[Convert, Convert]:
        # Nested plans are looked up on first call, not while compiling: a record type may
        # refer to itself or to one that is not fully defined yet.
        cls = detail
        expected = self.describe(cls, True)
        encode: Optional[Convert] = None
        decode: Optional[Convert] = None

        def enc(value: Any) -> Any:
            nonlocal encode
            if not isinstance(value, cls):
                raise Bad(f"expected {expected}, got {_other(value, cls)}")
            if encode is None:
                from ._plans import plan

                encode = plan(cls, mode).encode
            return encode(value)

        def dec(value: Any) -> Any:
            nonlocal decode
            if decode is None:
                from ._plans import plan

                decode = plan(cls).decode
            return decode(value)

        return enc, dec

    def schema(self, detail: Any, builder: Any) -> Dict[str, Any]:
        return typing.cast(Dict[str, Any], builder.of_record(detail))

    def check(self, detail: Any) -> Convert:
        cls = detail
        expected = self.describe(cls, True)

        def check(value: Any) -> Any:
            if not isinstance(value, cls):
                raise Bad(f"expected {expected}, got {_other(value, cls)}")
            check_fields(value)

        return check


def _other(value: Any, cls: type) -> str:
    """:func:`show` of a value that is not a ``cls``; a class of the same name (Tango's own
    ``PlatformMetadata`` where this library's is expected) is named with its module."""
    kind = type(value)
    if kind.__name__ == cls.__name__:
        return f"a {kind.__module__}.{kind.__qualname__}, not {cls.__module__}'s"
    return show(value)


# --- Optional ----------------------------------------------------------------------------------


class _Optional(Kind):
    name = "optional"

    def match(self, tp: Any, origin: Any, args: Tuple[Any, ...]) -> Any:
        if origin is typing.Union and len(args) == 2 and args[1] is type(None):
            return args[0]
        return NO

    def inner(self, detail: Any) -> Tuple[Any, ...]:
        return (detail,)

    def describe(self, detail: Any, python: bool) -> str:
        return describe(detail, python) + " or null"

    def inline(self, detail: Any, var: str) -> Optional[str]:
        kind, inner = kind_of(detail)
        check = kind.inline(inner, var)
        return None if check is None else f"({var} is None or {check})"

    def converters(self, detail: Any, mode: str) -> Tuple[Convert, Convert]:
        enc, dec = converters(detail, mode)
        return (
            _or_none(enc, self.describe(detail, True)),
            _or_none(dec, self.describe(detail, False)),
        )

    def direct(self, detail: Any, mode: str) -> Optional[Tuple[type, Convert, Convert]]:
        kind, inner = kind_of(detail)
        return kind.direct(inner, mode)

    def unwrapped(self, detail: Any, mode: str) -> Tuple[Convert, Convert, str, str]:
        """The inner ``(encode, decode)`` and what each says is expected, for generated code
        that tests ``None`` itself and calls :func:`retell` on a type error: one call less per
        value than :meth:`converters` (measured: see the commit adding it)."""
        enc, dec = converters(detail, mode)
        return enc, dec, self.describe(detail, True), self.describe(detail, False)

    def schema(self, detail: Any, builder: Any) -> Dict[str, Any]:
        inner = builder.of_type(detail)
        if isinstance(inner.get("type"), str):
            # Keywords for one JSON type ignore the others, so merging the types is exact.
            return {**inner, "type": [inner["type"], "null"]}
        return {"anyOf": [inner, {"type": "null"}]}

    def to_state(self, detail: Any) -> Optional[Convert]:
        kind, inner = kind_of(detail)
        return kind.to_state(inner)

    def from_state(self, detail: Any) -> Optional[Convert]:
        kind, inner = kind_of(detail)
        return kind.from_state(inner)

    def check(self, detail: Any) -> Convert:
        return _or_none(checker(detail), self.describe(detail, True))


def _or_none(inner: Convert, expected: str) -> Convert:
    """``None`` as it is, else ``inner``; a type error about the value itself says ``expected``
    (``"a string or null"``)."""

    def convert(value: Any) -> Any:
        if value is None:
            return None
        try:
            return inner(value)
        except Bad as e:
            retell(e, expected, value)
            raise

    return convert


def retell(e: Bad, expected: str, value: Any) -> None:
    """Make a type error about ``value`` itself (not inside it) say ``expected``."""
    if not e.parts and e.problem.startswith("expected "):
        _, found, got = e.problem.partition(", got ")  # the inner converter's words for it
        e.problem = f"expected {expected}, got {got if found else show(value)}"


# --- sequences ---------------------------------------------------------------------------------

_STR_TYPES = frozenset({str})
_ROW_TYPES = frozenset({list, tuple})


def _sequence(origin: Any, item_tp: Any, mode: str) -> Tuple[Convert, Convert]:
    item_enc, item_dec = converters(item_tp, mode)
    is_set = origin in (set, frozenset)
    build: Callable[[List[Any]], Any] = origin if origin is not list else list
    expected = "a set" if is_set else "a list"
    shapes = (set, frozenset) if is_set else (list, tuple)
    strs = item_tp is str  # the hot shape (dependencies): one pass over the types

    def enc(value: Any) -> Any:
        if strs and type(value) in shapes and set(map(type, value)) <= _STR_TYPES:
            return sorted(value) if is_set else list(value)
        if not isinstance(value, shapes):
            raise Bad(f"expected {expected}, got {show(value)}")
        out = []
        for i, item in enumerate(value):
            try:
                out.append(item_enc(item))
            except Bad as e:
                raise e.inside(f"[{i}]") from None
        if is_set:
            try:
                out.sort()
            except TypeError:
                out.sort(key=_free.key_order)
        return out

    def dec(value: Any) -> Any:
        if strs and type(value) is list and set(map(type, value)) <= _STR_TYPES:
            return build(value)  # what the loop below gives, without a call per item
        if type(value) is not list and not isinstance(value, (tuple, set, frozenset)):
            raise Bad(f"expected a list, got {show(value)}")
        out = []
        for i, item in enumerate(value):
            try:
                out.append(item_dec(item))
            except Bad as e:
                raise e.inside(f"[{i}]") from None
        try:
            return build(out)
        except TypeError:  # unhashable members of a set
            raise Bad("the members cannot form a set") from None

    return enc, dec


def _check_items(item_tp: Any, shapes: Tuple[type, ...], expected: str) -> Convert:
    item_check = checker(item_tp)

    def check(value: Any) -> Any:
        if not isinstance(value, shapes):
            raise Bad(f"expected {expected}, got {show(value)}")
        items: Any = value
        for i, item in enumerate(items):
            try:
                item_check(item)
            except Bad as e:
                raise e.inside(f"[{i}]") from None

    return check


class _Set(Kind):
    """``Set[X]`` and ``FrozenSet[X]``: sorted lists in JSON and in pickles (deterministic)."""

    name = "set"

    def match(self, tp: Any, origin: Any, args: Tuple[Any, ...]) -> Any:
        return (origin, args[0]) if origin in (set, frozenset) else NO

    def inner(self, detail: Any) -> Tuple[Any, ...]:
        return (detail[1],)

    def describe(self, detail: Any, python: bool) -> str:
        return "a set" if python else "a list"

    def converters(self, detail: Any, mode: str) -> Tuple[Convert, Convert]:
        return _sequence(detail[0], detail[1], mode)

    def schema(self, detail: Any, builder: Any) -> Dict[str, Any]:
        # Written without repeats; readers accept repeats.
        return {"type": "array", "items": builder.of_type(detail[1])}

    def to_state(self, detail: Any) -> Optional[Convert]:
        def out(value: Any) -> Any:
            if isinstance(value, (set, frozenset)):
                try:
                    return sorted(value)
                except TypeError:
                    return sorted(value, key=_free.key_order)
            return value

        return out

    def from_state(self, detail: Any) -> Optional[Convert]:
        build = detail[0]

        def restore(value: Any) -> Any:
            if isinstance(value, (list, tuple, set, frozenset)) and type(value) is not build:
                try:
                    return build(value)
                except TypeError:  # unhashable: left as it is for the check to report
                    return value
            return value

        return restore


class _List(Kind):
    """``List[X]`` and ``Tuple[X, ...]``."""

    name = "list"

    def match(self, tp: Any, origin: Any, args: Tuple[Any, ...]) -> Any:
        if origin is list or (origin is tuple and args[-1:] == (Ellipsis,)):
            return (origin, args[0])
        return NO

    def inner(self, detail: Any) -> Tuple[Any, ...]:
        return (detail[1],)

    def describe(self, detail: Any, python: bool) -> str:
        return "a list"

    def converters(self, detail: Any, mode: str) -> Tuple[Convert, Convert]:
        return _sequence(detail[0], detail[1], mode)

    def schema(self, detail: Any, builder: Any) -> Dict[str, Any]:
        return {"type": "array", "items": builder.of_type(detail[1])}

    def check(self, detail: Any) -> Convert:
        if not holds_records(detail[1]):
            return super().check(detail)
        return _check_items(detail[1], (list, tuple), "a list")


_PAIR = Tuple[str, str]

# Decoded package rows are shared: every record read back from one workspace carries (nearly) the
# same 70 to 600 ``(name, version)`` rows, and a fresh tuple and two fresh strings per row made a
# decoded record hold 17 KB against 3.4 KB for a built one. Each decoded row is the same tuple as
# the equal row of the package list decoded last (:data:`_last_rows`), compared row by row at the
# same place, else the row last seen for that name in :data:`_ROWS` when its version is equal, else
# a new row kept there. Tuples and str are immutable; the list stays fresh per record. Bounded:
# ``_ROWS`` is cleared whole when it reaches ``_ROWS_MAX`` names, so hostile input cannot grow it.
_ROWS: Dict[str, Tuple[str, str]] = {}
_ROWS_MAX = 8192
_last_rows: List[Tuple[str, str]] = []
"""The rows of the package list decoded last: a private list, replaced whole, never changed (so
threads may read it while another replaces it)."""


def _shared_row(name: Any, version: Any) -> Tuple[str, str]:
    """The shared row of two plain strings (for a row that is not the one at its place in
    :data:`_last_rows`: the hits are inlined).

    :raises ValueError: the row is not two plain strings (the caller takes its slow path).
    """
    if type(name) is not str or type(version) is not str:
        raise ValueError(name)
    row = _ROWS.get(name)
    if row is not None and row[1] == version:
        return row
    if len(_ROWS) >= _ROWS_MAX:
        _ROWS.clear()
    row = _ROWS[name] = (sys.intern(name), sys.intern(version))
    return row


def _shared_rows(pairs: Any, size: int) -> List[Tuple[str, str]]:
    """The shared rows of ``size`` pairs ``(name, version)`` (an iterable of rows that unpack to
    two items each, or of flat items taken two by two), as a new list.

    Each item is checked to be a plain ``str`` first (``type(x) is str``), so that no code of the
    caller's objects runs here and a str subclass, or an object that compares equal to a string,
    is refused whether or not its row is shared already, as the slow path refuses it.

    Measured (CPU, 3.11, interleaved in-process A/B, fresh ``json.loads`` input): against the
    lookup by name per row this replaced, which took a str subclass or an object equal to
    anything in a row already shared, ``from_json_dict`` of the 70-package record +2% and of the
    569-package one -6% (hashing each fresh name cost more than two string compares; the lookup
    with the type checks added cost +25% on 569 rows). Comparing the whole list with the last
    one (``==``: 3 us for 70 rows) and then checking the types (``map(type, ...)``) took 9.6 us
    against 7.7 us for these 70 rows. Python 3.9, whose ``type(x)`` calls are not specialized,
    pays for the checks: 569 rows alone 120 us against 88 us unchecked (the lookup with the
    checks: 134 us). A list from JSON equal to the last one is answered before this, where
    :data:`_WHOLE_LIST` says so (marshal bytes compared whole: all C, no call per row).

    :raises ValueError: a row is not two plain strings or does not unpack to two items (the
        caller takes its slow path).
    """
    global _last_rows
    last = _last_rows
    if size == len(last):
        out = [
            r if type(a) is str is type(b) and r[0] == a and r[1] == b else _shared_row(a, b)
            for (a, b), r in zip(pairs, last)
        ]
    else:
        get = _ROWS.get
        out = [
            r
            if type(a) is str is type(b) and (r := get(a)) is not None and r[1] == b
            else _shared_row(a, b)
            for a, b in pairs
        ]
    if out != last:  # the same rows: an identity check per row
        _last_rows = out.copy()
    return out


_WHOLE_LIST = sys.version_info < (3, 11)
"""Whether :func:`_json_rows` first compares a package list whole with the last one, as marshal
bytes (the one place that decides; both ways give the same rows and errors).

Not from 3.11: its ``marshal.dumps`` orders the items of a set by their own marshal bytes, made
again at each level, so sets nested in a row (which a caller's dict may hold) take time
exponential in their depth (18 levels: 0.25 s, and twice as long a level more).
Before 3.12 a class written in Python cannot export a buffer (``__buffer__``, PEP 688), so
``marshal.dumps`` runs no Python code of the caller's objects: it writes exact ``list``,
``tuple``, ``str`` (and other builtin) objects itself and fails on any other one, a ``str``
subclass included; only a C type's buffer (``bytearray``, ``memoryview``, a numpy array) is read,
as bytes, which never equal a string's. From 3.12 a ``__buffer__`` method would run: the rows are
checked one by one there. Measured (CPU, interleaved A/B against the row-by-row check, fresh
``json.loads`` input, 70 rows): 3.9 4.1 against 12.6 us, 3.10 4.3 / 11.3 (3.11: 3.9 / 6.7)."""

_last_json: Tuple[Tuple[bytes, List[Tuple[str, str]]], ...] = ()
"""``(marshal.dumps(value), rows)`` of the last :data:`_JSON_LISTS` different package lists
:func:`_json_rows` decoded (the bytes as the list came, before any string of it was interned;
the rows a private list), the latest first: one tuple, replaced whole (safe between threads)."""

_JSON_LISTS = 4
"""How many package lists :data:`_last_json` keeps: a store holding records of a few
environments in turn would otherwise miss every time. Measured (``from_json_dict``, two 70-row
lists differing in two versions, in turn; CPU, interleaved A/B against the row-by-row check):
one kept, 3.9 +11%, 3.11 +12% (each miss costs ``marshal.dumps``); four kept, 3.9 -45%, 3.11
-26%."""


def _json_rows(value: List[Any]) -> Optional[List[Tuple[str, str]]]:
    """The shared rows of the package list ``value`` from JSON (a new list), or ``None`` when it
    is not a list of rows of two plain strings (the caller's slow path then says what is wrong).

    With :data:`_WHOLE_LIST`, a list whose marshal bytes equal those of a list decoded lately
    (:data:`_last_json`) is answered with that list's rows at once: equal bytes mean the same
    row types, each row of two exact ``str`` (marshal writes the type of each object, and the
    kept bytes are those of a list :func:`_shared_rows` took) with the same text. Else the rows
    are checked and shared one by one by :func:`_shared_rows`.
    """
    global _last_json, _last_rows
    text = b""
    if _WHOLE_LIST:
        try:
            text = marshal.dumps(value)
        except ValueError:  # an object marshal does not write: not plain strings
            return None
        for kept, rows in _last_json:
            if text == kept:
                # the last rows too: an equal list whose bytes differ (its strings shared or
                # interned otherwise) then shares these rows, compared row by row
                _last_rows = rows
                return rows.copy()
        if len(value) <= _ROWS_MAX:
            # The rows are taken from a copy made from these bytes, so that the bytes kept are
            # those of the rows checked even if another thread changes the caller's list now.
            value = marshal.loads(text)
        else:  # not kept (bounded as _ROWS is)
            text = b""
    if (
        # Rows as json.loads makes them; counting is cheaper than a set (3 us in 569).
        list(map(type, value)).count(list) == len(value) or set(map(type, value)) <= _ROW_TYPES
    ):
        try:
            out = _shared_rows(value, len(value))
        except (TypeError, ValueError):  # not 2 items, an unhashable one, not strings
            return None
        if text:
            _last_json = ((text, out.copy()), *_last_json[: _JSON_LISTS - 1])
        return out
    return None


class _Pairs(Kind):
    """``List[Tuple[str, str]]`` (``packages``): fast paths, and one flat tuple in pickles."""

    name = "string pairs"

    def match(self, tp: Any, origin: Any, args: Tuple[Any, ...]) -> Any:
        return None if origin is list and args == (_PAIR,) else NO

    def inner(self, detail: Any) -> Tuple[Any, ...]:
        return (_PAIR,)

    def describe(self, detail: Any, python: bool) -> str:
        return "a list"

    def converters(self, detail: Any, mode: str) -> Tuple[Convert, Convert]:
        slow_enc, slow_dec = _sequence(list, _PAIR, mode)
        # Every record of a process carries the same package list: the last one encoded is
        # kept (a copy of it, and its rows) and a list of the very same rows is answered with
        # fresh copies. The same rows, not equal ones: a row equal to a kept one may hold a str
        # subclass or an object that compares equal to anything (which the slow path refuses),
        # and only tuples are kept (a list row may change in place between two calls).
        last: List[Any] = [((), ())]  # [(copy of the list, its encoded rows)]

        def enc(value: Any) -> Any:
            if type(value) is list:
                snapshot, rows = last[0]  # one tuple, replaced whole: safe between threads
                if len(value) == len(snapshot) and all(map(is_, value, snapshot)):
                    return list(map(list.copy, rows))
                if list(map(type, value)).count(tuple) == len(value):
                    try:
                        out = [[a, b] for a, b in value if type(a) is str is type(b)]
                    except ValueError:  # a row of another length: the slow path says which
                        return slow_enc(value)
                    if len(out) == len(value):
                        last[0] = (list(value), list(map(list.copy, out)))
                        return out
            return slow_enc(value)

        def dec(value: Any) -> Any:
            if type(value) is list:
                rows = _json_rows(value)
                if rows is not None:
                    return rows
            return slow_dec(value)

        return enc, dec

    def schema(self, detail: Any, builder: Any) -> Dict[str, Any]:
        return {"type": "array", "items": builder.of_type(_PAIR)}

    def to_state(self, detail: Any) -> Optional[Convert]:
        def out(value: Any) -> Any:
            if type(value) is list and all(
                type(row) is tuple and len(row) == 2 and type(row[0]) is str is type(row[1])
                for row in value
            ):
                return tuple(item for row in value for item in row)
            return value

        return out

    def from_state(self, detail: Any) -> Optional[Convert]:
        def restore(value: Any) -> Any:
            # The rows shared as from_json_dict shares them, the items' types checked on the way
            # (not in a pass of their own): pickle.loads of the 70-package record -9% (CPU,
            # 3.11, interleaved in-process A/B, paired median of 21 rounds).
            if type(value) is tuple and len(value) % 2 == 0:
                items = iter(value)
                try:
                    return _shared_rows(zip(items, items), len(value) // 2)
                except ValueError:  # not all plain strings: left as it is for the check
                    pass
            return value

        return restore


class _Tuple(Kind):
    """A fixed-length ``Tuple[X, Y, ...]``: a list of that many items in JSON."""

    name = "tuple"

    def match(self, tp: Any, origin: Any, args: Tuple[Any, ...]) -> Any:
        return args if origin is tuple else NO

    def inner(self, detail: Any) -> Tuple[Any, ...]:
        return tuple(detail)

    def describe(self, detail: Any, python: bool) -> str:
        return "a list"

    def converters(self, detail: Any, mode: str) -> Tuple[Convert, Convert]:
        pairs = [converters(a, mode) for a in detail]
        size = len(pairs)
        all_str = all(a is str for a in detail)  # Tuple[str, str]: a package row

        def convert(value: Any, index: int) -> Any:
            out = []
            for i, (pair, item) in enumerate(zip(pairs, value)):
                try:
                    out.append(pair[index](item))
                except Bad as e:
                    raise e.inside(f"[{i}]") from None
            return out

        def enc(value: Any) -> Any:
            if isinstance(value, (tuple, list)):
                if len(value) == size:
                    if all_str and all(type(v) is str for v in value):
                        return list(value)
                    return convert(value, 0)
                raise Bad(f"expected {size} items, got {len(value)}")
            raise Bad(f"expected a list of {size} items, got {show(value)}")

        def dec(value: Any) -> Any:
            if type(value) is list or type(value) is tuple:
                if len(value) == size:
                    if all_str and all(type(v) is str for v in value):
                        return tuple(value)
                    return tuple(convert(value, 1))
                raise Bad(f"expected a list of {size} items, got {len(value)}")
            raise Bad(f"expected a list of {size} items, got {show(value)}")

        return enc, dec

    def schema(self, detail: Any, builder: Any) -> Dict[str, Any]:
        return {
            "type": "array",
            "prefixItems": [builder.of_type(a) for a in detail],
            "items": False,
            "minItems": len(detail),
            "maxItems": len(detail),
        }

    def check(self, detail: Any) -> Convert:
        if not any(holds_records(a) for a in detail):
            return super().check(detail)
        checks = [checker(a) for a in detail]

        def check(value: Any) -> Any:
            if not isinstance(value, (tuple, list)) or len(value) != len(checks):
                raise Bad(f"expected a list of {len(checks)} items, got {show(value)}")
            for i, (item_check, item) in enumerate(zip(checks, value)):
                try:
                    item_check(item)
                except Bad as e:
                    raise e.inside(f"[{i}]") from None

        return check


# --- dicts -------------------------------------------------------------------------------------


class _FreeObject(Kind):
    """``Dict[str, Any]`` (``config``, ``metadata``): a free JSON object."""

    name = "free object"

    def match(self, tp: Any, origin: Any, args: Tuple[Any, ...]) -> Any:
        return None if origin is dict and args == (str, Any) else NO

    def describe(self, detail: Any, python: bool) -> str:
        return "an object"

    def converters(self, detail: Any, mode: str) -> Tuple[Convert, Convert]:
        def enc(value: Any) -> Any:
            if type(value) is not dict and not isinstance(value, Mapping):
                raise Bad(f"expected an object, got {show(value)}")
            return _free.encode_dict(value)

        def dec(value: Any) -> Any:
            if not isinstance(value, dict):
                raise Bad(f"expected an object, got {show(value)}")
            return _free.decode_dict(value)

        return enc, dec

    def direct(self, detail: Any, mode: str) -> Optional[Tuple[type, Convert, Convert]]:
        # A dict passes the checks above; what the free-value functions raise for one is never a
        # type error about the value itself (which an Optional wrapper would retell).
        return dict, _free.encode_dict, _free.decode_dict

    def schema(self, detail: Any, builder: Any) -> Dict[str, Any]:
        return {"type": "object"}

    def to_state(self, detail: Any) -> Optional[Convert]:
        return _free_state

    def check(self, detail: Any) -> Convert:
        enc = self.converters(detail, Mode.NATIVE)[0]

        def check(value: Any) -> Any:
            # The safe loader checks ints and depth itself, after the types, walking the whole
            # value (pickling._check_loaded), and reports it as a corrupt pickle.
            with contextlib.suppress(Limit):
                enc(value)

        return check


def _free_state(value: Any) -> Any:
    """A free value (``config``, ``metadata``) in a pickle's state: its JSON value, as
    ``to_json_dict`` writes it, so that loading it needs no class but the JSON ones (a numpy
    ``float64`` becomes a float, a tuple a list, a ``Path`` a string).

    A value that is JSON already goes in as it is, keys in their order (a Tango pickle migrated
    to ours and back keeps its bytes; checking costs less than copying). A value with no JSON
    form goes in as it is too: ``pickle.loads`` reads it, the safe loader refuses it. Earlier
    pickles hold raw values; they load as they are (the safe loader turns them into JSON
    values)."""
    try:
        if _free.is_json(value):
            return value
        return _free.encode(value)
    except (Bad, RecursionError):
        return value


class _Dict(Kind):
    """``Dict[str, X]``: an object in JSON, keys sorted."""

    name = "dict"

    def match(self, tp: Any, origin: Any, args: Tuple[Any, ...]) -> Any:
        return args[1] if origin is dict and args[0] is str else NO

    def inner(self, detail: Any) -> Tuple[Any, ...]:
        return (detail,)

    def describe(self, detail: Any, python: bool) -> str:
        return "a dict" if python else "an object"

    def converters(self, detail: Any, mode: str) -> Tuple[Convert, Convert]:
        item_enc, item_dec = converters(detail, mode)
        strs = detail is str  # Dict[str, str]: one pass over the types

        def enc(value: Any) -> Any:
            if type(value) is dict and not value:
                return {}  # (variables, most often)
            if (
                strs
                and type(value) is dict
                and set(map(type, value)) <= _STR_TYPES
                and set(map(type, value.values())) <= _STR_TYPES
            ):
                return {key: value[key] for key in sorted(value)}
            if not isinstance(value, Mapping):
                raise Bad(f"expected an object, got {show(value)}")
            out = {}
            for key in sorted(value, key=_free.key_order):
                if not isinstance(key, str):
                    raise Bad(f"object keys must be strings, got {show(key)}")
                try:
                    out[key] = item_enc(value[key])
                except Bad as e:
                    raise e.inside(key) from None
            return out

        def dec(value: Any) -> Any:
            if not isinstance(value, dict):
                raise Bad(f"expected an object, got {show(value)}")
            out = {}
            for key, item in value.items():
                if type(key) is not str:
                    raise Bad(f"object keys must be strings, got {show(key)}")
                try:
                    out[key] = item_dec(item)
                except Bad as e:
                    raise e.inside(key) from None
            return out

        return enc, dec

    def schema(self, detail: Any, builder: Any) -> Dict[str, Any]:
        return {"type": "object", "additionalProperties": builder.of_type(detail)}

    def check(self, detail: Any) -> Convert:
        if not holds_records(detail):
            return super().check(detail)
        item_check = checker(detail)

        def check(value: Any) -> Any:
            if not isinstance(value, Mapping):
                raise Bad(f"expected an object, got {show(value)}")
            for key, item in value.items():
                if not isinstance(key, str):
                    raise Bad(f"object keys must be strings, got {show(key)}")
                try:
                    item_check(item)
                except Bad as e:
                    raise e.inside(key) from None

        return check


KINDS += [
    _Free(),
    _Scalar(str, "a string", "string"),
    _Scalar(bool, "a boolean", "boolean"),
    _Scalar(int, "an integer", "integer"),
    _Scalar(float, "a number", "number"),
    _Time(),
    _Path(),
    _Enum(),
    _RecordKind(),
    _Optional(),
    _Set(),
    _Pairs(),
    _List(),
    _Tuple(),
    _FreeObject(),
    _Dict(),
]
