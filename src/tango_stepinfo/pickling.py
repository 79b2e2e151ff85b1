"""Loading pickled records without running code: :func:`loads` and :func:`load`.

:func:`pickle.loads` calls whatever a pickle names, so a crafted record file runs code on
whoever opens it. These functions read the same pickles (any protocol, 0 to 5, written by this
library or by ai2-tango 1.3.2) but only ever call what is on an allow list, with checked
arguments, and check the result before handing it out.

**Allowed globals** (anything else raises :class:`~tango_stepinfo.UnsafePickleError` naming it):

- the record classes ``StepInfo``, ``PlatformMetadata``, ``EnvironmentMetadata``,
  ``GitMetadata``, ``TangoMetadata`` and the enum ``StepState``, under
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
and values may nest at most 500 levels deep (deeper nesting can crash the interpreter while
hashing).

**Checks after loading.** The result must be a record, a ``StepState``, or a ``list``, ``tuple``
or ``dict`` of them; every record is checked field by field (a wrong type raises
:class:`~tango_stepinfo.StepInfoDecodeError` naming the field). Shared references may not
expand the result to more than 16 values per byte of pickle, and reference cycles are refused.

Every other failure (truncated or corrupt bytes, wrong arguments to an allowed callable)
raises :class:`CorruptPickleError`, so callers catch :class:`pickle.UnpicklingError` and
:class:`~tango_stepinfo.StepInfoDecodeError` only.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
from typing import IO, Any, Callable, Dict, List, Optional, Tuple

from . import _codec
from .errors import StepInfoDecodeError
from .metadata import (
    EnvironmentMetadata,
    GitMetadata,
    GpuMetadata,
    JobMetadata,
    PlatformMetadata,
    TangoMetadata,
)
from .step_info import StepInfo, StepState


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

MAX_DEPTH = 500
"""How deep values in a pickle may nest."""

EXPANSION = 16
"""How many values per byte of pickle the result may hold, counting shared ones each time."""

_RECORDS: Tuple[type, ...] = (
    StepInfo,
    PlatformMetadata,
    EnvironmentMetadata,
    GitMetadata,
    TangoMetadata,
    GpuMetadata,
    JobMetadata,
)


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
    if len(args) == 3 and args[0] in _REAL and args[1] is object and args[2] is None:
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
    make: Any = type(zone)
    return make((utcoffset, dstoffset, tzname), tzinfos)


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
        _ALLOWED = table
    return _ALLOWED


def _resolve(module: str, name: str) -> Any:
    """The allowed object a pickle's global names, or :class:`UnsafePickleError`."""
    from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING

    key = (module, name)
    if key in NAME_MAPPING:
        key = NAME_MAPPING[key]
    elif module in IMPORT_MAPPING:
        key = (IMPORT_MAPPING[module], name)
    found = _allowed().get(key)
    if found is None:
        raise UnsafePickleError(f"{module}.{name}")
    return found


class _Unpickler(pickle.Unpickler):
    def find_class(self, module_name: str, global_name: str) -> Any:
        return _resolve(module_name, global_name)


# --- reading the opcodes first -----------------------------------------------------------------

_STRINGS = frozenset(("UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"))
_IN_PLACE = frozenset(("APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"))
_MAKES_RECORD = frozenset(("REDUCE", "NEWOBJ", "NEWOBJ_EX", "OBJ"))
_RECORD_CLASS = "record class"
_RECONSTRUCTOR = "reconstructor"
_RECORD = "record"

# A stack entry of the simulation: [depth, kind, text]. The same list object stands for the same
# value wherever it is (stack, memo), so in-place changes are seen everywhere.
_Cell = List[Any]


def _kind_of(found: Any) -> Optional[str]:
    if found in _REAL:
        return _RECORD_CLASS
    if found is _allowed()[("copyreg", "_reconstructor")]:
        return _RECONSTRUCTOR
    return None


def _scan(data: bytes) -> int:  # noqa: PLR0915 (one flat dispatch on the opcode reads best)
    """Check the opcodes of the pickle in ``data`` without running it; return where it ends.

    Simulates the unpickler's stack and memo with, for each value, how deep it nests when it is
    made and whether it is a record (or a record class): the only values ``BUILD`` may give a
    state to. A list or dict filled after it was put into another may end up nesting deeper
    than recorded; that is harmless, since only tuples hash recursively (deep ones crash the
    interpreter) and a tuple never changes after it is made.

    :raises UnsafePickleError: a global that is not allowed, or a copyreg extension code.
    :raises CorruptPickleError: anything the real unpickler would also refuse, and values
        nested more than :data:`MAX_DEPTH` deep, implausible memo indexes, and ``BUILD`` on
        something other than a record.
    """
    import pickletools

    stack: List[_Cell] = []
    marks: List[int] = []
    memo: Dict[int, _Cell] = {}
    count = 0

    def fail(problem: str, pos: int) -> CorruptPickleError:
        return CorruptPickleError(f"corrupt pickle at byte {pos}: {problem}")

    def pop(n: int, pos: int) -> List[_Cell]:
        floor = marks[-1] if marks else 0
        if len(stack) - n < floor:
            raise fail("stack underflow", pos)
        if n == 0:
            return []
        items = stack[-n:]
        del stack[-n:]
        return items

    def pop_mark(pos: int) -> List[_Cell]:
        if not marks:
            raise fail("no MARK to pop to", pos)
        at = marks.pop()
        items = stack[at:]
        del stack[at:]
        return items

    try:
        for op, found_arg, at in pickletools.genops(data):
            arg: Any = found_arg
            pos = at or 0
            count += 1
            name = op.name
            if name in _STRINGS:
                stack.append([0, None, arg])
            elif name == "MARK":
                marks.append(len(stack))
            elif name == "STOP":
                return pos + 1
            elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
                index = len(memo) if name == "MEMOIZE" else int(arg)
                if index > count:
                    raise fail(f"memo index {index} out of range", pos)
                if len(stack) <= (marks[-1] if marks else 0):
                    raise fail("memo store with an empty stack", pos)
                memo[index] = stack[-1]
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                if int(arg) not in memo:
                    raise fail(f"memo index {arg} not stored", pos)
                stack.append(memo[int(arg)])
            elif name == "DUP":
                stack.append(pop(1, pos)[0])
                stack.append(stack[-1])
            elif name == "POP":
                if marks and marks[-1] == len(stack):
                    marks.pop()
                else:
                    pop(1, pos)
            elif name == "POP_MARK":
                pop_mark(pos)
            elif name in ("EXT1", "EXT2", "EXT4"):
                raise UnsafePickleError(
                    f"copyreg extension {arg}", "extension codes are not allowed"
                )
            elif name in ("GLOBAL", "INST"):
                module, _, qualname = str(arg).partition(" ")
                kind = _kind_of(_resolve(module, qualname))
                if name == "INST":
                    items = pop_mark(pos)
                    depth = 1 + max((c[0] for c in items), default=-1)
                    stack.append([depth, _RECORD if kind == _RECORD_CLASS else None, None])
                else:
                    stack.append([0, kind, None])
            elif name == "STACK_GLOBAL":
                module_cell, name_cell = pop(2, pos)
                if type(module_cell[2]) is not str or type(name_cell[2]) is not str:
                    raise fail("STACK_GLOBAL needs two strings", pos)
                stack.append([0, _kind_of(_resolve(module_cell[2], name_cell[2])), None])
            elif name in _IN_PLACE:
                if "mark" in [s.name for s in op.stack_before]:
                    items = pop_mark(pos)
                else:
                    items = pop(len(op.stack_before) - 1, pos)
                target = pop(1, pos)[0]
                if name == "BUILD" and target[1] != _RECORD:
                    raise fail("only a record may be given a state (BUILD)", pos)
                depth = 1 + max((c[0] for c in items), default=-1)
                target[0] = max(target[0], depth)
                stack.append(target)
            else:
                before = [s.name for s in op.stack_before]
                if "mark" in before:
                    items = pop_mark(pos)
                    items = pop(before.index("mark"), pos) + items
                else:
                    items = pop(len(before), pos)
                if not op.stack_after:
                    continue
                kind = None
                if (
                    name in _MAKES_RECORD
                    and items
                    and items[0][1] in (_RECORD_CLASS, _RECONSTRUCTOR)
                ):
                    kind = _RECORD
                depth = 1 + max((c[0] for c in items), default=-1)
                stack.append([depth, kind, None])
            if stack and stack[-1][0] > MAX_DEPTH:
                raise fail(f"values nest more than {MAX_DEPTH} levels deep", pos)
    except (UnsafePickleError, CorruptPickleError):
        raise
    except Exception as e:  # what pickletools says about bytes it cannot read
        raise CorruptPickleError(f"corrupt pickle: {e}") from e
    raise CorruptPickleError("corrupt pickle: no STOP opcode")


# --- checking the result -----------------------------------------------------------------------


def _children(value: Any) -> Optional[List[Any]]:
    kind = type(value)
    if kind is dict:
        return [*value.keys(), *value.values()]
    if kind in (list, tuple, set, frozenset):
        return list(value)
    if kind in _RECORDS:
        return list(vars(value).values())
    return None


def _check_expansion(root: Any, limit: int) -> None:
    """Refuse reference cycles, and shared references that expand to more than ``limit`` values.

    Later checks walk the result as a tree, so ``a = [b, b]; b = [c, c]; ...`` in a small
    pickle would otherwise take forever.
    """
    sizes: Dict[int, int] = {}
    active = set()
    todo: List[Tuple[Any, bool]] = [(root, False)]
    while todo:
        value, finished = todo.pop()
        children = _children(value)
        if children is None:
            continue
        key = id(value)
        if finished:
            total = 1 + sum(sizes.get(id(child), 1) for child in children)
            if total > limit:
                raise CorruptPickleError(
                    f"the pickle expands to more than {limit} values through shared references"
                )
            sizes[key] = total
            active.discard(key)
        elif key not in sizes:
            if key in active:
                raise CorruptPickleError("the pickle holds a reference cycle")
            active.add(key)
            todo.append((value, True))
            todo.extend((child, False) for child in children)


def _check_item(value: Any, path: str) -> None:
    if type(value) is StepState:
        return
    if type(value) not in _RECORDS:
        raise StepInfoDecodeError(
            path, f"expected a record or a StepState, got {_codec._show(value)}"
        )
    try:
        _codec.check(value, unpickled=True)
    except StepInfoDecodeError as e:
        if not path:
            raise
        inner = e.path if not e.path or e.path.startswith("[") else "." + e.path
        raise StepInfoDecodeError(path + inner, e.problem) from None


def _check_result(value: Any) -> None:
    if type(value) in (list, tuple):
        for i, item in enumerate(value):
            _check_item(item, f"[{i}]")
    elif type(value) is dict:
        for key, item in value.items():
            _check_item(item, f"[{key!r}]")
    elif type(value) is StepState or type(value) in _RECORDS:
        _check_item(value, "")
    else:
        raise StepInfoDecodeError(
            "",
            "expected a record, a StepState, or a list, tuple or dict of them, "
            f"got {_codec._show(value)}",
        )


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
        _check_expansion(value, EXPANSION * len(data) + 1024)
        _check_result(value)
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
