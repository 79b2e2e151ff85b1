"""Loading pickled records without running code: :func:`loads` and :func:`load`.

:func:`pickle.loads` calls whatever a pickle names, so a crafted record file runs code on
whoever opens it. These functions read the same pickles (any protocol, 0 to 5, written by this
library or by ai2-tango 1.3.2) but only ever call what is on an allow list, with checked
arguments, and check the result before handing it out.

**Allowed globals** (anything else raises :class:`~tango_stepinfo.UnsafePickleError` naming it):

- the record classes (``StepInfo``, ``PlatformMetadata``, ``EnvironmentMetadata``,
  ``GitMetadata``, ``TangoMetadata`` and any other subclass of ``Record`` in this package) and
  the enum ``StepState``, under
  ``tango_stepinfo.step_info`` / ``tango_stepinfo.metadata`` and under Tango's
  ``tango.step_info`` (mapped onto ours). Creating a record never calls its ``__init__`` (which
  would probe the machine); its state goes through ``Record.__setstate__``, which fills fields
  missing from old pickles and drops unknown ones.
- ``datetime.datetime``, ``date``, ``timedelta`` and ``timezone``;
- pytz's ``_UTC``, ``_p`` (named time zones, checked against pytz's list of zones) and
  ``FixedOffset``;
- ``pathlib``'s ``Path``, ``PosixPath``, ``WindowsPath``, ``PurePath``, ``PurePosixPath`` and
  ``PureWindowsPath`` (also as ``pathlib._local``, where Python 3.13 puts them); a concrete path
  of the other operating system loads as the matching pure path;
- the containers ``set``, ``frozenset``, ``list``, ``dict``, ``tuple`` and ``object``;
- for protocols 0 to 2: ``copyreg._reconstructor`` (only as ``_reconstructor(record class,
  object, None)``) and ``_codecs.encode`` (only as ``encode(str, "latin1")``). Python 2 names
  (``__builtin__``, ``copy_reg``) are mapped as :mod:`pickle` does.

**Checks before anything is called.** The whole pickle is read opcode by opcode first:
every global it names (including ``STACK_GLOBAL`` ones) must be allowed, copyreg extension codes
are refused, memo indexes must be plausible, only a record may be given a state (``BUILD``),
values may nest at most :data:`~tango_stepinfo._limits.MAX_DEPTH` (200) levels deep plus the
few levels records add (deeper nesting can crash the interpreter while hashing), and the JSON
the result would expand to is estimated, shared references counted each time they are used: at
most :data:`~tango_stepinfo._limits.JSON_BYTES_PER_PICKLE_BYTE` (8) bytes per byte of pickle
plus 1 MiB.

**Checks after loading.** The result must be a record, a ``StepState``, or a ``list``, ``tuple``
or ``dict`` of them; every record is checked field by field (a wrong type raises
:class:`~tango_stepinfo.StepInfoDecodeError` naming the field), and reference cycles are refused.

Every other failure (truncated or corrupt bytes, wrong arguments to an allowed callable)
raises :class:`CorruptPickleError`, so callers catch :class:`pickle.UnpicklingError` and
:class:`~tango_stepinfo.StepInfoDecodeError` only.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import os
import pickle
import re
from itertools import compress, repeat
from operator import and_, is_
from pathlib import Path, PurePath
from typing import IO, Any, Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple

from . import _limits, _record, _times
from ._errors import show
from .errors import StepInfoDecodeError
from .step_info import StepState


class UnsafePickleError(pickle.UnpicklingError):
    """The safe loader refused a pickle because it names a global outside the allow list.

    Raised before anything named by the pickle is called.

    :ivar name: the refused global as ``module.qualname``.
    """

    def __init__(self, name: str, reason: str = "not on the allow list") -> None:
        self.name = name
        super().__init__(f"refused to load global {name!r}: {reason}")

    def __reduce__(self) -> tuple[type[UnsafePickleError], tuple[str]]:
        return type(self), (self.name,)


class CorruptPickleError(pickle.UnpicklingError):
    """The safe loader was given bytes that are not a well-formed pickle of records, or that go
    past its limits (nesting depth, size of the loaded value).

    The message says what was wrong; the original exception, if any, is the ``__cause__``.
    """


__all__ = ["CorruptPickleError", "UnsafePickleError", "load", "loads"]

_RECORDS = _record.RECORDS
"""The record classes: each is registered by its own class statement (see :mod:`._record`);
importing :mod:`.step_info` above has defined them all."""


# --- what find_class hands out -----------------------------------------------------------------


class _Frozen(type):
    """Metaclass of the stand-in record classes: a pickle cannot set attributes on them."""

    def __setattr__(cls, name: str, value: Any) -> None:
        raise AttributeError(f"{cls.__name__} is read-only")

    def __delattr__(cls, name: str) -> None:
        raise AttributeError(f"{cls.__name__} is read-only")


def _bare(real: type) -> Any:
    """A new ``real`` with every field at its plain default or ``None``, never probing.

    ``BUILD`` then sets the pickled state; a pickle may lack it (protocols 0 and 1 leave out an
    empty state), and the record is still complete.
    """
    record: Any = object.__new__(real)
    record.__setstate__({})
    return record


def _stand_in(real: type) -> type:
    """A subclass of ``real`` whose construction returns a bare ``real``, never calling __init__.

    ``NEWOBJ`` needs a class and ``REDUCE`` calls it; both end here and get
    :func:`_bare` ``(real)``. Since the result is not an instance of the stand-in, ``type.__call__``
    skips ``__init__`` (whose default factories would probe the machine).
    """

    def __new__(cls: type, *args: Any, **kwargs: Any) -> Any:
        return _bare(real)

    return _Frozen(real.__name__, (real,), {"__new__": __new__, "__slots__": ()})


class _Call:
    """An allowed callable: wraps a checking function; a pickle cannot change its attributes."""

    __slots__ = ("_function", "_name")
    _function: Callable[..., Any]
    _name: str

    def __init__(self, name: str, function: Callable[..., Any]) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_function", function)

    def __call__(self, *args: Any) -> Any:
        return self._function(*args)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{self._name} is read-only")

    def __repr__(self) -> str:
        return f"<safe {self._name}>"


def _bad_args(name: str, args: Tuple[Any, ...]) -> CorruptPickleError:
    shown = ", ".join(type(a).__name__ for a in args)
    return CorruptPickleError(f"{name} called with unexpected arguments ({shown})")


_REAL: Dict[type, type] = {}  # stand-in -> real record class


def _reconstructor(*args: Any) -> Any:
    """``copyreg._reconstructor`` for protocols 0 and 1, for records only."""
    if len(args) == 3 and type(args[0]) is _Frozen and args[1] is object and args[2] is None:
        return _bare(_REAL[args[0]])
    raise _bad_args("copyreg._reconstructor", args)


def _encode(*args: Any) -> bytes:
    """``_codecs.encode`` as protocols 0 to 2 use it to write bytes: ``encode(str, "latin1")``."""
    if len(args) == 2 and type(args[0]) is str and args[1] == "latin1":
        return args[0].encode("latin-1")
    raise _bad_args("_codecs.encode", args)


def _step_state(*args: Any) -> StepState:
    if len(args) == 1 and type(args[0]) is str:
        return StepState(args[0])
    raise _bad_args("StepState", args)


def _enum_member(*args: Any) -> StepState:
    """``getattr(StepState, name)``: how some Python 3.11 releases (3.11.2 among them) pickle
    an enum member. Nothing else ``getattr`` could do is allowed (the scan checks it too)."""
    if (
        len(args) == 2
        and args[0] is _allowed()[("tango_stepinfo.step_info", "StepState")]
        and type(args[1]) is str
        and args[1] in StepState.__members__
    ):
        return StepState[args[1]]
    raise UnsafePickleError("builtins.getattr", "allowed only as getattr(StepState, member name)")


def _pytz_utc(*args: Any) -> Any:
    import pytz

    if args:
        raise _bad_args("pytz._UTC", args)
    return pytz.utc


def _pytz_zone(*args: Any) -> Any:
    """``pytz._p``: a named zone, and for a zone with DST, its state for one period.

    Unlike pytz's own function it never adds a state to pytz's shared tables.
    """
    import datetime as dt

    import pytz

    if not (
        1 <= len(args) <= 4
        and type(args[0]) is str
        and all(type(a) is int or a is None for a in args[1:3])
        and (len(args) < 4 or args[3] is None or type(args[3]) is str)
    ):
        raise _bad_args("pytz._p", args)
    if args[0] not in pytz.all_timezones_set:
        raise CorruptPickleError(f"pytz._p: unknown time zone {args[0][:60]!r}")
    zone = pytz.timezone(args[0])
    if len(args) < 2 or args[1] is None:
        return zone
    tzinfos = getattr(zone, "_tzinfos", None)
    if not tzinfos:  # the zone has no DST (any more): it has one state
        return zone
    utcoffset = dt.timedelta(seconds=args[1])
    dstoffset = dt.timedelta(seconds=args[2] or 0)
    tzname = args[3] if len(args) > 3 else None
    found = tzinfos.get((utcoffset, dstoffset, tzname))
    if found is not None:
        return found
    for candidate in tzinfos.values():
        if candidate._utcoffset == utcoffset and candidate._dst == dstoffset:
            return candidate
    if tzname is not None and not (
        (0 < len(tzname) <= 10 and tzname.isalnum()) or _OFFSET_NAME(tzname)
    ):
        # pytz shows the name raw in repr(): only what a zone abbreviation looks like
        raise CorruptPickleError(f"pytz._p: {tzname[:20]!r} is not a time zone abbreviation")
    make: Any = type(zone)
    return make((utcoffset, dstoffset, tzname), tzinfos)


def _OFFSET_NAME(name: str) -> bool:
    """Whether ``name`` is an abbreviation of the form ``+0530`` / ``-03`` (tzdata uses them)."""
    return 2 <= len(name) <= 5 and name[0] in "+-" and name[1:].isdigit() and name.isascii()


def _pytz_fixed(*args: Any) -> Any:
    import pytz

    if len(args) == 1 and type(args[0]) is int:
        return pytz.FixedOffset(args[0])
    raise _bad_args("pytz.FixedOffset", args)


def _path(name: str) -> _Call:
    import pathlib

    cls: type = getattr(pathlib, name)
    if name == "PosixPath" and os.name == "nt":
        cls = pathlib.PurePosixPath
    elif name == "WindowsPath" and os.name != "nt":
        cls = pathlib.PureWindowsPath

    def make(*args: Any) -> Any:
        if all(type(a) is str for a in args):
            return cls(*args)
        raise _bad_args(f"pathlib.{name}", args)

    return _Call(f"pathlib.{name}", make)


_ALLOWED: Optional[Dict[Tuple[str, str], Any]] = None


def _allowed() -> Dict[Tuple[str, str], Any]:
    global _ALLOWED
    if _ALLOWED is None:
        import datetime as dt

        table: Dict[Tuple[str, str], Any] = {}
        for real in _RECORDS:
            stand_in = _stand_in(real)
            _REAL[stand_in] = real
            table[(real.__module__, real.__name__)] = stand_in
            table[("tango.step_info", real.__name__)] = stand_in
        state = _Call("StepState", _step_state)
        table[("tango_stepinfo.step_info", "StepState")] = state
        table[("tango.step_info", "StepState")] = state
        for name in ("datetime", "date", "timedelta", "timezone"):
            table[("datetime", name)] = getattr(dt, name)
        table[("pytz", "_UTC")] = _Call("pytz._UTC", _pytz_utc)
        table[("pytz", "_p")] = _Call("pytz._p", _pytz_zone)
        table[("pytz", "FixedOffset")] = _Call("pytz.FixedOffset", _pytz_fixed)
        for name in ("Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath"):
            table[("pathlib", name)] = table[("pathlib._local", name)] = _path(name)
        table[("pathlib", "PureWindowsPath")] = _path("PureWindowsPath")
        table[("pathlib._local", "PureWindowsPath")] = table[("pathlib", "PureWindowsPath")]
        for kind in (set, frozenset, list, dict, tuple, object):
            table[("builtins", kind.__name__)] = kind
        table[("copyreg", "_reconstructor")] = _Call("copyreg._reconstructor", _reconstructor)
        table[("_codecs", "encode")] = _Call("_codecs.encode", _encode)
        table[("builtins", "getattr")] = _Call("builtins.getattr", _enum_member)
        _ALLOWED = table
        kinds: Dict[int, Tuple[int, Any]] = {id(found): (_CALL, None) for found in table.values()}
        for stand_in in _REAL:
            kinds[id(stand_in)] = (_RECORD_CLASS, None)
        kinds[id(table[("copyreg", "_reconstructor")])] = (_RECONSTRUCTOR, None)
        kinds[id(table[("builtins", "getattr")])] = (_GETATTR, None)
        kinds[id(state)] = (_ENUM, None)
        for kind, result in ((list, _LIST), (dict, _DICT), (set, _SET), (tuple, _TUPLE)):
            kinds[id(kind)] = (_CONTAINER_TYPE, result)
        kinds[id(frozenset)] = (_CONTAINER_TYPE, _FROZENSET)
        _KINDS.update(kinds)
    return _ALLOWED


_KINDS: Dict[int, Tuple[int, Any]] = {}  # id of an allowed object -> (kind of cell, detail)


def _kind_of(found: Any) -> Tuple[int, Any]:
    return _KINDS[id(found)]


_GLOBAL_KINDS: Dict[Tuple[bytes, bytes], Tuple[int, Any]] = {}
"""(module, name) as UTF-8 in a pickle -> the kind of cell of the allowed object (the scan's
cache: only allowed names get in)."""

_FOUND: Dict[Tuple[str, str], Any] = {}  # (module, name) as a pickle writes it -> allowed object


def _resolve(module: str, name: str) -> Any:
    """The allowed object a pickle's global names, or :class:`UnsafePickleError`.

    Found names are cached: a record names about ten globals, each looked up by the scan and
    again by the unpickler, and the mapping of Python 2 names costs microseconds.
    """
    found = _FOUND.get((module, name))
    if found is not None:
        return found
    from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING

    key = (module, name)
    if key in NAME_MAPPING:
        key = NAME_MAPPING[key]
    elif module in IMPORT_MAPPING:
        key = (IMPORT_MAPPING[module], name)
    found = _allowed().get(key)
    if found is None:
        raise UnsafePickleError(f"{module}.{name}")
    if len(_FOUND) < 1000:
        _FOUND[(module, name)] = found
    return found


class _Unpickler(pickle.Unpickler):
    def find_class(self, module_name: str, global_name: str) -> Any:
        found = _FOUND.get((module_name, global_name))
        return _resolve(module_name, global_name) if found is None else found


# --- reading the opcodes first -----------------------------------------------------------------
#
# The scan runs the pickle's opcodes on a model of the unpickler's stack and memo, byte by byte
# (``pickletools.genops`` made a tuple per opcode and a list per value: 62% of the old loader's
# time). A value of the model, a "cell", is either
#
# - an int, for a value that holds no other (string, number, None, a time, a path ...): its
#   estimated JSON size in the low 32 bits; for a string, bits 32-33 say how its text is stored
#   (:data:`_UTF8`, :data:`_RAW`, :data:`_OPAQUE`) and the bits above where it starts, so that
#   names (``STACK_GLOBAL``, ``getattr``, dict keys) can be read without copying every string;
# - a list ``[size, depth, kind, flags, items]`` for anything else (containers, records, allowed
#   callables): the same list wherever the value is (stack, memo), so changes are seen everywhere.
#
# Sizes and depths are exact, whichever opcodes built the value: a container may be changed
# (APPEND, SETITEM, ADDITEMS, BUILD) only before it is put into another value or passed to a
# call. pickle itself never does otherwise (children are complete before their parent is), and
# without that rule a list could be filled after it was counted, and a reference cycle be made.

# Two layouts of int cells. Compact cells (below 2**41, and in a pickle under 1 MiB below 2**30,
# where arithmetic on them is fastest): the size in the low 10 bits and, for a string, where its
# UTF-8 text starts above them (so a compact cell of 1024 or more is a string). Every
# SHORT_BINUNICODE has one (pickles are under 2**31 bytes), so the scan's hottest loop need not
# test where it is. Big cells, for the rest: _BIG | how the text is stored | where it starts <<
# _POS | size.
_COMPACT = 1 << 41
_SMALL = 1023
_BIG = 1 << 80
_SIZE = 0xFFFFFFFF
_UTF8 = 1 << 32  # a string whose text is UTF-8 bytes at its position (BINUNICODE ...)
_RAW = 2 << 32  # a string whose text is a raw-unicode-escape line at its position (UNICODE)
_OPAQUE = 3 << 32  # a string whose text the scan does not read (Python 2 STRING ...)
_TAGS = 3 << 32
_POS = 34


def _size_of(cell: int) -> int:
    return cell & _SMALL if cell < _COMPACT else cell & _SIZE


def _is_str(cell: int) -> bool:
    return cell >= 1024 if cell < _COMPACT else bool(cell & _TAGS)


def _scalar(size: int) -> int:
    """The cell of a value that is not a string, of estimated JSON ``size``."""
    return size if size <= _SMALL else _BIG | min(size, _SIZE)


def _string(start: int, size: int, how: int = _UTF8) -> int:
    """The cell of a string whose text starts at ``start``, of estimated JSON ``size``."""
    if how == _UTF8 and size <= _SMALL:
        return start << 10 | size
    return _BIG | how | start << _POS | size


# kinds of list cells: values ...
_LIST, _DICT, _SET, _TUPLE, _FROZENSET, _RECORD = 1, 2, 3, 4, 5, 6
# ... and the allowed callables, as find_class hands them out
_CALL, _RECORD_CLASS, _RECONSTRUCTOR, _CONTAINER_TYPE, _GETATTR, _ENUM = 10, 11, 12, 13, 14, 15
# flags
_PLACED = 1  # put into another value or passed to a call: may not change any more
_NONSTR = 2  # (list, tuple) holds something that is not a string
_SETBAD = 4  # (dict, tuple) would give a record's set field something that is not a string
_BUILT = 8  # (record) has been given its state

_SEP = 4  # JSON bytes per item besides the item: ", " and, in a dict, ": "
_RECORD_BYTES = 512  # JSON of a record besides its state (keys and nulls of absent fields)
_SCALAR_BYTES = 64  # JSON of a value an allowed function makes (a time: 32), besides its args
_EXPAND = 7  # JSON bytes per byte when a call turns a string into items: '"a", ' ...

_SMALLS = repeat(_SMALL)  # endless: map(and_, cells, _SMALLS) is each cell & _SMALL, in C
_INT_ONLY = frozenset((int,))
_LISTS = repeat(list)  # endless: map(isinstance, cells, _LISTS) tells the list cells, in C


_CONSTANTS = re.compile(b"[N\x88\x89]+")
_SET_FIELDS: Optional[frozenset[Optional[str]]] = None


def _set_fields() -> frozenset[Optional[str]]:
    """The names of record fields that ``__setstate__`` turns into a ``set``, and ``None``: a
    key whose text the scan does not read might be one."""
    global _SET_FIELDS
    if _SET_FIELDS is None:
        from ._kinds import kind_of

        names = {
            f.name
            for cls in _RECORDS
            for f in _plans().fields(cls)
            if kind_of(f.tp)[0].name == "set"
            or any(kind_of(t)[0].name == "set" for t in f.kind.inner(f.detail))
        }
        _SET_FIELDS = frozenset((None, *names))
    return _SET_FIELDS


def _text(data: bytes, cell: Any) -> Optional[str]:
    """The text of a string cell, or None when the cell is not a string or the scan cannot read
    its text."""
    if type(cell) is not int:
        return None
    if 1024 <= cell < _COMPACT:
        return data[cell >> 10 : (cell >> 10) + (cell & _SMALL) - 2].decode("utf-8", "replace")
    how = cell & _TAGS
    start = (cell >> _POS) & 0xFFFFFFFF
    try:
        if how == _UTF8:
            return data[start : start + (cell & _SIZE) - 2].decode("utf-8")
        if how == _RAW:
            return data[start : data.index(b"\n", start)].decode("raw-unicode-escape")
    except (UnicodeDecodeError, ValueError):
        return None
    return None


class _Refused(Exception):
    """Internal: a scan failure, turned into :class:`CorruptPickleError` with the position."""


def _scan(data: bytes) -> int:  # noqa: PLR0915 (one flat dispatch on the opcode reads best)
    """Check the opcodes of the pickle in ``data`` without running it; return where it ends.

    :raises UnsafePickleError: a global that is not allowed, ``getattr`` used for anything but
        an enum member, or a copyreg extension code.
    :raises CorruptPickleError: anything the real unpickler would also refuse, and: values
        nested deeper than :data:`_limits.MAX_DEPTH` (plus the levels records add), an estimated
        JSON size past the bound, ints of more than :data:`_limits.MAX_INT_DIGITS` digits,
        implausible memo indexes, dict keys and set members that are not strings, a change to a
        container after it was used, ``BUILD`` on anything but a new record, and a record that
        is never given a state.
    """
    n = len(data)
    if n >= 1 << 31:
        raise CorruptPickleError("pickles of 2 GiB or more are not read")
    limit = _limits.JSON_BYTES_PER_PICKLE_BYTE * n + _limits.JSON_BYTES_FLOOR
    max_depth = _limits.MAX_DEPTH + 8  # the levels of records, their states and a list of them
    stack: List[Any] = []
    push = stack.append
    pop = stack.pop
    marks: List[int] = []
    fence = 0
    memo: List[Any] = []
    memoize = memo.append
    holes = 0  # empty memo slots: MEMOIZE stores at the count of filled ones, as C counts
    unbuilt = 0
    # Each container counts CONTAINER_BYTES in the bound: so many may be made at most, refused
    # as soon as they are made (not when the last of a million is put into a list).
    containers = 0
    max_containers = limit // _limits.CONTAINER_BYTES
    too_many = f"more than {max_containers} lists, dicts, sets and tuples (the JSON size bound)"
    box = _limits.CONTAINER_BYTES
    i = 0

    def measure(items: Sequence[Any], in_tuple: bool) -> Tuple[int, int, int]:
        """The JSON size, depth and flags that ``items`` add to a container (now placed)."""
        size = _SEP * len(items)
        depth = 0
        flags = 0
        if len(items) > 6 and set(map(type, items)) <= _INT_ONLY and max(items) < _COMPACT:
            # compact cells only, the common case (package lists): in C loops
            size += sum(map(and_, items, _SMALLS))
            return size, 0, _NONSTR if min(items) < 1024 else 0
        for c in items:
            if type(c) is int:  # _size_of and _is_str inlined (two calls fewer per item)
                if c < _COMPACT:
                    size += c & _SMALL
                    if c < 1024:
                        flags |= _NONSTR
                else:
                    size += c & _SIZE
                    if not c & _TAGS:
                        flags |= _NONSTR
            else:
                size += c[0]
                depth = max(depth, c[1])
                c[3] |= _PLACED
                flags |= _NONSTR | (c[3] & _SETBAD if in_tuple else 0)
        return size, depth, flags

    def made(kind: int, items: Sequence[Any]) -> List[Any]:
        """A new container cell of ``kind`` holding ``items`` (which are now placed)."""
        nonlocal containers
        containers += 1
        if containers > max_containers:
            raise _Refused(too_many)
        size, depth, flags = measure(items, kind == _TUPLE)
        cell: List[Any] = [
            _limits.CONTAINER_BYTES + size,
            depth + 1,
            kind,
            flags,
            tuple(items) if len(items) <= 3 else None,
        ]
        if cell[0] > limit or cell[1] > max_depth:  # the call only to raise
            check(cell)
        return cell

    def check(cell: List[Any]) -> None:
        if cell[0] > limit:
            raise _Refused(
                f"the value would expand to more than {limit} bytes of JSON "
                f"({_limits.JSON_BYTES_PER_PICKLE_BYTE} per pickle byte plus "
                f"{_limits.JSON_BYTES_FLOOR}), counting shared references each time"
            )
        if cell[1] > max_depth:
            raise _Refused(f"values nest more than {max_depth} levels deep")

    def strings_only(items: Sequence[Any], what: str) -> int:
        """Refuse ``items`` unless all are strings; return the JSON size they add."""
        if set(map(type, items)) <= _INT_ONLY and (
            not items or (min(items) >= 1024 and max(items) < _COMPACT)
        ):
            # compact string cells only, the common case: in C loops
            size: int = sum(map(and_, items, _SMALLS))
            return size + _SEP * len(items)
        for c in items:
            if type(c) is not int or not _is_str(c):
                raise _Refused(f"{what} may only be strings")
        return sum(map(_size_of, items)) + _SEP * len(items)

    def grow(target: Any, items: Sequence[Any], kind: int, what: str, more: int = 0) -> None:
        """Add ``items`` to the container ``target`` in place (APPEND, SETITEM, ADDITEMS), and
        strings of JSON size ``more`` (a dict's keys)."""
        if type(target) is int or target[2] != kind:
            raise _Refused(f"{what} on something that is not a new {_KIND_NAMES[kind]}")
        if target[3] & _PLACED:
            raise _Refused(f"{what} on a {_KIND_NAMES[kind]} that was already used")
        size, depth, flags = measure(items, False)
        if depth:
            if any(map(is_, items, repeat(target))):
                raise _Refused("a container put into itself (reference cycles are not allowed)")
            target[1] = max(target[1], depth + 1)
        target[0] += size + more
        target[3] |= flags & _NONSTR
        if target[0] > limit or target[1] > max_depth:
            check(target)

    def put(index: int, cell: Any) -> None:
        nonlocal holes
        if index > i:  # the C unpickler would allocate memory for every index up to it
            raise _Refused(f"memo index {index} out of range")
        if index >= len(memo):
            holes += index - len(memo)
            memo.extend([None] * (index - len(memo)))
            memo.append(cell)
            return
        if memo[index] is None:
            holes -= 1
        memo[index] = cell

    def call(fn: Any, args: Any, what: str) -> Any:
        """The cell of what calling the allowed callable ``fn`` with the tuple ``args`` gives."""
        nonlocal unbuilt
        if type(fn) is int or fn[2] < _CALL:
            raise _Refused(f"{what} of something that is not an allowed callable")
        if type(args) is int or args[2] != _TUPLE:
            raise _Refused(f"{what} with arguments that are not a tuple")
        args[3] |= _PLACED
        kind = fn[2]
        items = args[4]
        if kind in (_RECORD_CLASS, _RECONSTRUCTOR):
            unbuilt += 1
            return [_RECORD_BYTES, 1, _RECORD, 0, None]
        if kind == _GETATTR:
            if (
                items is None
                or len(items) != 2
                or type(items[0]) is int
                or items[0][2] != _ENUM
                or _text(data, items[1]) not in StepState.__members__
            ):
                raise UnsafePickleError(
                    "builtins.getattr", "allowed only as getattr(StepState, member name)"
                )
            return 16
        if kind != _CONTAINER_TYPE:  # a time, a zone, a path, a StepState, bytes
            return _scalar(args[0] + _SCALAR_BYTES)
        result = fn[4]
        if items is None or len(items) > 1:  # not a call the container types accept
            size, depth, flags = _EXPAND * args[0], args[1], _NONSTR
        elif not items:
            size, depth, flags = _limits.CONTAINER_BYTES, 1, 0
        elif type(items[0]) is int:  # a string or bytes, turned into items
            size, depth = _limits.CONTAINER_BYTES + _EXPAND * _size_of(items[0]), 1
            flags = 0 if _is_str(items[0]) else _NONSTR
        elif items[0][2] in (_LIST, _TUPLE, _SET, _FROZENSET, _DICT):  # the same items
            size, depth, flags = items[0][0], items[0][1], items[0][3] & _NONSTR
        else:
            size, depth, flags = _EXPAND * items[0][0], items[0][1] + 1, _NONSTR
        if result in (_SET, _FROZENSET, _DICT) and flags & _NONSTR:
            raise _Refused(f"{_KIND_NAMES[result]} members and keys may only be strings")
        cell = [max(size, _limits.CONTAINER_BYTES), max(depth, 1), result, flags, None]
        if cell[0] > limit or cell[1] > max_depth:  # the call only to raise
            check(cell)
        return cell

    def global_cell(module: str, name: str) -> List[Any]:
        kind, extra = _kind_of(_resolve(module, name))
        return [0, 0, kind, 0, extra]

    def to_mark() -> List[Any]:
        """Pop the values down to the topmost MARK, and the MARK; return the values."""
        nonlocal fence
        if not marks:
            raise _Refused("no MARK to pop to")
        at = marks.pop()
        fence = marks[-1] if marks else 0
        items = stack[at:]
        del stack[at:]
        return items

    def remember(cells: List[Any]) -> None:
        """MEMOIZE each of ``cells`` in turn."""
        if not holes:
            memo.extend(cells)
            return
        for cell in cells:
            put(len(memo) - holes, cell)

    def line(start: int) -> bytes:
        end = data.index(b"\n", start)
        return data[start:end]

    try:
        while True:
            op = data[i]
            # The dispatch tests the opcodes most frequent in a record's pickle first, one or a
            # set at a time: on 3.11, ``op == x`` and ``op in {a, b, c, d}`` cost 35 to 45 ns,
            # ``op in (a, b, c, d)`` (a tuple: the old tests) about 100 ns when it fails.
            if op == 0x8C:
                # SHORT_BINUNICODE, in runs, each followed by MEMOIZE: 80% of a record's
                # opcodes. This loop holds only what such a run needs; the memo gets the run's
                # cells at once (measured over 240 short strings: 0.18 us a string on 3.11, 0.28
                # on 3.9, against 0.19 and 0.31 appending each to the memo; about the floor of
                # a Python loop).
                # (data[i] past the end raises IndexError: the string is truncated)
                run = len(stack)
                while op == 0x8C:
                    length = data[i + 1]
                    push((i + 2) << 10 | length + 2)
                    i += 2 + length
                    if data[i] == 0x94:
                        i += 1
                    else:  # not memoized: the run so far is
                        if len(stack) - 1 > run:
                            remember(stack[run:-1])
                        run = len(stack)
                    op = data[i]
                remember(stack[run:])
                continue  # op is the next opcode: dispatched from the top
            if op == 0x94:  # MEMOIZE
                if len(stack) <= fence:
                    raise _Refused("memo store with an empty stack")
                if holes:
                    put(len(memo) - holes, stack[-1])
                else:
                    memoize(stack[-1])
                i += 1
            elif op == 0x68:  # BINGET
                index = data[i + 1]
                if index >= len(memo) or memo[index] is None:
                    raise _Refused(f"memo index {index} not stored")
                push(memo[index])
                i += 2
            elif op == 0x28:  # MARK
                fence = len(stack)
                marks.append(fence)
                i += 1
            elif op in {0x7D, 0x29, 0x5D, 0x8F}:  # EMPTY_ DICT TUPLE ...
                containers += 1
                if containers > max_containers:
                    raise _Refused(too_many)
                if op == 0x7D:
                    push([box, 1, _DICT, 0, None])
                elif op == 0x5D:
                    push([box, 1, _LIST, 0, None])
                else:
                    push([box, 1, _TUPLE if op == 0x29 else _SET, 0, ()])
                i += 1
            elif op == 0x93:  # STACK_GLOBAL
                if len(stack) - 2 < fence:
                    raise _Refused("stack underflow")
                name_cell = pop()
                module_cell = pop()
                # The cell's kind by the names' raw bytes: no decoding, no _resolve (measured
                # on 3.11 over 200 globals: 0.5 us less a global).
                if (
                    type(name_cell) is int
                    and type(module_cell) is int
                    and 1024 <= name_cell < _COMPACT
                    and 1024 <= module_cell < _COMPACT
                ):
                    key = (
                        data[module_cell >> 10 : (module_cell >> 10) + (module_cell & _SMALL) - 2],
                        data[name_cell >> 10 : (name_cell >> 10) + (name_cell & _SMALL) - 2],
                    )
                    kind = _GLOBAL_KINDS.get(key)
                    if kind is None:
                        module, name = (part.decode("utf-8", "replace") for part in key)
                        kind = _kind_of(_resolve(module, name))
                        if len(_GLOBAL_KINDS) < 1000:
                            _GLOBAL_KINDS[key] = kind
                    push([0, 0, kind[0], 0, kind[1]])
                else:
                    name_text = _text(data, name_cell)
                    module_text = _text(data, module_cell)
                    if module_text is None or name_text is None:
                        raise _Refused("STACK_GLOBAL needs two strings")
                    push(global_cell(module_text, name_text))
                i += 1
            elif op in {0x75, 0x73}:  # SETITEMS, SETITEM
                if op == 0x75:
                    items = to_mark()
                    if len(items) % 2:
                        raise _Refused("odd number of items for SETITEMS")
                else:
                    if len(stack) - 2 < fence:
                        raise _Refused("stack underflow")
                    items = stack[-2:]
                    del stack[-2:]
                if not stack:
                    raise _Refused("stack underflow")
                if items:
                    target = stack[-1]
                    keys = items[0::2]
                    values = items[1::2]
                    # the keys measured in C loops, the values one by one (2% fewer bytecodes
                    # run in the scan of a record than measuring both one by one)
                    grow(target, values, _DICT, "SETITEM", strings_only(keys, "dict keys"))
                    if target[3] & _NONSTR:  # a value that is not a string (grow saw it)
                        # the pairs whose value is a list cell (a container), picked in C
                        for key, value in compress(
                            zip(keys, values), map(isinstance, values, _LISTS)
                        ):
                            if (
                                value[2] in (_LIST, _TUPLE)
                                and value[3] & _NONSTR
                                and _text(data, key) in _set_fields()
                            ):
                                target[3] |= _SETBAD
                i += 1
            elif op in {0x81, 0x52}:  # NEWOBJ, REDUCE
                if len(stack) - 2 < fence:
                    raise _Refused("stack underflow")
                args = pop()
                push(call(pop(), args, "NEWOBJ" if op == 0x81 else "REDUCE"))
                i += 1
            elif op == 0x62:  # BUILD
                if len(stack) - 2 < fence:
                    raise _Refused("stack underflow")
                state = pop()
                target = stack[-1]
                if type(target) is int or target[2] != _RECORD or target[3] & (_PLACED | _BUILT):
                    raise _Refused("only a new record may be given a state (BUILD)")
                if type(state) is not int:
                    if state[3] & _SETBAD:
                        raise _Refused("a record's set field may only hold strings")
                    state[3] |= _PLACED
                    target[0] += state[0]
                    target[1] = max(target[1], state[1] + 1)
                else:
                    target[0] += _size_of(state)
                target[3] |= _BUILT
                unbuilt -= 1
                if target[0] > limit or target[1] > max_depth:
                    check(target)
                i += 1
            elif op == 0x4B:  # BININT1
                push(3)
                i += 2
            elif 0x85 <= op <= 0x87:  # TUPLE1, TUPLE2, TUPLE3
                count = op - 0x84
                if len(stack) - count < fence:
                    raise _Refused("stack underflow")
                items = stack[-count:]
                del stack[-count:]
                push(made(_TUPLE, items))
                i += 1
            elif op in {0x65, 0x61}:  # APPENDS, APPEND
                if op == 0x65:
                    items = to_mark()
                else:
                    if len(stack) - 1 < fence:
                        raise _Refused("stack underflow")
                    items = [pop()]
                if not stack:
                    raise _Refused("stack underflow")
                if items:
                    grow(stack[-1], items, _LIST, "APPEND")
                i += 1
            elif op in {0x4E, 0x88, 0x89}:  # NONE, NEWTRUE, NEWFALSE
                if data[i + 1] in {0x4E, 0x88, 0x89}:
                    # a run of them, pushed at once (5: "false", the longest)
                    run = _CONSTANTS.match(data, i).end() - i  # type: ignore[union-attr]
                    stack.extend([5] * run)
                    i += run
                else:
                    push(5 if op == 0x89 else 4)
                    i += 1
            elif op in {0x74, 0x6C, 0x64, 0x91, 0x90, 0x6F}:  # TUPLE LIST DICT FROZENSET ...
                items = to_mark()
                if op == 0x74:
                    push(made(_TUPLE, items))
                elif op == 0x6C:
                    push(made(_LIST, items))
                elif op == 0x64:
                    if len(items) % 2:
                        raise _Refused("odd number of items for DICT")
                    strings_only(items[0::2], "dict keys")
                    push(made(_DICT, items))
                elif op == 0x91:
                    strings_only(items, "frozenset members")
                    push(made(_FROZENSET, items))
                elif op == 0x90:  # ADDITEMS
                    if not stack:
                        raise _Refused("stack underflow")
                    if items:
                        strings_only(items, "set members")
                        grow(stack[-1], items, _SET, "ADDITEMS")
                else:  # OBJ: class, then arguments
                    if not items:
                        raise _Refused("OBJ without a class")
                    push(call(items[0], made(_TUPLE, items[1:]), "OBJ"))
                i += 1
            elif op in {0x71, 0x72}:  # BINPUT, LONG_BINPUT
                if len(stack) <= fence:
                    raise _Refused("memo store with an empty stack")
                if op == 0x71:
                    index = data[i + 1]
                    i += 2
                else:
                    index = int.from_bytes(data[i + 1 : i + 5], "little")
                    i += 5
                put(index, stack[-1])
            elif op == 0x6A:  # LONG_BINGET
                index = int.from_bytes(data[i + 1 : i + 5], "little")
                if index >= len(memo) or memo[index] is None:
                    raise _Refused(f"memo index {index} not stored")
                push(memo[index])
                i += 5
            elif op in {0x58, 0x8D}:  # BINUNICODE, BINUNICODE8
                width = 4 if op == 0x58 else 8
                length = int.from_bytes(data[i + 1 : i + 1 + width], "little")
                start = i + 1 + width
                if start + length > n or len(data[i + 1 : start]) < width:
                    raise _Refused("truncated string")
                push(_string(start, length + 2))
                i = start + length
            elif op == 0x95:  # FRAME
                i += 9
            elif op == 0x2E:  # STOP
                if len(stack) <= fence:
                    raise _Refused("stack underflow")
                if unbuilt:
                    raise _Refused("a record without state (every record needs one)")
                return i + 1
            elif op == 0x80:  # PROTO
                if data[i + 1] > pickle.HIGHEST_PROTOCOL:
                    raise _Refused(f"unsupported pickle protocol {data[i + 1]}")
                i += 2
            elif op == 0x4D:  # BININT2
                push(5)
                i += 3
            elif op == 0x4A:  # BININT
                push(11)
                i += 5
            elif op == 0x47:  # BINFLOAT
                push(24)
                i += 9
            elif op in {0x8A, 0x8B}:  # LONG1, LONG4
                width = 1 if op == 0x8A else 4
                length = int.from_bytes(data[i + 1 : i + 1 + width], "little", signed=width == 4)
                if length < 0:
                    raise _Refused("negative byte count")
                # (reading bytes into an int is linear: the digit limit is checked after
                # loading, where the field is known)
                push(_scalar(3 * length + 3))
                i += 1 + width + length
            elif op == 0x32:  # DUP
                if len(stack) <= fence:
                    raise _Refused("stack underflow")
                push(stack[-1])
                i += 1
            elif op == 0x30:  # POP
                if marks and marks[-1] == len(stack):
                    to_mark()  # pops the MARK itself
                elif len(stack) <= fence:
                    raise _Refused("stack underflow")
                else:
                    pop()
                i += 1
            elif op == 0x31:  # POP_MARK
                to_mark()
                i += 1
            elif op in {0x63, 0x69}:  # GLOBAL, INST
                module_line = line(i + 1)
                name_line = line(i + 2 + len(module_line))
                i += 3 + len(module_line) + len(name_line)
                fn = global_cell(module_line.decode("utf-8"), name_line.decode("utf-8"))
                if op == 0x63:
                    push(fn)
                else:
                    push(call(fn, made(_TUPLE, to_mark()), "INST"))
            elif op in {0x43, 0x42, 0x8E, 0x96, 0x55, 0x54}:  # bytes, Python 2 strings
                width = 1 if op in {0x43, 0x55} else 4 if op in {0x42, 0x54} else 8
                length = int.from_bytes(data[i + 1 : i + 1 + width], "little", signed=op == 0x54)
                if length < 0 or i + 1 + width + length > n:
                    raise _Refused("truncated or negative length")
                if op in {0x55, 0x54}:
                    push(_string(0, length + 2, _OPAQUE))
                else:
                    push(_scalar(length + 2))
                i += 1 + width + length
            elif op in {0x56, 0x53, 0x49, 0x4C, 0x46}:  # UNICODE STRING INT LONG FLOAT (text)
                text = line(i + 1)
                if op in {0x49, 0x4C} and len(text) > _limits.MAX_INT_DIGITS + 2:
                    raise _Refused(f"an int of more than {_limits.MAX_INT_DIGITS} digits")
                if op == 0x56:
                    push(_string(i + 1, 2 * len(text) + 2, _RAW))
                elif op == 0x53:
                    push(_string(0, 2 * len(text) + 2, _OPAQUE))
                else:
                    push(_scalar(max(len(text), 24)))
                i += 2 + len(text)
            elif op in {0x70, 0x67}:  # PUT, GET (text)
                text = line(i + 1)
                i += 2 + len(text)
                if not text.isdigit() or len(text) > 10:
                    raise _Refused("bad memo index")
                if op == 0x70:
                    if len(stack) <= fence:
                        raise _Refused("memo store with an empty stack")
                    put(int(text), stack[-1])
                else:
                    index = int(text)
                    if index >= len(memo) or memo[index] is None:
                        raise _Refused(f"memo index {index} not stored")
                    push(memo[index])
            elif op == 0x92:  # NEWOBJ_EX: only without keyword arguments
                if len(stack) - 3 < fence:
                    raise _Refused("stack underflow")
                kwargs = pop()
                args = pop()
                if type(kwargs) is int or kwargs[2] != _DICT or kwargs[0] > _limits.CONTAINER_BYTES:
                    raise _Refused("NEWOBJ_EX with keyword arguments")
                push(call(pop(), args, "NEWOBJ_EX"))
                i += 1
            elif 0x82 <= op <= 0x84:  # EXT1, EXT2, EXT4
                raise UnsafePickleError("copyreg extension code", "extension codes are not allowed")
            elif op in {0x50, 0x51}:  # PERSID, BINPERSID
                raise _Refused("persistent IDs are not supported")
            elif op in {0x97, 0x98}:  # NEXT_BUFFER, READONLY_BUFFER
                raise _Refused("out-of-band buffers are not supported")
            else:
                raise _Refused(f"unknown opcode {bytes([op])!r}")
    except _Refused as e:
        raise CorruptPickleError(f"corrupt pickle at byte {i}: {e}") from None
    except IndexError:
        raise CorruptPickleError(f"corrupt pickle at byte {i}: truncated") from None
    except (ValueError, UnicodeDecodeError) as e:  # a line without its end, bad text
        raise CorruptPickleError(f"corrupt pickle at byte {i}: {e}") from None


_KIND_NAMES = {
    _LIST: "list",
    _DICT: "dict",
    _SET: "set",
    _TUPLE: "tuple",
    _FROZENSET: "frozenset",
    _RECORD: "record",
}


def _check_item(value: Any, path: str) -> None:
    if type(value) is StepState:
        return
    if type(value) not in _RECORDS:
        raise StepInfoDecodeError(path, f"expected a record or a StepState, got {show(value)}")
    try:
        _record.check(value)
    except StepInfoDecodeError as e:
        if not path:
            raise
        inner = e.path if not e.path or e.path.startswith("[") else "." + e.path
        raise StepInfoDecodeError(path + inner, e.problem) from None


def _items(value: Any) -> List[Tuple[Any, str]]:
    """The loaded ``value``'s records (or states) with their paths: the items of a list, tuple
    or dict (``[0]``, ``['key']``), or ``value`` itself (path ``""``).

    :raises StepInfoDecodeError: ``value`` is none of these shapes.
    """
    if type(value) in (list, tuple):
        return [(item, f"[{i}]") for i, item in enumerate(value)]
    if type(value) is dict:
        return [(item, f"[{key!r}]") for key, item in value.items()]
    if type(value) is StepState or type(value) in _RECORDS:
        return [(value, "")]
    raise StepInfoDecodeError(
        "",
        f"expected a record, a StepState, or a list, tuple or dict of them, got {show(value)}",
    )


# --- checking the result: what only the loader checks ----------------------------------------
# (kept apart from the field-type checks above: limits and normalisation of loaded values)


def _check_loaded(items: List[Tuple[Any, str]]) -> None:
    """Make every record of the loaded value usable, or refuse it naming the path.

    ``items`` are the value's records as :func:`_items` gives them, each one already checked by
    :func:`_check_item` (its fields have the declared types). Times must be real dates and times
    and are made aware (a naive time is UTC, as the JSON decoder reads it), ints stay within
    :data:`_limits.MAX_INT`, ``config`` and ``metadata`` nest at most :data:`_limits.MAX_DEPTH`
    deep and become JSON values as ``to_json_dict`` writes them, and paths become what
    ``from_json_dict`` makes of their text: so ``repr``, ``to_json_dict`` and
    ``from_json_dict(to_json_dict(x)) == x`` hold for what :func:`loads` returns.

    :raises CorruptPickleError: ``path: problem``.
    """
    for item, path in items:
        _usable(item, path)


_REQUIRED: Dict[type, Tuple[str, ...]] = {}


def _required(cls: type) -> Tuple[str, ...]:
    """The fields of ``cls`` that may not be ``None`` (their JSON may not be null)."""
    names = _REQUIRED.get(cls)
    if names is None:
        names = _REQUIRED[cls] = tuple(
            f.name for f in _plans().fields(cls) if f.kind.name != "optional"
        )
    return names


_RECORD_LISTS: Dict[type, FrozenSet[str]] = {}


def _record_lists(cls: type) -> FrozenSet[str]:
    """The list fields of ``cls`` whose items are records (``gpus``): the only lists
    :func:`_usable` walks (a package list of 70 pairs was a quarter of its bytecodes)."""
    names = _RECORD_LISTS.get(cls)
    if names is None:
        from ._kinds import holds_records

        names = _RECORD_LISTS[cls] = frozenset(
            f.name
            for f in _plans().fields(cls)
            if holds_records(f.tp)
            and (f.detail if f.kind.name == "optional" else f.tp) not in _RECORDS
        )
    return names


def _usable(record: Any, path: str) -> None:
    if type(record) not in _RECORDS:
        return
    values = record.__dict__
    # one pass over the values (every field is present: _record.check has seen to it); the
    # path of a field is made only where it is needed
    for name, value in values.items():
        kind = type(value)
        if kind is str or kind is bool:
            continue
        if value is None:
            if name in _required(type(record)):
                # a pickle from before the field existed: to_json_dict could not write it
                raise StepInfoDecodeError(_at(path, name), "required field is missing")
            continue
        if kind is int:
            if not _limits.MIN_INT < value < _limits.MAX_INT:
                raise CorruptPickleError(
                    f"{_at(path, name)}: an int of more than {_limits.MAX_INT_DIGITS} digits"
                )
        elif kind in _RECORDS:
            _usable(value, _at(path, name))
        elif kind is list and name in _record_lists(type(record)):  # gpus
            for j, item in enumerate(value):
                if type(item) in _RECORDS:
                    _usable(item, f"{_at(path, name)}[{j}]")
        elif isinstance(value, _dt.datetime):
            values[name] = _real_time(value, _at(path, name))
        elif isinstance(value, PurePath) and type(value) is not _NATIVE_PATH:
            values[name] = _kinds_dec_path(str(value))
        elif kind is dict and name in _FREE_JSON:
            try:
                values[name] = _json_value(value, 1)
            except _Where as e:
                inner = "".join(reversed(e.parts))
                raise CorruptPickleError(f"{_at(path, name)}{inner}: {e.problem}") from None


def _at(path: str, name: str) -> str:
    """The path of field ``name`` of the record at ``path``."""
    return f"{path}.{name}" if path else name


def _plans() -> Any:
    from . import _plans as plans

    return plans


def _kinds_dec_path(text: str) -> Path:
    from ._kinds import converters

    return converters(Path)[1](text)  # type: ignore[no-any-return]


_FREE_JSON = frozenset(("config", "metadata"))
_NATIVE_PATH = type(Path())


def _real_time(value: _dt.datetime, path: str) -> _dt.datetime:
    """``value`` if it is a real date and time (aware; a naive one taken as UTC), else refused.

    A pickled datetime is built from its bytes unchecked: day 0 and hour 255 load.
    """
    try:
        _dt.datetime(
            value.year,
            value.month,
            value.day,
            value.hour,
            value.minute,
            value.second,
            value.microsecond,
            fold=value.fold,
        )
        if value.tzinfo is None or value.utcoffset() is None:
            value = value.replace(tzinfo=_times.decoded_utc())
        _times.as_utc(value).isoformat()  # the offset can be computed and stays in range
    except Exception as e:  # ValueError, OverflowError, or whatever a zone's utcoffset raises
        raise CorruptPickleError(f"{path}: not a real date and time ({e})"[:300]) from None
    return value


def _json_value(value: Any, depth: int) -> Any:
    """``value`` as ``to_json_dict`` writes it (tuples and sets as lists, times and paths as
    strings), checking depth, ints and times; recursion is bounded by the scan's depth limit.

    :raises _Where: what is wrong and where (the path is built only then).
    """
    kind = type(value)
    if kind is str or kind is bool or value is None or kind is float:
        return value
    if kind is int:
        if _limits.MIN_INT < value < _limits.MAX_INT:
            return value
        raise _Where(f"an int of more than {_limits.MAX_INT_DIGITS} digits")
    if depth > _limits.MAX_DEPTH:
        raise _Where(f"nested more than {_limits.MAX_DEPTH} levels deep")
    if kind is dict:
        out = {}
        for key, item in value.items():
            try:
                out[key] = _json_value(item, depth + 1)
            except _Where as e:
                e.parts.append(f".{key}")
                raise
        return out
    if kind is list or kind is tuple:
        items = []
        for i, item in enumerate(value):
            try:
                items.append(_json_value(item, depth + 1))
            except _Where as e:
                e.parts.append(f"[{i}]")
                raise
        return items
    if kind is set or kind is frozenset:  # members are strings (the scan checks)
        return sorted(value)
    if isinstance(value, _dt.datetime):
        try:
            return _times.encode(_real_time(value, ""))
        except CorruptPickleError as e:
            raise _Where(str(e).lstrip(": ")) from None
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, StepState):
        return value.value
    return value  # not JSON: already refused by the field checks


class _Where(Exception):
    """Internal: a problem inside a free JSON value; ``parts`` is the path, innermost first."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.parts: List[str] = []


# --- public ------------------------------------------------------------------------------------


def _load(data: Any) -> Tuple[Any, int]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    end = _scan(data)
    try:
        value = _Unpickler(io.BytesIO(data)).load()
    except (UnsafePickleError, CorruptPickleError, StepInfoDecodeError):
        raise
    except Exception as e:
        raise CorruptPickleError(f"corrupt pickle: {type(e).__name__}: {e}"[:300]) from e
    try:
        items = _items(value)
        for item, path in items:
            _check_item(item, path)
        _check_loaded(items)
    except (CorruptPickleError, StepInfoDecodeError):
        raise
    except Exception as e:  # a value no check foresaw; never let it out as something else
        raise CorruptPickleError(f"invalid value: {type(e).__name__}: {e}"[:300]) from e
    return value, end


def loads(data: bytes) -> Any:
    """Load a pickled record, ``StepState``, or ``list``/``tuple``/``dict`` of them, safely.

    A drop-in for :func:`pickle.loads` on pickles of this library's records and ai2-tango
    1.3.2's (whose ``branch`` and ``dirty`` load as ``None``); see the module documentation for
    what is allowed and checked. Nothing outside the allow list is ever called.

    :param data: the pickle, of any protocol from 0 to 5; bytes after its end are ignored.
    :raises UnsafePickleError: the pickle names a global outside the allow list (before
        anything is called).
    :raises CorruptPickleError: the bytes are corrupt or truncated, or go past a limit.
    :raises StepInfoDecodeError: the pickle loads, but not to records of the right shape; the
        message names the field at fault.
    :raises TypeError: ``data`` is not bytes.
    """
    return _load(data)[0]


def load(file: IO[bytes]) -> Any:
    """Load one pickled record from a binary file, safely; see :func:`loads`.

    Reads the file to its end; when the file can seek, it is left just after the pickle, as
    :func:`pickle.load` leaves it, so consecutive pickles can be read one by one.

    :param file: a file opened for reading in binary mode.
    :raises TypeError: the file gives ``str`` instead of bytes.
    """
    try:
        start: Optional[int] = file.tell()
    except (OSError, AttributeError, ValueError):
        start = None
    data = file.read()
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"the file must be opened in binary mode (it gave {type(data).__name__})")
    value, end = _load(data)
    if start is not None and end < len(data):
        with contextlib.suppress(OSError, ValueError):
            file.seek(start + end)
    return value
