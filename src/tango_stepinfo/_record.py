"""The base of the record classes: JSON methods, ``==`` and ``repr``, the pickled state and the
safe loader's check of a loaded record, and the registry of record classes.

Every direct subclass of :class:`Record` defined in this package is registered in
:data:`RECORDS` when its class statement runs: that is the one place a record class is
registered. The safe loader
(:mod:`tango_stepinfo.pickling`) allows exactly these classes, under their own module and under
Tango's ``tango.step_info``, and checks each loaded one with :func:`check_fields`.

The pickled state and the post-load check follow from the fields' kinds (:mod:`._kinds`): each
kind says how its values go into and out of a pickle's state and how a loaded value is checked.
"""

from __future__ import annotations

import dataclasses
import operator
import sys
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Dict, List, Optional, Tuple, TypeVar

from .errors import StepInfoDecodeError

if TYPE_CHECKING:
    from ._kinds import Convert

# The codec (kinds and plans) and the JSON default are imported on first use, not with the
# package: importing them costs about as much as the rest of the package. The error helpers
# (_errors) are imported where a record is checked or refused (by then the codec has them).
_plans: Any = None
_json_default: Any = None


def _codec() -> Any:
    global _plans, _json_default
    if _plans is None:
        from . import _json_default as json_default
        from . import _plans as plans

        _json_default = json_default
        _plans = plans
    return _plans


__all__ = ["FACTORY", "RECORDS", "Record", "check", "check_fields", "record_class"]

_MISSING = dataclasses.MISSING

_ESCAPES: Optional[Dict[int, str]] = None
"""C0 and C1 control characters, DEL and the bidirectional marks, embeddings, overrides and
isolates (U+061C, U+200E, U+200F, U+202A to U+202E, U+2066 to U+2069: text shown in another
order than it is stored, as in "Trojan Source"), as ``str.translate`` escapes them in a repr.
Made by the first repr (:func:`_escapes`): building it cost 0.04 ms of the import (3.11)."""


def _escapes() -> Dict[int, str]:
    global _ESCAPES
    if _ESCAPES is None:
        bidi = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
        table = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}
        table.update({c: f"\\u{c:04x}" for c in bidi})
        _ESCAPES = table  # whole, at once: another thread never sees it half made
    return _ESCAPES


class _Factory:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<factory>"


FACTORY: Any = _Factory()
"""The default, in a record class's ``__init__``, of a parameter whose field has a default
factory: the factory runs when the argument is left out. Its repr is ``<factory>``, as in the
signature ``@dataclass`` would generate.

The record classes are declared ``@dataclass(init=False)`` (:data:`record_class`, which does
what that does) with a hand-written ``__init__``:
``@dataclass`` would generate each one as source text and compile it at import, about 2 ms for
the seven classes (3.11), a third of ``import tango_stepinfo``. Each ``__init__`` takes the same
parameters in field order, with the same defaults, and assigns the fields in that order, the
factories running as the generated one runs them (``tests/test_record.py`` checks each against
the one ``@dataclass`` generates)."""


# What @dataclass(init=False, eq=False, repr=False) adds to a class beside its fields (3.9 to
# 3.13; from 3.14 the real decorator runs, see record_class): its parameters, six of them, ten
# from 3.12 (match_args=True, kw_only, slots and weakref_slot False); __match_args__ from 3.10;
# __replace__ from 3.13. Made here rather than read off a class @dataclass decorates at import,
# which cost 0.04 ms of ``import tango_stepinfo`` on 3.11 and 0.17 ms on 3.13 (fresh processes);
# tests/test_record.py checks every record class against the one @dataclass makes.
_ADDED: Dict[str, Any] = {}
if sys.version_info < (3, 14):
    _PARAMS = (False,) * 6 + ((True, False, False, False) if sys.version_info >= (3, 12) else ())
    _ADDED["__dataclass_params__"] = dataclasses._DataclassParams(*_PARAMS)  # type: ignore[attr-defined]
    if sys.version_info >= (3, 13):
        _ADDED["__replace__"] = dataclasses._replace  # type: ignore[attr-defined]
_MATCH_ARGS = sys.version_info >= (3, 10)


def _record_class(cls: type) -> type:
    """What ``@dataclass(init=False, eq=False, repr=False)`` does to a record class, faster.

    With those arguments ``@dataclass`` generates no method: it makes each field's
    :class:`dataclasses.Field`, puts plain defaults on the class, and adds the attributes that
    :func:`dataclasses.fields`, :func:`dataclasses.replace` and pattern matching read. Its
    general code (it checks every string annotation for ``ClassVar``, ``InitVar`` and
    ``KW_ONLY`` with a regex, among others) cost 0.93 ms of ``import tango_stepinfo`` for the
    seven record classes (their class bodies included); with this loop they cost 0.41 ms (3.11,
    medians of 21 fresh processes timing each top-level statement, busy 2-core machine). What
    ``@dataclass`` adds beside the fields is :data:`_ADDED` (and ``__match_args__`` from 3.10).
    The record classes have no ``ClassVar``, ``InitVar`` or ``KW_ONLY`` field and no dataclass
    base;
    ``tests/test_record.py`` checks every class against the one ``@dataclass`` makes from the
    same class body, on every Python CI runs. Type checkers see ``@dataclass`` itself
    (:data:`record_class`).
    """
    fields: Dict[str, dataclasses.Field[Any]] = {}
    # The class's own annotations, as @dataclass reads them up to 3.13.
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():  # noqa: RUF063
        value = cls.__dict__.get(name, _MISSING)
        if isinstance(value, dataclasses.Field):
            f = value
            if f.default is _MISSING:
                delattr(cls, name)  # a default factory, or no default
            else:
                setattr(cls, name, f.default)
        else:
            f = dataclasses.field(default=value)
        if f.default is not _MISSING and f.default.__class__.__hash__ is None:  # as 3.11 checks
            raise ValueError(f"mutable default {type(f.default)} for field {name} is not allowed")
        f.name, f.type = name, annotation
        f._field_type = dataclasses._FIELD  # type: ignore[attr-defined]
        if getattr(f, "kw_only", None) is _MISSING:  # 3.10 and later
            f.kw_only = False
        fields[name] = f
    for key, value in cls.__dict__.items():
        if isinstance(value, dataclasses.Field):
            raise TypeError(f"{key!r} is a field but has no type annotation")
    for key, value in _ADDED.items():
        setattr(cls, key, value)
    cls.__dataclass_fields__ = fields  # type: ignore[attr-defined]
    if _MATCH_ARGS:
        setattr(cls, "__match_args__", tuple(fields))  # noqa: B010 (mypy refuses the assignment)
    return cls


if TYPE_CHECKING or sys.version_info >= (3, 14):
    # Type checkers see @dataclass. From 3.14 (lazy annotations, PEP 649) the real one runs.
    record_class = dataclasses.dataclass(init=False, eq=False, repr=False)
else:
    record_class = _record_class

RECORDS: Dict[type, None] = {}
"""The record classes of the format (an ordered set): the direct subclasses of :class:`Record`
defined in this package, in the order they were defined."""


class _State:
    """How one record class goes into and out of a pickle's state, and how a loaded one is
    checked; read from its fields once."""

    __slots__ = ("checks", "fill", "none", "restore", "store")

    def __init__(self, cls: type) -> None:
        from ._kinds import checker

        plans = _plans or _codec()
        fields = plans.fields(cls)
        # (name, fill for a field missing from a pickle's state: None when there is no plain
        # default, since the default might probe)
        self.fill: List[Tuple[str, Callable[[], Any]]] = [
            (f.name, f.default or plans.none) for f in fields
        ]
        self.store: List[Tuple[str, Convert]] = []
        self.restore: List[Tuple[str, Convert]] = []
        self.none = plans.none
        # (name, check, whether None is accepted: a pickle may predate the field, the type whose
        # values need no call: str, int, float or bool, else _Never; or the field's record
        # class, whose values are checked here, field by field, and whether it is one)
        self.checks: List[Tuple[str, Convert, bool, type, bool]] = []
        for f in fields:
            out = f.kind.to_state(f.detail)
            back = f.kind.from_state(f.detail)
            if out is not None:
                self.store.append((f.name, out))
            if back is not None:
                self.restore.append((f.name, back))
            plain = f.detail if f.kind.name == "optional" else f.tp
            nested = plain in RECORDS
            simple = plain if plain in (str, int, float, bool) or nested else _Never
            self.checks.append((f.name, checker(f.tp), f.default is None, simple, nested))


class _Never:
    """A type no field value has (for :attr:`_State.checks`)."""


_STATES: Dict[type, _State] = {}


def _state(cls: type) -> _State:
    found = _STATES.get(cls)
    if found is None:
        found = _STATES[cls] = _State(cls)
    return found


def check_fields(record: Any) -> None:
    """Check that every field of a loaded ``record`` holds a value of its type, at every depth.

    ``None`` is accepted where :meth:`Record.__setstate__` fills it in for a field missing from
    an old pickle (a required field, or one whose default would probe).

    :raises Bad: naming the first field at fault.
    """
    from ._errors import Bad

    values = record.__dict__
    for name, check_value, none_ok, simple, nested in _state(type(record)).checks:
        value = values.get(name, _MISSING)
        if type(value) is simple:  # a string where one belongs ...: no call (37 of 53 fields)
            if nested:  # a record where one belongs: its fields, as check_value would
                try:
                    check_fields(value)
                except Bad as e:
                    raise e.inside(name) from None
            continue
        try:
            if value is _MISSING:
                raise Bad("the attribute is missing")
            if value is None and none_ok:
                continue
            check_value(value)
        except Bad as e:
            raise e.inside(name) from None


def check(record: Any) -> None:
    """The safe loader's check of a loaded record (see :func:`check_fields`).

    :raises StepInfoDecodeError: naming the first field at fault.
    """
    from ._errors import Bad, show

    try:
        if type(record) not in RECORDS:
            raise Bad(f"expected a record, got {show(record)}")
        check_fields(record)
    except Bad as e:
        raise StepInfoDecodeError(e.path(), e.problem) from None
    except RecursionError:
        raise StepInfoDecodeError("", "the value is nested too deeply") from None


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

    The record classes are declared ``@dataclass(init=False, eq=False, repr=False)``
    (:data:`record_class`; for ``__init__``, see :data:`FACTORY`) and get ``==`` and ``repr``
    from here: one generic
    implementation instead of two generated and compiled per class, which keeps
    ``import tango_stepinfo`` about 1 ms cheaper. They behave as the
    generated ones: ``==`` compares the fields in order between records of the same class (else
    ``NotImplemented``), records are unhashable (they are mutable), and ``repr`` is
    ``Name(field=value, ...)``.
    """

    __dataclass_fields__: ClassVar[Dict[str, dataclasses.Field[Any]]]
    __hash__: ClassVar[None] = None  # type: ignore[assignment]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Only the package's own classes (not tests', not the safe loader's stand-ins, which
        # subclass a record class).
        if Record in cls.__bases__ and cls.__module__.startswith("tango_stepinfo."):
            RECORDS[cls] = None

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
        # Strings escape their control characters in repr, but other values need not: a pytz
        # zone's repr holds its name raw, and so may any object in ``config``. Escaped here, once
        # for the whole text, so that no repr of a record can drive a terminal.
        return f"{self.__class__.__qualname__}({fields})".translate(_ESCAPES or _escapes())

    def to_json_dict(self, *, tango_compat: Optional[bool] = None) -> Dict[str, Any]:
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
        plans = _plans or _codec()
        if tango_compat is None:
            tango_compat = _json_default.tango_compat(None)
        return plans.encode(self, tango_compat=tango_compat)  # type: ignore[no-any-return]

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
        return (_plans or _codec()).decode(cls, json_dict)  # type: ignore[no-any-return]

    def __copy__(self: _T) -> _T:
        """A shallow copy: the same field values, as ``copy.copy`` makes of a plain dataclass.

        Without it, :mod:`copy` would go through :meth:`__getstate__`, which writes ``config``
        and ``metadata`` as JSON values (a tuple as a list, a ``Path`` as a string): the copy
        would not equal the record.
        """
        new = self.__class__.__new__(self.__class__)
        new.__dict__.update(self.__dict__)
        return new

    def __deepcopy__(self: _T, memo: Dict[int, Any]) -> _T:
        """A deep copy of the field values as they are (see :meth:`__copy__`)."""
        import copy

        new = self.__class__.__new__(self.__class__)
        memo[id(self)] = new
        new.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return new

    def __getstate__(self) -> Dict[str, Any]:
        """The pickled state: fields by name, ``None`` fields left out, sets as sorted lists,
        lists of pairs (``packages``) flattened into one tuple ``(name, version, name, ...)``,
        paths as strings, ``config`` and ``metadata`` as JSON values (as :meth:`to_json_dict`
        writes them, keys in their order), and aware times whose zone is neither a fixed offset
        nor a pytz zone in UTC.

        Leaving out what a reader fills back in by itself and flattening pairs keep pickles small
        (smaller than Tango's for a record with a real package list); sorting sets keeps them
        byte-for-byte deterministic; a time in another zone (``zoneinfo``, ``dateutil``) is stored
        as the same instant in UTC, which compares equal and loads with nothing but ``datetime``
        and ``pytz`` (a ``zoneinfo`` zone pickles as a call to ``getattr``, which the safe loader
        refuses). Paths as strings load on every Python (3.13 names a ``Path``
        ``pathlib._local.PosixPath``, which 3.12 and earlier cannot import), and JSON values
        need no class the safe loader does not know (a numpy ``float64`` becomes a float).
        :meth:`__setstate__` reads this and every earlier form.
        """
        rules = _STATES.get(type(self)) or _state(type(self))
        values = self.__dict__
        state = {}
        for name, fill in rules.fill:
            value = values.get(name)
            if value is None and fill is rules.none:
                continue
            state[name] = value
        for name, store in rules.store:
            value = state.get(name)
            if value is not None:
                state[name] = store(value)
        if not state and rules.fill:
            # Protocols 0 and 1 drop an empty state, and then __setstate__ is never called.
            state[rules.fill[0][0]] = None
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
            from ._errors import show

            raise StepInfoDecodeError(
                type(self).__name__, f"expected a dict as pickled state, got {show(state)}"
            )
        rules = _STATES.get(type(self)) or _state(type(self))
        values = self.__dict__
        for name, fill in rules.fill:
            values[name] = state[name] if name in state else fill()
        for name, restore in rules.restore:
            value = values[name]
            if value is not None:
                values[name] = restore(value)


if TYPE_CHECKING:  # for the checker only: a TypeVar costs 0.02 ms at import (3.11)
    _T = TypeVar("_T", bound=Record)
