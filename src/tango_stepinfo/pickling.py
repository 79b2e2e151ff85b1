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
plus 1 MiB. A pickle of the same shape as a record loaded before (the same opcodes, field
names and globals; other strings, numbers and times) is matched against that record's template
instead, which accepts exactly what the scan would (see "templates" in the source).

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
import functools
import operator
import os
import pickle
import re
import typing
from array import array
from pathlib import Path, PurePath
from typing import (
    IO,
    Any,
    Callable,
    Dict,
    FrozenSet,
    Iterator,
    List,
    Optional,
    Sequence,
    Set,
    Tuple,
)

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
    """A new ``real`` with no fields yet, never probing.

    ``BUILD`` then gives it the pickled state through ``__setstate__``, which fills every field
    (those the pickle lacks with their plain default or ``None``): the scan refuses a pickle in
    which a record is never given a state, so no record comes out without its fields.
    """
    return object.__new__(real)


def _stand_in(real: type) -> type:
    """A subclass of ``real`` whose construction returns a bare ``real``, never calling __init__.

    ``NEWOBJ`` needs a class and ``REDUCE`` calls it; both end here and get what :func:`_bare`
    makes, ``object.__new__(real)``. Since the result is not an instance of the stand-in,
    ``type.__call__`` skips ``__init__`` (whose default factories would probe the machine).
    """
    # ``object.__new__(real, cls, *args)``, all in C (a Python __new__ calling _bare was two
    # frames a record; loads of the 70-package record -1 to -4%, CPU, in-process A/B, busy
    # machine): object.__new__ ignores the arguments of a class with an __init__ of its own and
    # no __new__, as every record class is; a record class given a __new__ would make it raise
    # TypeError (a corrupt pickle), never call anything.
    new = staticmethod(functools.partial(object.__new__, real))
    return _Frozen(real.__name__, (real,), {"__new__": new, "__slots__": ()})


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
        cells = {id(found): _function(_CALL) for found in table.values()}
        for stand_in in _REAL:
            cells[id(stand_in)] = _function(_RECORD_CLASS)
        cells[id(table[("copyreg", "_reconstructor")])] = _function(_RECONSTRUCTOR)
        cells[id(table[("builtins", "getattr")])] = _function(_GETATTR)
        cells[id(state)] = _function(_ENUM)
        for kind, result in ((list, _LIST), (dict, _DICT), (set, _SET), (tuple, _TUPLE)):
            cells[id(kind)] = _function(_CONTAINER_TYPE, result)
        cells[id(frozenset)] = _function(_CONTAINER_TYPE, _FROZENSET)
        _KINDS.update(cells)
    return _ALLOWED


_KINDS: Dict[int, int] = {}  # id of an allowed object -> its cell in the scan (its kind)


def _cell_of(found: Any) -> int:
    return _KINDS[id(found)]


_GLOBAL_CELLS: Dict[Tuple[bytes, bytes], int] = {}
"""(module, name) as UTF-8 in a pickle -> the scan's cell of the allowed object (the scan's
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


class _Whole:
    """The pickle as a file whose first read gives all of it (more than asked, which the C
    unpickler accepts): every opcode is then read from that one buffer, as the scan reads them.

    From an :class:`io.BytesIO`, the C unpickler read a ``FRAME``'s bytes at once, and an
    operand that went past the frame's end from the file after it, skipping the rest of the
    frame: a ``FRAME`` length ending inside an operand hid the opcodes after it from the C
    unpickler, not from the scan, so the scan checked other opcodes than ran (a 189-byte pickle
    gave the process-wide ``pytz.utc`` a state with ``BUILD``).
    """

    __slots__ = ("_rest",)

    def __init__(self, data: bytes) -> None:
        self._rest = data

    def read(self, size: int = -1) -> bytes:
        rest, self._rest = self._rest, b""
        return rest

    readline = read

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        count = min(len(view), len(self._rest))
        view[:count] = self._rest[:count]
        self._rest = self._rest[count:]
        return count


class _Unpickler(pickle.Unpickler):
    def find_class(self, module_name: str, global_name: str) -> Any:
        found = _FOUND.get((module_name, global_name))
        return _resolve(module_name, global_name) if found is None else found


# --- reading the opcodes first -----------------------------------------------------------------
#
# The scan runs the pickle's opcodes on a model of the unpickler's stack and memo, byte by byte.
# Both are arrays of 8-byte ints, "cells", one per value, so the model costs 8 bytes a value on
# the stack and 8 a memo entry (as the C unpickler's own) and no Python object per value:
#
# - a string: where its opcode starts, >= 0 (a string read from a text line, whose size its
#   opcode does not tell, carries its size too: ``size << 32 | _LINE | position``);
# - any other value that holds no other (number, None, bytes, a time, a zone, a path ...):
#   minus its estimated JSON size, from -1 down to :data:`_PLAIN`;
# - an allowed callable: :data:`_FUNCTION` minus its kind (see :func:`_function`);
# - a container or a record: :data:`_REF` minus its index in the scan's table of them, which
#   holds its kind, flags and depth (a byte each), its ``start`` and ``end`` (8 bytes each, see
#   below) and, for a tuple of up to 3 items (a call's arguments), the items: about 19 bytes a
#   container and no Python object.
#
# So ``min(items)`` tells, in one C call, whether all items are strings (>= 0), whether any is
# not (< 0), and whether any is a container or record (<= _REF): only then is each looked at.
#
# How large the JSON of the loaded value may become is counted in one running ``total``: each
# value adds its estimated JSON size once, when it is pushed; a value fetched again from the
# memo (or duplicated) adds its size again, each time. So only a container or record fetched
# again needs a size of its own: what ``total`` grew by from its start (where its first item
# began) to its last change. Everything in it was pushed (and counted) in between, and little
# else can be (what is pushed above it either goes into it, takes it along, or is dropped), so
# this is a close upper bound, and nothing is summed per item.
#
# A container may be changed (APPEND, SETITEM, ADDITEMS, BUILD) only before it is first used
# (put into another value, passed to a call, or fetched from the memo).
# pickle itself never does otherwise (children are complete before their parent is, and fetched
# again only after), and without that rule a list could be filled after it was counted, and a
# reference cycle be made.

_LINE = 1 << 31  # string cells from here on carry their size (pickles are under 2**31 bytes)
_POSITION = _LINE - 1
_PLAIN = -(1 << 40)  # the lowest cell of a plain value
_FUNCTION = -(1 << 41)  # allowed callables: _FUNCTION - (kind << 4 | result kind)
_REF = -(1 << 42)  # containers and records: _REF - index in the table
_EMPTY = -(1 << 63)  # in the memo: nothing stored at that index

# kinds of values ...
_LIST, _DICT, _SET, _TUPLE, _FROZENSET, _RECORD = 1, 2, 3, 4, 5, 6
# ... and of the allowed callables, as find_class hands them out
_CALL, _RECORD_CLASS, _RECONSTRUCTOR, _CONTAINER_TYPE, _GETATTR, _ENUM = 10, 11, 12, 13, 14, 15
# flags
_PLACED = 1  # used (see above): may not change any more
_NONSTR = 2  # (list, tuple, dict) holds something that is not a string
_SETBAD = 4  # (dict, tuple) would give a record's set field something that is not a string
_BUILT = 8  # (record) has been given its state

_SEP = 4  # JSON bytes per item besides the item: ", " and, in a dict, ": "
_RECORD_BYTES = 512  # JSON of a record besides its state (keys and nulls of absent fields)
_SCALAR_BYTES = 64  # JSON of a value an allowed function makes (a time: 32), besides its args
_EXPAND = 7  # JSON bytes per byte when a call turns a string into items: '"a", ' ...

_IS_REF = _REF.__ge__  # filter(_IS_REF, cells): the containers and records, in C
_EMPTIES = array("q", [_EMPTY])
_CONSTANTS = re.compile(b"[N\x88\x89]+")
_CONSTANT_OPS = frozenset(b"N\x88\x89")  # NONE, NEWTRUE, NEWFALSE
_APPENDED_FIRST = frozenset(b"N\x88\x89e")  # what may follow a MARK that opens APPENDS of them
_SET_FIELDS: Optional[frozenset[Optional[str]]] = None


def _function(kind: int, result: int = 0) -> int:
    """The cell of an allowed callable of ``kind`` (a container type: making ``result``)."""
    return _FUNCTION - (kind << 4 | result)


_NEW_RECORD = _function(_RECORD_CLASS)  # a record class, as NEWOBJ and REDUCE find it
_RECORD_START = b"\x94)\x81\x94}\x94("  # after its class: see STACK_GLOBAL in _scan


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


def _str_size(data: bytes, cell: int) -> int:
    """The estimated JSON size of the string cell ``cell``: its text and quotes."""
    if cell >= _LINE:
        return cell >> 32
    op = data[cell]
    if op in {0x8C, 0x55}:  # SHORT_BINUNICODE, SHORT_BINSTRING
        return data[cell + 1] + 2
    width = 8 if op == 0x8D else 4  # BINUNICODE8; BINUNICODE, BINSTRING
    return int.from_bytes(data[cell + 1 : cell + 1 + width], "little") + 2


def _text(data: bytes, cell: int) -> Optional[str]:
    """The text of a string cell, or None when the cell is not a string or the scan does not
    read its text (Python 2 strings, text that does not decode)."""
    if cell < 0:
        return None
    at = cell & _POSITION
    op = data[at]
    try:
        if op == 0x56:  # UNICODE: a raw-unicode-escape line
            return data[at + 1 : data.index(b"\n", at)].decode("raw-unicode-escape")
        if op in {0x8C, 0x58, 0x8D}:
            start = at + (2 if op == 0x8C else 5 if op == 0x58 else 9)
            return data[start : start + _str_size(data, cell) - 2].decode("utf-8")
    except (UnicodeDecodeError, ValueError):
        return None
    return None


class _Refused(Exception):
    """Internal: a scan failure, turned into :class:`CorruptPickleError` with the position."""


def _scan(data: bytes) -> int:
    """Check the opcodes of the pickle in ``data`` without running it; return where it ends.

    :raises UnsafePickleError: see :func:`_scan_all`.
    :raises CorruptPickleError: see :func:`_scan_all`.
    """
    return _scan_all(data, None)[0]


def _scan_all(data: bytes, reads: Optional[List[int]]) -> Tuple[int, int]:  # noqa: PLR0915
    """Check the opcodes of the pickle in ``data`` without running it (one flat dispatch on the
    opcode reads best); return where it ends and the estimated JSON size of its value.

    :param reads: if a list, the cells of the strings whose text the scan read are added to
        it (see :func:`_learn`).

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
    if n >= _LINE:
        raise CorruptPickleError("pickles of 2 GiB or more are not read")
    limit = _limits.JSON_BYTES_PER_PICKLE_BYTE * n + _limits.JSON_BYTES_FLOOR
    max_depth = _limits.MAX_DEPTH + 8  # the levels of records, their states and a list of them
    box = _limits.CONTAINER_BYTES
    stack: List[int] = []
    push = stack.append
    pop = stack.pop
    marks: List[int] = []  # where each open MARK is on the stack ...
    starts: List[int] = []  # ... and the total when it was set
    fence = 0
    memo = array("q")
    memoize = memo.append
    holes = 0  # empty memo slots: MEMOIZE stores at the count of filled ones, as C counts
    # the table of containers and records, by index
    kind_of = bytearray()
    flags_of = bytearray()
    depth_of = bytearray()  # at most max_depth + 1
    start_of = array("q")
    end_of = array("q")
    items_of: Dict[int, Tuple[int, ...]] = {}  # tuples of up to 3 items
    unbuilt = 0
    total = 0  # the estimated JSON size of everything pushed so far (see above)
    i = 0

    def too_large() -> _Refused:
        return _Refused(
            f"the value would expand to more than {limit} bytes of JSON "
            f"({_limits.JSON_BYTES_PER_PICKLE_BYTE} per pickle byte plus "
            f"{_limits.JSON_BYTES_FLOOR}), counting shared references each time"
        )

    def place(items: Sequence[int]) -> Tuple[int, int]:
        """Freeze the containers and records among ``items`` (they are used now); return the
        depth of the deepest and their flags, with :data:`_NONSTR` if any item is not a string.
        """
        if not items:
            return 0, 0
        least = min(items)
        if least >= 0:
            return 0, 0
        if least > _REF:
            return 0, _NONSTR
        depth, flags = 0, _NONSTR
        for c in filter(_IS_REF, items):
            k = _REF - c
            flags_of[k] |= _PLACED
            depth = max(depth, depth_of[k])
            flags |= flags_of[k]
        return depth, flags

    def new(kind: int, flags: int, depth: int, start: int, items: Any = None) -> int:
        """Add a container or record to the table, changed last now; return its cell."""
        kind_of.append(kind)
        flags_of.append(flags)
        depth_of.append(depth)
        start_of.append(start)
        end_of.append(total)
        if items is not None:
            items_of[len(kind_of) - 1] = items
        return _REF - len(kind_of) + 1

    def made(kind: int, items: Sequence[int], start: int) -> int:
        """A new container of ``kind`` holding ``items`` (now used), which were pushed since the
        total was ``start``."""
        nonlocal total
        total += box
        if total > limit:
            raise too_large()
        depth, flags = place(items)
        if depth >= max_depth:
            raise _Refused(f"values nest more than {max_depth} levels deep")
        flags &= _NONSTR | _SETBAD if kind == _TUPLE else _NONSTR
        return new(kind, flags, depth + 1, start, tuple(items) if len(items) <= 3 else None)

    def grow(cell: int, items: Sequence[int], kind: int, what: str) -> int:
        """Add ``items`` to the container ``cell`` in place (APPEND, SETITEM, ADDITEMS); return
        its index in the table."""
        if cell > _REF or kind_of[_REF - cell] != kind:
            raise _Refused(f"{what} on something that is not a new {_KIND_NAMES[kind]}")
        target = _REF - cell
        if flags_of[target] & _PLACED:
            if cell in items:
                raise _Refused("a container put into itself (reference cycles are not allowed)")
            raise _Refused(f"{what} on a {_KIND_NAMES[kind]} that was already used")
        depth, flags = place(items)
        if depth >= depth_of[target]:
            if depth >= max_depth:
                raise _Refused(f"values nest more than {max_depth} levels deep")
            depth_of[target] = depth + 1
        flags_of[target] |= flags & _NONSTR
        end_of[target] = total
        return target

    def set_fields(keys: Sequence[int], values: Sequence[int], target: int) -> None:
        """Mark the dict ``target`` (a table index) when one of its keys names a set field and
        its value is a list or tuple holding more than strings: its record then refuses it
        (unchecked, 30,000 ints of one hash made ``__setstate__``'s set take 6 s)."""
        for name_at, value in zip(keys, values):
            if (
                value <= _REF
                and kind_of[_REF - value] in (_LIST, _TUPLE)
                and flags_of[_REF - value] & _NONSTR
            ):
                if reads is not None:
                    reads.append(name_at)
                if _text(data, name_at) in _set_fields():
                    flags_of[target] |= _SETBAD

    def strings_only(items: Sequence[int], what: str) -> None:
        if items and min(items) < 0:
            raise _Refused(f"{what} may only be strings")

    def put(index: int, cell: int) -> None:
        nonlocal holes
        if index > i:  # the C unpickler would allocate memory for every index up to it
            raise _Refused(f"memo index {index} out of range")
        if index >= len(memo):
            holes += index - len(memo)
            memo.extend(_EMPTIES * (index - len(memo)))
            memoize(cell)
            return
        if memo[index] == _EMPTY:
            holes -= 1
        memo[index] = cell

    def again(cell: int) -> int:
        """``cell`` fetched from the memo or duplicated: counted again (a container or record
        frozen first)."""
        nonlocal total
        if cell >= 0:
            total += _str_size(data, cell) + _SEP
        elif cell >= _PLAIN:
            total += _SEP - cell
        elif cell <= _REF:
            k = _REF - cell
            flags_of[k] |= _PLACED
            total += end_of[k] - start_of[k] + _SEP
            if total > limit:
                raise too_large()
        return cell

    def fetch(index: int) -> int:
        """The cell at memo ``index`` (BINGET ...), counted again."""
        if index >= len(memo) or memo[index] == _EMPTY:
            raise _Refused(f"memo index {index} not stored")
        return again(memo[index])

    def size_of(cell: int) -> int:
        if cell >= 0:
            return _str_size(data, cell)
        if cell >= _PLAIN:
            return -cell
        if cell <= _REF:
            return end_of[_REF - cell] - start_of[_REF - cell]
        return 0  # a callable

    def call(fn: int, args: int, what: str) -> int:
        """The cell of what calling the allowed callable ``fn`` with the tuple ``args`` gives."""
        nonlocal unbuilt, total
        if not _REF < fn <= _FUNCTION:
            raise _Refused(f"{what} of something that is not an allowed callable")
        if args > _REF or kind_of[_REF - args] != _TUPLE:
            raise _Refused(f"{what} with arguments that are not a tuple")
        flags_of[_REF - args] |= _PLACED
        items = items_of.get(_REF - args)
        kind, result = divmod(_FUNCTION - fn, 16)
        if kind in (_RECORD_CLASS, _RECONSTRUCTOR):
            unbuilt += 1
            total += _RECORD_BYTES
            if total > limit:
                raise too_large()
            return new(_RECORD, 0, 1, total - _RECORD_BYTES)
        if kind == _GETATTR:
            if reads is not None and items is not None:
                reads.extend(items)
            if (
                items is None
                or len(items) != 2
                or items[0] != _function(_ENUM)
                or _text(data, items[1]) not in StepState.__members__
            ):
                raise UnsafePickleError(
                    "builtins.getattr", "allowed only as getattr(StepState, member name)"
                )
            total += 16
            return -16
        if kind != _CONTAINER_TYPE:  # a time, a zone, a path, a StepState, bytes
            total += _SCALAR_BYTES
            return -(size_of(args) + _SCALAR_BYTES)
        if items is None or len(items) > 1:  # not a call the container types accept
            size, depth, flags = _EXPAND * size_of(args), depth_of[_REF - args], _NONSTR
        elif not items:
            size, depth, flags = box, 1, 0
        elif items[0] > _FUNCTION:  # a string or bytes, turned into items
            size, depth = box + _EXPAND * size_of(items[0]), 1
            flags = 0 if items[0] >= 0 else _NONSTR
        elif items[0] <= _REF and kind_of[_REF - items[0]] != _RECORD:  # the same items
            k = _REF - items[0]
            size, depth, flags = size_of(items[0]), depth_of[k], flags_of[k] & _NONSTR
        else:  # a record or a callable: not what the container types take
            size, depth, flags = _EXPAND * (size_of(items[0]) + box), 2, _NONSTR
        if result in (_SET, _FROZENSET, _DICT) and flags & _NONSTR:
            raise _Refused(f"{_KIND_NAMES[result]} members and keys may only be strings")
        total += size
        if total > limit:
            raise too_large()
        if depth > max_depth:
            raise _Refused(f"values nest more than {max_depth} levels deep")
        return new(result, flags, max(depth, 1), total - size)

    def global_cell(module: str, name: str) -> int:
        return _cell_of(_resolve(module, name))

    def to_mark() -> Tuple[Sequence[int], int]:
        """Pop the values down to the topmost MARK, and the MARK; return the values and the
        total when the MARK was set."""
        nonlocal fence
        if not marks:
            raise _Refused("no MARK to pop to")
        at = marks.pop()
        fence = marks[-1] if marks else 0
        items = stack[at:]
        del stack[at:]
        return items, starts.pop()

    def constants_appended() -> bool:
        """Read at once a run of constants appended to the list on top of the stack, one by one
        or a few at a time (``Na``, ``(NNe``), if ``i`` starts one; whether it did. (One opcode
        at a time, 1 MB of ``Na`` took 0.8 s of CPU; 3.11. A regex would keep state for each
        repetition: 60 MB.)"""
        nonlocal i, total
        if len(stack) <= fence:
            return False
        target = _REF - stack[-1]
        if target < 0 or kind_of[target] != _LIST or flags_of[target] & _PLACED:
            return False
        at = i
        count = 0
        while True:
            op = data[at]
            if op in _CONSTANT_OPS and data[at + 1] == 0x61:  # NONE ... APPEND
                count += 1
                at += 2
            elif op == 0x28:  # MARK, NONE ..., APPENDS
                run = _CONSTANTS.match(data, at + 1)
                end = at + 1 if run is None else run.end()
                if data[end] != 0x65:
                    break
                count += end - at - 1
                at = end + 1
            else:
                break
        if at == i:
            return False
        if count:
            total += (5 + _SEP) * count
            flags_of[target] |= _NONSTR
            end_of[target] = total
        i = at
        return True

    def line(start: int) -> bytes:
        end = data.index(b"\n", start)
        return data[start:end]

    try:
        while True:
            op = data[i]
            # The dispatch tests the opcodes most frequent in a record's pickle first, one or a
            # set at a time: on 3.11, ``op == x`` and ``op in {a, b, c, d}`` cost 35 to 45 ns,
            # ``op in (a, b, c, d)`` (a tuple) about 100 ns when it fails.
            if op == 0x8C:
                # SHORT_BINUNICODE, in runs, each followed by MEMOIZE: 75% of a record's
                # opcodes. This loop holds only what such a run needs (about 30 bytecodes a
                # string); the memo gets the run's cells at once, and the total its bytes in the
                # pickle (at least each string's size). A string not memoized ends the run.
                # (data[...] past the end raises IndexError: the string is truncated)
                first = len(stack)
                begin = i
                while True:
                    push(i)
                    i += data[i + 1] + 2
                    if data[i] != 0x94:
                        memoized = len(stack) - 1
                        break
                    i += 1
                    if data[i] != 0x8C:
                        memoized = len(stack)
                        break
                if holes:
                    for cell in stack[first:memoized]:
                        put(len(memo) - holes, cell)
                else:
                    memo.fromlist(stack[first:memoized])
                total += i - begin + _SEP * (len(stack) - first)
            elif op == 0x94:  # MEMOIZE
                if len(stack) <= fence:
                    raise _Refused("memo store with an empty stack")
                if holes:
                    put(len(memo) - holes, stack[-1])
                else:
                    memoize(stack[-1])
                i += 1
            elif op == 0x68:  # BINGET
                index = data[i + 1]
                cell = memo[index] if index < len(memo) else _EMPTY
                if 0 <= cell < _LINE and data[cell] == 0x8C:  # a short string: inlined
                    total += data[cell + 1] + 2 + _SEP
                    push(cell)
                else:
                    push(fetch(index))
                i += 2
            elif op == 0x28:  # MARK
                if data[i + 1] == 0x31:  # POP_MARK at once: nothing happens (no call of to_mark)
                    i += 2
                    continue
                if data[i + 1] in _APPENDED_FIRST and constants_appended():
                    continue
                fence = len(stack)
                marks.append(fence)
                starts.append(total)
                i += 1
            elif op in {0x7D, 0x29, 0x5D, 0x8F}:  # EMPTY_ DICT TUPLE LIST SET
                total += box
                if total > limit:
                    raise too_large()
                if op == 0x29:
                    push(new(_TUPLE, 0, 1, total - box, ()))
                else:  # new() inlined: the most frequent containers
                    kind_of.append(_DICT if op == 0x7D else _LIST if op == 0x5D else _SET)
                    flags_of.append(0)
                    depth_of.append(1)
                    start_of.append(total - box)
                    end_of.append(total)
                    push(_REF - len(kind_of) + 1)
                i += 1
                if data[i] == 0x94 and not holes:
                    # A MEMOIZE that follows, at once: 20 of the 140 passes of this loop for a
                    # record's pickle were one after a container, a global or a call.
                    memoize(stack[-1])
                    i += 1
            elif op == 0x93:  # STACK_GLOBAL
                if len(stack) - 2 < fence:
                    raise _Refused("stack underflow")
                name_at = pop()
                module_at = pop()
                if (
                    0 <= name_at < _LINE
                    and 0 <= module_at < _LINE
                    and data[name_at] == 0x8C
                    and data[module_at] == 0x8C
                ):
                    # The cell by the names' raw bytes: no decoding, no _resolve (measured on
                    # 3.11 over 200 globals: 0.5 us less a global).
                    if reads is not None:
                        reads += (module_at, name_at)
                    key = (
                        data[module_at + 2 : module_at + 2 + data[module_at + 1]],
                        data[name_at + 2 : name_at + 2 + data[name_at + 1]],
                    )
                    found = _GLOBAL_CELLS.get(key)
                    if found is None:
                        module, name = (part.decode("utf-8", "replace") for part in key)
                        found = global_cell(module, name)
                        if len(_GLOBAL_CELLS) < 1000:
                            _GLOBAL_CELLS[key] = found
                    if found == _NEW_RECORD and data[i + 1 : i + 8] == _RECORD_START and not holes:
                        # The opcodes that start each record's pickle, at once: MEMOIZE (the
                        # class), EMPTY_TUPLE, NEWOBJ, MEMOIZE, EMPTY_DICT, MEMOIZE, MARK (on
                        # 3.11, 2 us less a record). The tuple is used at once: no entry.
                        memoize(found)
                        total += box + _RECORD_BYTES
                        made_at = new(_RECORD, 0, 1, total - _RECORD_BYTES)
                        unbuilt += 1
                        total += box
                        state_at = new(_DICT, 0, 1, total - box)
                        stack += (made_at, state_at)
                        memo.extend((made_at, state_at))
                        fence = len(stack)
                        marks.append(fence)
                        starts.append(total)
                        if total > limit:
                            raise too_large()
                        i += 8
                        continue
                    push(found)
                else:
                    if reads is not None:
                        reads += (module_at, name_at)
                    name_text = _text(data, name_at)
                    module_text = _text(data, module_at)
                    if module_text is None or name_text is None:
                        raise _Refused("STACK_GLOBAL needs two strings")
                    push(global_cell(module_text, name_text))
                i += 1
                if data[i] == 0x94 and not holes:  # MEMOIZE at once (see EMPTY_DICT)
                    memoize(stack[-1])
                    i += 1
            elif op in {0x75, 0x73}:  # SETITEMS, SETITEM
                if op == 0x75:
                    items = to_mark()[0]
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
                    keys = items[0::2]
                    values = items[1::2]
                    if min(keys) < 0:
                        raise _Refused("dict keys may only be strings")
                    least = min(values)
                    if least <= _REF:  # a container or record as a value: grow()
                        target = grow(stack[-1], values, _DICT, "SETITEM")
                        set_fields(keys, values, target)
                    else:  # strings and plain values only (nothing to place): grow() inlined
                        target = _REF - stack[-1]
                        if target < 0 or kind_of[target] != _DICT or flags_of[target] & _PLACED:
                            grow(stack[-1], values, _DICT, "SETITEM")  # raises
                        if least < 0:
                            flags_of[target] |= _NONSTR
                        end_of[target] = total
                i += 1
            elif op in {0x81, 0x52}:  # NEWOBJ, REDUCE
                if len(stack) - 2 < fence:
                    raise _Refused("stack underflow")
                args = pop()
                fn = pop()
                if fn == _NEW_RECORD and args <= _REF and items_of.get(_REF - args) == ():
                    # a record made with no arguments, as pickle writes it: call() inlined
                    flags_of[_REF - args] |= _PLACED
                    unbuilt += 1
                    total += _RECORD_BYTES
                    push(new(_RECORD, 0, 1, total - _RECORD_BYTES))
                else:
                    push(call(fn, args, "NEWOBJ" if op == 0x81 else "REDUCE"))
                i += 1
                if data[i] == 0x94 and not holes:  # MEMOIZE at once (see EMPTY_DICT)
                    memoize(stack[-1])
                    i += 1
            elif op == 0x62:  # BUILD
                if len(stack) - 2 < fence:
                    raise _Refused("stack underflow")
                state = pop()
                record = _REF - stack[-1]
                if (
                    record < 0
                    or kind_of[record] != _RECORD
                    or flags_of[record] & (_PLACED | _BUILT)
                ):
                    raise _Refused("only a new record may be given a state (BUILD)")
                if state <= _REF:
                    k = _REF - state
                    if flags_of[k] & _SETBAD:
                        raise _Refused("a record's set field may only hold strings")
                    if kind_of[k] == _TUPLE and k not in items_of:
                        # (dict, slots), as pickle writes it, keeps its dict's _SETBAD; a tuple
                        # a call made does not: tuple([dict, None]) with 30,000 ints of one
                        # hash in a set field made __setstate__'s set take 5.5 s (359 KB, 3.11)
                        raise _Refused("a record's state may only be a dict or (dict, slots)")
                    flags_of[k] |= _PLACED
                    depth = depth_of[k]
                    if depth >= depth_of[record]:
                        if depth >= max_depth:
                            raise _Refused(f"values nest more than {max_depth} levels deep")
                        depth_of[record] = depth + 1
                flags_of[record] |= _BUILT
                end_of[record] = total
                unbuilt -= 1
                i += 1
            elif op == 0x4B:  # BININT1
                push(-3)
                total += 3 + _SEP
                i += 2
            elif 0x85 <= op <= 0x87:  # TUPLE1, TUPLE2, TUPLE3
                count = op - 0x84
                if len(stack) - count < fence:
                    raise _Refused("stack underflow")
                items = stack[-count:]
                del stack[-count:]
                # where the items began is not known: the tuple starts their sizes back
                push(made(_TUPLE, items, total - sum(map(size_of, items))))
                i += 1
                if data[i] == 0x94 and not holes:  # MEMOIZE at once (see EMPTY_DICT)
                    memoize(stack[-1])
                    i += 1
            elif op in {0x65, 0x61}:  # APPENDS, APPEND
                if op == 0x65:
                    items = to_mark()[0]
                else:
                    if len(stack) - 1 < fence:
                        raise _Refused("stack underflow")
                    items = stack[-1:]
                    del stack[-1:]
                if not stack:
                    raise _Refused("stack underflow")
                if items:
                    least = min(items)
                    target = _REF - stack[-1]
                    if (
                        least > _REF
                        and target >= 0
                        and kind_of[target] == _LIST
                        and not flags_of[target] & _PLACED
                    ):
                        # no container or record among the items: grow() inlined, since a
                        # value and an APPEND can be as short as three bytes ("K\x01a"): 1 MB
                        # of them 16% less CPU (3.11, in-process A/B, busy 2-core machine)
                        if least < 0:
                            flags_of[target] |= _NONSTR
                        end_of[target] = total
                    else:
                        grow(stack[-1], items, _LIST, "APPEND")
                i += 1
            elif op in {0x4E, 0x88, 0x89}:  # NONE, NEWTRUE, NEWFALSE: a run, pushed at once
                if data[i + 1] == 0x61 and constants_appended():
                    continue
                if data[i + 1] not in _CONSTANT_OPS:  # one alone: no call of the expression
                    total += 5 + _SEP
                    if data[i + 1] == 0x30:  # POP at once: counted, then gone from the stack
                        i += 2
                    else:
                        push(-5)
                        i += 1
                    continue
                run = _CONSTANTS.match(data, i).end() - i  # type: ignore[union-attr]
                stack.extend([-5] * run)
                total += (5 + _SEP) * run
                i += run
            # DUP, POP and POP_MARK early: rarely in a record, but a hostile 1 MB pickle of
            # them (N0 N0 ...: a constant and a POP, 500,000 times) pays every test before.
            elif op == 0x32:  # DUP
                if len(stack) <= fence:
                    raise _Refused("stack underflow")
                push(again(stack[-1]))
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
            elif op in {0x74, 0x6C, 0x64, 0x91, 0x90, 0x6F}:  # TUPLE LIST DICT FROZENSET ...
                items, start = to_mark()
                if op == 0x74:
                    push(made(_TUPLE, items, start))
                elif op == 0x6C:
                    push(made(_LIST, items, start))
                elif op == 0x64:
                    if len(items) % 2:
                        raise _Refused("odd number of items for DICT")
                    strings_only(items[0::2], "dict keys")
                    push(made(_DICT, items, start))
                    set_fields(items[0::2], items[1::2], _REF - stack[-1])  # as SETITEMS does
                elif op == 0x91:
                    strings_only(items, "frozenset members")
                    push(made(_FROZENSET, items, start))
                elif op == 0x90:  # ADDITEMS
                    if not stack:
                        raise _Refused("stack underflow")
                    if items:
                        strings_only(items, "set members")
                        grow(stack[-1], items, _SET, "ADDITEMS")
                else:  # OBJ: class, then arguments
                    if not items:
                        raise _Refused("OBJ without a class")
                    push(call(items[0], made(_TUPLE, items[1:], start), "OBJ"))
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
                push(fetch(int.from_bytes(data[i + 1 : i + 5], "little")))
                i += 5
            elif op in {0x58, 0x8D}:  # BINUNICODE, BINUNICODE8
                width = 4 if op == 0x58 else 8
                length = int.from_bytes(data[i + 1 : i + 1 + width], "little")
                if i + 1 + width + length > n or len(data[i + 1 : i + 1 + width]) < width:
                    raise _Refused("truncated string")
                push(i)
                total += length + 2 + _SEP
                i += 1 + width + length
            elif op == 0x95:  # FRAME
                i += 9
            elif op == 0x2E:  # STOP
                if len(stack) <= fence:
                    raise _Refused("stack underflow")
                if unbuilt:
                    raise _Refused("a record without state (every record needs one)")
                if total > limit:
                    raise too_large()
                return i + 1, total
            elif op == 0x80:  # PROTO
                if data[i + 1] > pickle.HIGHEST_PROTOCOL:
                    raise _Refused(f"unsupported pickle protocol {data[i + 1]}")
                i += 2
            elif op == 0x4D:  # BININT2
                push(-5)
                total += 5 + _SEP
                i += 3
            elif op == 0x4A:  # BININT
                push(-11)
                total += 11 + _SEP
                i += 5
            elif op == 0x47:  # BINFLOAT
                push(-24)
                total += 24 + _SEP
                i += 9
            elif op in {0x8A, 0x8B}:  # LONG1, LONG4
                width = 1 if op == 0x8A else 4
                length = int.from_bytes(data[i + 1 : i + 1 + width], "little", signed=width == 4)
                if length < 0 or i + 1 + width + length > n:
                    raise _Refused("truncated or negative byte count")
                # (reading bytes into an int is linear: the digit limit is checked after
                # loading, where the field is known)
                push(-(3 * length + 3))
                total += 3 * length + 3 + _SEP
                i += 1 + width + length
            elif op in {0x63, 0x69}:  # GLOBAL, INST
                module_line = line(i + 1)
                name_line = line(i + 2 + len(module_line))
                i += 3 + len(module_line) + len(name_line)
                fn = global_cell(module_line.decode("utf-8"), name_line.decode("utf-8"))
                if op == 0x63:
                    push(fn)
                else:
                    push(call(fn, made(_TUPLE, *to_mark()), "INST"))
            elif op in {0x43, 0x42, 0x8E, 0x96, 0x55, 0x54}:  # bytes, Python 2 strings
                width = 1 if op in {0x43, 0x55} else 4 if op in {0x42, 0x54} else 8
                length = int.from_bytes(data[i + 1 : i + 1 + width], "little", signed=op == 0x54)
                if length < 0 or i + 1 + width + length > n:
                    raise _Refused("truncated or negative length")
                push(i if op in {0x55, 0x54} else -(length + 2))  # a string, or bytes
                total += length + 2 + _SEP
                i += 1 + width + length
            elif op in {0x56, 0x53, 0x49, 0x4C, 0x46}:  # UNICODE STRING INT LONG FLOAT (text)
                text = line(i + 1)
                if op in {0x49, 0x4C} and len(text) > _limits.MAX_INT_DIGITS + 2:
                    raise _Refused(f"an int of more than {_limits.MAX_INT_DIGITS} digits")
                if op in {0x56, 0x53}:
                    size = 2 * len(text) + 2
                    push(size << 32 | _LINE | i)
                else:
                    size = max(len(text), 24)
                    push(-size)
                total += size + _SEP
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
                    push(fetch(int(text)))
            elif op == 0x92:  # NEWOBJ_EX: only without keyword arguments
                if len(stack) - 3 < fence:
                    raise _Refused("stack underflow")
                kwargs = pop()
                args = pop()
                kw = _REF - kwargs
                if kw < 0 or kind_of[kw] != _DICT or end_of[kw] - start_of[kw] > box:
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
    except (ValueError, UnicodeDecodeError, OverflowError) as e:  # no line end, bad text ...
        raise CorruptPickleError(f"corrupt pickle at byte {i}: {e}") from None


# --- the scan, skipped for a pickle of a shape scanned before ----------------------------------
#
# Records of one kind, pickled by this library, differ mostly in the bytes of their strings,
# numbers and times, not in their opcodes: the field names, globals and memo indexes repeat.
# So after a record has loaded, its pickle is remembered as a *template*: its bytes cut into
# fixed *chunks* and *holes* between them, the holes being bytes the scan never reads:
#
# - the payload of a ``SHORT_BINUNICODE`` (a string of up to 254 bytes) whose text the scan did
#   not read (the names of globals, a set field's key, ``getattr``'s member name are read), that
#   is not fetched again from the memo and is not a record's field name: a *free* string, with
#   its length byte (the length may change);
# - the length of a ``FRAME``, the value of ``BININT1``, ``BININT2``, ``BININT`` and
#   ``BINFLOAT``, and the bytes of ``SHORT_BINBYTES``, ``BINBYTES``, ``LONG1``, ``LONG4``,
#   ``BINUNICODE`` (a string whose text was not read): the same number of bytes.
#
# A pickle made of the same chunks, in the same order, with any bytes in the holes, runs the scan
# through the same steps (the scan reads the opcodes and lengths, which are in the chunks, and a
# string's position only as its identity) to the same end, with the same stack, memo, depths and
# flags: it differs only in the total, the estimated JSON size, which grows by each free string's
# size once for each time the scan counts it. Learning checks that each is counted exactly once:
# the scan of the same pickle with every free string one byte longer must give a total larger by
# exactly their number (each is counted at least once, when it is pushed, and the total is a sum
# of such counts). So the template's total plus the change in those strings' sizes is the total
# the scan would reach, and the total only grows: if it is within the bound at the end, it was
# all along. Such a pickle is accepted without its scan, as the scan would accept it; anything
# else, a byte off in a chunk included, goes through the scan, which words the error.
#
# Only the opcodes of protocols 4 and 5 that pickle.dumps writes for records are in templates
# (no PUT ops, whose memo indexes the scan compares with positions, no text lines). A record
# with 70 packages has about 190 holes; matching it is a loop of three steps a hole.

_OPS_PLAIN = frozenset(b"\x94(}])\x8f\x93usb\x81R\x85\x86\x87tld\x91\x90eaN\x88\x8901.2")
_OPS_KEPT = {0x80: 1, 0x68: 1, 0x6A: 4}  # PROTO, BINGET, LONG_BINGET: argument in the chunk
_OPS_NUMBER = {0x95: 8, 0x4B: 1, 0x4D: 2, 0x4A: 4, 0x47: 8}  # FRAME, BININT1/2, BININT, BINFLOAT
# SHORT_BINBYTES, BINBYTES, BINBYTES8, LONG1, LONG4, BINUNICODE, BINUNICODE8: width of the size
_OPS_SIZED = {0x43: 1, 0x42: 4, 0x8E: 8, 0x8A: 1, 0x8B: 4, 0x58: 4, 0x8D: 8}
_TEMPLATES_MAX = 32  # templates kept, the most recently used first
_TEMPLATE_BYTES = 1 << 16  # the longest pickle learned (so at most 2 MiB of chunks)
# Steps (a chunk and the hole after it) kept in all templates: each costs about 110 bytes (a
# tuple, its chunk, its ints): 32 templates of 41 KB pickles of BININT1 (2 bytes a step) held
# 46 MB (tracemalloc, 3.11); now at most about 3 MB, and one template takes at most a quarter.
_TEMPLATE_STEPS = 1 << 15
_LEARN_EVERY = 64  # with _TEMPLATES_MAX templates, a new one is learned once in so many misses
_SEEN_MAX = 256
_Steps = Tuple[Tuple[bytes, int, int], ...]  # chunk, its size, the hole after it
_Template = Tuple[int, _Steps, int, int]  # its MEMOIZE bytes, steps, total, end
_TEMPLATES: List[_Template] = []
_SEEN: Set[int] = set()  # MEMOIZE bytes of pickles that matched no template lately
_FAILED: Set[int] = set()  # MEMOIZE bytes of pickles whose learning gave no template lately
_misses = 0
_FIELD_NAMES: Optional[FrozenSet[bytes]] = None


def _field_names() -> FrozenSet[bytes]:
    """The field names of the record classes, as a pickle spells them: kept in chunks."""
    global _FIELD_NAMES
    if _FIELD_NAMES is None:
        _FIELD_NAMES = frozenset(f.name.encode() for c in _RECORDS for f in _plans().fields(c))
    return _FIELD_NAMES


def _matched(data: bytes, memos: int) -> int:
    """Where the pickle in ``data`` ends if a template matches it (then it is accepted as its
    scan would accept it, see above), else -1. ``memos`` is how many bytes 0x94 (MEMOIZE) it
    holds: only the templates with as many in their chunks are tried (a string, time or number
    holding that byte makes the pickle go through the scan)."""
    global _TEMPLATES
    n = len(data)
    walked = 0  # bytes of ``data`` matched by the templates that then failed
    for template in _TEMPLATES:
        count, steps, total, end = template
        if count != memos:
            continue
        if walked > n:
            # Templates that share a long start (an attacker can have 32 learned) would each
            # walk the input to near its end: a 63 KB pickle missing 32 such templates took
            # 0.13 s to match against 6.5 ms to scan (3.11). Misses walk it once at most.
            return -1
        i = 0
        try:
            for chunk, size, hole in steps:
                if not data.startswith(chunk, i):
                    break
                i += size
                i += data[i] + 1 if hole < 0 else hole
            else:
                limit = _limits.JSON_BYTES_PER_PICKLE_BYTE * n + _limits.JSON_BYTES_FLOOR
                if total + i - end > limit or n >= _LINE:
                    return -1  # the scan words it
                if template is not _TEMPLATES[0]:  # (another thread may have dropped it)
                    others = (t for t in _TEMPLATES if t is not template)
                    _TEMPLATES = [template, *others][:_TEMPLATES_MAX]
                return i
        except IndexError:  # a hole's length past the end
            pass
        walked += i
    return -1


def _holes(data: bytes, end: int, reads: List[int]) -> Optional[List[Tuple[int, int, bool]]]:
    """The holes of the scanned pickle ``data[:end]``: (start, bytes, free string?) each, in
    order; None if it holds an opcode templates leave out."""
    read = {cell & _POSITION for cell in reads if cell >= 0}
    names = _field_names()
    strings: Dict[int, int] = {}  # memo index -> position of the string stored there
    fetched = set()
    found: List[Tuple[int, int, bool]] = []
    memo = 0
    last = -1  # position of the string just pushed (a SHORT_BINUNICODE), or -1
    i = 0
    while i < end:
        op = data[i]
        at = i + 1
        if op in _OPS_PLAIN:
            i = at
            if op == 0x94:
                if last >= 0:
                    strings[memo] = last
                memo += 1
        elif op == 0x8C:
            size = data[at]
            if size < 255 and i not in read and data[at + 1 : at + 1 + size] not in names:
                found.append((at, size + 1, True))
            i = at + 1 + size
        elif op in _OPS_KEPT:
            width = _OPS_KEPT[op]
            if op != 0x80:
                fetched.add(int.from_bytes(data[at : at + width], "little"))
            i = at + width
        elif op in _OPS_NUMBER:
            found.append((at, _OPS_NUMBER[op], False))
            i = at + _OPS_NUMBER[op]
        elif op in _OPS_SIZED:
            width = _OPS_SIZED[op]
            size = int.from_bytes(data[at : at + width], "little")
            if size and not (op in {0x58, 0x8D} and i in read):
                found.append((at + width, size, False))
            i = at + width + size
        else:
            return None
        last = at - 1 if op == 0x8C else -1
    shared = {strings[k] + 1 for k in fetched if k in strings}  # a string fetched again: kept
    return [hole for hole in found if not (hole[2] and hole[0] in shared)]


def _learn(data: bytes, end: int, total: int, reads: List[int]) -> Optional[_Template]:
    """The template of ``data[:end]``, a pickle that loaded (its scan gave ``total`` and
    ``reads``), or None if it may not have one (see above)."""
    holes = _holes(data, end, reads)
    if holes is None:
        return None
    # every free string one byte longer: its size must be counted once (see above)
    parts: List[bytes] = []
    i = 0
    for start, size, free in holes:
        if free:
            parts += (data[i:start], bytes([data[start] + 1]), data[start + 1 : start + size], b"a")
            i = start + size
    parts.append(data[i:end])
    longer = b"".join(parts)
    count = sum(free for _, _, free in holes)
    try:
        if _scan_all(longer, None) != (end + count, total + count):
            return None
    except pickle.UnpicklingError:  # (a longer string may go past a limit)
        return None
    steps = []
    i = 0
    for start, size, free in holes:
        steps.append((data[i:start], start - i, -1 if free else size))
        i = start + size
    steps.append((data[i:end], end - i, 0))
    return sum(chunk.count(0x94) for chunk, _, _ in steps), tuple(steps), total, end


def _missed(data: bytes, memos: int, end: int, total: int, reads: List[int]) -> None:
    """Learn the template of a pickle that matched none and loaded, if its shape seems to come
    again: a pickle with as many MEMOIZE bytes missed lately, and while the templates are all
    taken, once in :data:`_LEARN_EVERY` misses (learning costs about two scans)."""
    global _misses, _TEMPLATES
    _misses += 1
    if memos not in _SEEN:
        if len(_SEEN) >= _SEEN_MAX:
            _SEEN.clear()
        _SEEN.add(memos)
        return
    # A shape whose learning failed (a string counted twice, too many holes ...) is tried again
    # once in _LEARN_EVERY misses too: each try was 2.7 times the load of a record with a list
    # referenced twice in its config (3.11), at every load while fewer templates were held.
    if end > _TEMPLATE_BYTES or (
        (len(_TEMPLATES) >= _TEMPLATES_MAX or memos in _FAILED) and _misses % _LEARN_EVERY
    ):
        return
    try:
        template = _learn(data, end, total, reads)
    except Exception:  # a template is only a shortcut: never let learning fail a load
        template = None
    if template is None or len(template[1]) > _TEMPLATE_STEPS // 4:
        if len(_FAILED) >= _SEEN_MAX:
            _FAILED.clear()
        _FAILED.add(memos)
        return
    _FAILED.discard(memos)
    kept, steps = [template], len(template[1])
    for other in _TEMPLATES[: _TEMPLATES_MAX - 1]:
        steps += len(other[1])
        if steps > _TEMPLATE_STEPS:
            break
        kept.append(other)
    _TEMPLATES = kept


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


def _items(value: Any) -> Iterator[Tuple[Any, str]]:
    """The loaded ``value``'s records (or states) with their paths: the items of a list, tuple
    or dict (``[0]``, ``['key']``), or ``value`` itself (path ``""``). Made one at a time, so
    that the first item of the wrong type ends the walk (a 1 MB pickle holds a million items).

    :raises StepInfoDecodeError: ``value`` is none of these shapes.
    """
    if type(value) in (list, tuple):
        return ((item, f"[{i}]") for i, item in enumerate(value))
    if type(value) is dict:
        return ((item, f"[{key!r}]") for key, item in value.items())
    if type(value) is StepState or type(value) in _RECORDS:
        return iter([(value, "")])
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
        if kind is not str and kind is not bool:
            _usable_value(record, name, value, path)


def _usable_value(record: Any, name: str, value: Any, path: str) -> None:
    """Make the value of field ``name`` of the record at ``path`` usable (see
    :func:`_check_loaded`), or refuse it."""
    kind = type(value)
    if value is None:
        if name in _required(type(record)):
            # a pickle from before the field existed: to_json_dict could not write it
            raise StepInfoDecodeError(_at(path, name), "required field is missing")
    elif kind is int:
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
        record.__dict__[name] = _real_time(value, _at(path, name))
    elif isinstance(value, PurePath) and type(value) is not _NATIVE_PATH:
        record.__dict__[name] = _kinds_dec_path(str(value))
    elif kind is dict and name in _FREE_JSON:
        try:
            record.__dict__[name] = _json_value(value, 1)
        except _Where as e:
            inner = "".join(reversed(e.parts))
            raise CorruptPickleError(f"{_at(path, name)}{inner}: {e.problem}") from None


# --- the same checks, quicker for the shapes already seen ------------------------------------
#
# Both checks above walk every field of every record, and most fields hold a string, a bool or
# None, whose check depends on the field and the type alone. So once a record has passed both,
# the types of its field values (one tuple, made in C) are remembered for its class, with the
# fields whose values need a look of their own (any other type: ints, times, paths, config,
# records ...) and, for each, the look: a function of the field's type and the value's exact
# type, chosen once (:func:`_look`). A look accepts only what the two checks accept, does what
# :func:`_usable_value` does to it, and returns False for anything it is not sure of. A record
# of a remembered shape gets only those looks; any other record, or any look that says False or
# raises, goes the whole way above, which also words the error. Measured on a record with 70
# packages (3.11): about 40 us of checks became about 20 with the shapes; the looks take the
# checks of a known shape from 36 to 19 us (best of 20 interleaved rounds, CPU time, busy
# machine): the field checks were the encoders, which built copies only to drop them (lists of
# the 70 package rows, a sorted dict of the variables, a sorted copy of config), a time in UTC
# needs no isoformat(), and config, already JSON, is not copied.

_SHAPES_MAX = 64  # remembered shapes per record class (cleared whole when full)
_SKIP = frozenset((str, bool, type(None)))
_Look = Callable[[Any, Any], bool]  # (record, value) -> whether the value is checked and usable


class _Shapes:
    """The remembered shapes of one record class."""

    def __init__(self, cls: type) -> None:
        checks = _record._state(cls).checks
        self.names = tuple(c[0] for c in checks)
        self.row = operator.itemgetter(*self.names)
        self.checks = tuple(c[1] for c in checks)
        self.hints = tuple(
            f.detail if f.kind.name == "optional" else f.tp for f in _plans().fields(cls)
        )
        self.lists = _record_lists(cls)
        self.known: Dict[Tuple[type, ...], Tuple[Tuple[int, _Look], ...]] = {}

    def learn(self, record: Any) -> None:
        """Remember the shape of ``record``, which passed both checks (and its records')."""
        values = self.row(record.__dict__)
        types = tuple(map(type, values))
        if len(self.known) >= _SHAPES_MAX:
            self.known.clear()
        self.known[types] = tuple(
            (i, self._look(i, t)) for i, t in enumerate(types) if t not in _SKIP
        )
        for i, (t, value) in enumerate(zip(types, values)):
            if t in _RECORDS:
                _shapes(t).learn(value)
            elif t is list and self.names[i] in self.lists:  # gpus
                for item in value:
                    _shapes(type(item)).learn(item)

    def _look(self, i: int, t: type) -> _Look:
        """The look at a value of exact type ``t`` in field ``i`` (see above)."""
        hint, name = self.hints[i], self.names[i]
        if t in _RECORDS:
            return _shapes(t).look
        if t is int and hint is int:
            return _int_look
        if t is _dt.datetime and hint is _dt.datetime:

            def time(record: Any, value: _dt.datetime) -> bool:
                real = _real_time(value, name)  # a naive time is made aware (UTC)
                if real is not value:
                    record.__dict__[name] = real
                return True

            return time
        if t is _NATIVE_PATH and isinstance(hint, type) and issubclass(hint, PurePath):
            return _true_look  # a path as it loads on this system: nothing to do
        if t is list and name in self.lists:  # gpus: records of the item class, known shapes
            item_class = typing.get_args(hint)[0]
            return lambda record, value: all(
                type(item) is item_class and _shapes(item_class).check(item) for item in value
            )
        if t is list and hint == List[Tuple[str, str]]:
            from . import _kinds

            def rows(record: Any, value: List[Any]) -> bool:
                # packages: the field check made a list of two-item lists (3 us for 70 rows).
                # The rows __setstate__ shares are tuples of two plain strings by construction
                # (_kinds._shared_rows): the same rows as the list it made last are known good
                # at one identity test each.
                last = _kinds._last_rows
                if len(value) == len(last) and all(map(operator.is_, value, last)):
                    return True
                return all(
                    type(row) is tuple and len(row) == 2 and type(row[0]) is str is type(row[1])
                    for row in value
                )

            return rows
        if t is dict and hint == Dict[str, str]:
            return _str_dict_look
        if t is set and hint == Set[str]:
            return _str_set_look
        if t is dict and name in _FREE_JSON:
            from ._free import is_json

            def free(record: Any, value: Dict[str, Any]) -> bool:
                # config, metadata: a value that is JSON already (exact JSON types, str keys,
                # ints and depth within the bounds, finite floats) is what both checks accept
                # and what _json_value would copy unchanged: it is kept as it is. Anything else
                # (a tuple, a time, a path ...) goes the whole way, which converts it.
                return is_json(value)

            return free
        check = self.checks[i]

        def whole(record: Any, value: Any) -> bool:
            # the field check (a time: _real_time checks all encode does), then usable
            if t is not _dt.datetime:
                check(value)
            _usable_value(record, name, value, "")
            return True

        return whole

    def look(self, owner: Any, record: Any) -> bool:
        """The look at a record in a field of ``owner``: :meth:`check`."""
        return self.check(record)

    def check(self, record: Any) -> bool:
        """Check ``record`` and make it usable if its shape is known; whether it was."""
        values = self.row(record.__dict__)
        looks = self.known.get(tuple(map(type, values)))
        if looks is None:
            return False
        for i, look in looks:  # noqa: SIM110 (a loop: no generator made per record)
            if not look(record, values[i]):
                return False
        return True


def _true_look(record: Any, value: Any) -> bool:
    return True


def _int_look(record: Any, value: int) -> bool:
    return bool(_limits.MIN_INT < value < _limits.MAX_INT)


_STRS = frozenset((str,))


def _str_dict_look(record: Any, value: Dict[Any, Any]) -> bool:
    """``Dict[str, str]`` (variables, fallbacks): the field check made a sorted copy."""
    return set(map(type, value)) <= _STRS and set(map(type, value.values())) <= _STRS


def _str_set_look(record: Any, value: Set[Any]) -> bool:
    """``Set[str]`` (dependencies): the field check made a sorted list."""
    return set(map(type, value)) <= _STRS


_SHAPES: Dict[type, _Shapes] = {}


def _shapes(cls: type) -> _Shapes:
    found = _SHAPES.get(cls)
    if found is None:
        found = _SHAPES[cls] = _Shapes(cls)
    return found


def _known(item: Any) -> bool:
    """Whether ``item`` (a record or a StepState) is checked and usable by a known shape."""
    if type(item) is StepState:
        return True
    try:
        return type(item) in _RECORDS and _shapes(type(item)).check(item)
    except Exception:  # the whole way words the error (or finds none)
        return False


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
        tz = value.tzinfo
        if tz is _times.UTC or tz is _times.decoded_utc():
            return value  # an offset of 0: always computed, always in range (1.3 us, 3.11)
        if tz is None or value.utcoffset() is None:
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
    memos = data.count(0x94)
    end = _matched(data, memos)
    reads: Optional[List[int]] = None
    if end < 0:
        reads = []
        end, total = _scan_all(data, reads)
    try:
        value = _Unpickler(_Whole(data)).load()
    except (UnsafePickleError, CorruptPickleError, StepInfoDecodeError):
        raise
    except Exception as e:
        raise CorruptPickleError(f"corrupt pickle: {type(e).__name__}: {e}"[:300]) from e
    try:
        items = []  # those of a shape not known yet: the whole check, types first
        for item, path in _items(value):
            if not _known(item):
                _check_item(item, path)
                items.append((item, path))
        _check_loaded(items)
        for item, _ in items:
            if type(item) in _RECORDS:
                _shapes(type(item)).learn(item)
    except (CorruptPickleError, StepInfoDecodeError):
        raise
    except Exception as e:  # a value no check foresaw; never let it out as something else
        raise CorruptPickleError(f"invalid value: {type(e).__name__}: {e}"[:300]) from e
    if reads is not None:  # it loaded: its shape may be worth a template
        _missed(data, memos, end, total, reads)
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
