"""Record plans: how each record class is encoded to JSON and decoded from it.

Nothing here names a field of a particular class: each record dataclass is read once, on first
use, from ``dataclasses.fields``, ``typing.get_type_hints`` and the field metadata into a list
of :class:`Field` (kind, converters, default), and compiled into one encoder and one decoder,
generated as straight-line code the way ``dataclasses`` generates ``__init__`` (its source is
registered with :mod:`linecache`, so tracebacks show it). The generated code is the only path:
it keeps the name of the field it is at, and adds it to the path of any error.

Field metadata read here (see the record-format page of the docs):

- ``"probe": True``: the default factory probes the machine, so decoding never calls it: the
  field is required in JSON, and an old pickle that lacks it gets ``None``.
- ``"since": "<version>"``: the field was added by this library in that version. A JSON dict or
  a pickle state that lacks it gives ``None`` (never probed, never an error), and the
  Tango-compatible JSON leaves it out. Such a field must have a default or a default factory.
- ``"nullable": True``: the field may hold ``None`` (``null`` in JSON) although its type says
  otherwise, as in Tango's records (``platform`` and ``environment``).
"""

from __future__ import annotations

import dataclasses
import keyword
import linecache
import sys
import typing
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

from ._errors import Bad, show
from ._kinds import Convert, Kind, Mode, kind_of, retell
from .errors import StepInfoDecodeError, StepInfoEncodeError

__all__ = ["Field", "Plan", "decode", "encode", "field_default", "fields", "none", "plan"]

_T = TypeVar("_T")
_MISSING = dataclasses.MISSING


def none() -> None:
    """The default of a field that is ``None`` when missing."""
    return None


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


def field_default(f: dataclasses.Field[Any]) -> Optional[Callable[[], Any]]:
    """What a field missing from a record's JSON or pickle state takes: ``None`` for a field
    added by this library (metadata ``"since"``), else its plain default (as a function), the
    result of a factory that does not probe, or ``None`` when the field is required (no default,
    or a default that would probe this machine). The JSON Schema's ``required`` follows this.

    :raises TypeError: a field declared ``since`` a version has neither default nor factory.
    """
    if "since" in f.metadata:
        if f.default is _MISSING and f.default_factory is _MISSING:
            raise TypeError(f"field {f.name!r} is declared 'since' a version but has no default")
        return none
    if f.default is None:
        return none
    if f.default is not _MISSING:
        return _constant(f.default)
    if f.default_factory is not _MISSING and not f.metadata.get("probe"):
        return f.default_factory
    return None


class Field:
    """One field of a record class as the codecs see it."""

    __slots__ = ("default", "detail", "field", "kind", "name", "tp")

    def __init__(self, f: dataclasses.Field[Any], tp: Any) -> None:
        self.field = f
        self.name = f.name
        if f.metadata.get("nullable") or "since" in f.metadata:
            tp = Optional[tp]  # None when missing from old records, or null where Tango has it
        self.tp = tp
        self.kind: Kind
        self.kind, self.detail = kind_of(tp)
        # For a key missing from JSON or pickle state: a zero-argument callable, or None when
        # the field is required.
        self.default = field_default(f)

    @property
    def since(self) -> Optional[str]:
        """The version of this library that added the field (``None``: it is Tango's)."""
        return typing.cast(Optional[str], self.field.metadata.get("since"))


_FIELDS: Dict[type, List[Field]] = {}


def fields(cls: type) -> List[Field]:
    """The fields of record class ``cls`` (those ``__init__`` takes), in declaration order."""
    found = _FIELDS.get(cls)
    if found is None:
        hints = typing.get_type_hints(cls)
        found = [Field(f, hints[f.name]) for f in dataclasses.fields(cls) if f.init]
        _FIELDS[cls] = found
    return found


class Plan:
    """The generated encoder and decoder of one record class, in one JSON mode."""

    __slots__ = ("cls", "decode", "encode")

    def __init__(self, cls: type, mode: str) -> None:
        self.cls = cls
        every = fields(cls)
        # Sorted by name, so that output keys are sorted like Tango's.
        written = sorted(
            (f for f in every if mode is not Mode.TANGO or f.since is None), key=lambda f: f.name
        )
        self.encode = _encoder(cls, mode, written)
        self.decode = _decoder(cls, every)


def _compile(cls: type, name: str, lines: List[str], namespace: Dict[str, Any]) -> Convert:
    """Compile generated source, registered with linecache so that tracebacks show it."""
    source = "\n".join(lines) + "\n"
    filename = f"<tango_stepinfo {name} {cls.__module__}.{cls.__qualname__}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), namespace)  # our own generated source
    return typing.cast(Convert, namespace[name])


def _nested(f: Field) -> Optional[type]:
    """The record class of a field holding a record (or ``None``), else ``None``."""
    kind, detail = (f.kind, f.detail)
    if kind.name == "optional":
        kind, detail = kind_of(detail)
    return typing.cast(type, detail) if kind.name == "record" else None


def _bind_later(namespace: Dict[str, Any], name: str, cls: type, mode: str, way: int) -> None:
    """Put in ``namespace[name]`` a function that, on its first call, replaces itself there with
    the plan of ``cls`` (``way`` 0: its encoder, 1: its decoder) and calls it. Generated code
    calls a nested record's plan directly, one Python call less per nested record than through
    its kind's converter; the plan is looked up on first use as the converter does (a record
    type may refer to itself, or to one not fully defined yet)."""

    def first(value: Any) -> Any:
        found = plan(cls, mode)
        convert = namespace[name] = found.decode if way else found.encode
        return convert(value)

    namespace[name] = first


def _shortcut(namespace: Dict[str, Any], f: Field, i: int, mode: str, way: int) -> bool:
    """Whether values of field ``f`` of one exact type go straight to one function, bound as
    ``t{i}`` (the type) and ``f{i}`` (the function) in ``namespace``: a nested record to its plan
    (``way`` 0: encoder, 1: decoder), a dict in a free object (``config``, ``metadata``) to the
    free-value functions (:meth:`Kind.direct`). One Python call less per value than through the
    kind's converter (for the free objects: about 1%, within the noise of an A/B); anything else
    (None, a subclass, a wrong value) goes to the converter, which handles or refuses it."""
    direct = f.kind.direct(f.detail, mode)
    nested = _nested(f)
    if direct is not None:
        namespace[f"t{i}"], namespace[f"f{i}"] = direct[0], direct[1 + way]
    elif nested is not None:
        namespace[f"t{i}"] = dict if way else nested
        _bind_later(namespace, f"f{i}", nested, mode, way)
    else:
        return False
    return True


def _encoder(cls: type, mode: str, written: List[Field]) -> Convert:
    """``encode(record)``: one converter call per field; scalars checked inline."""
    namespace: Dict[str, Any] = {"Bad": Bad}
    lines = ["def encode(record):", "    d = record.__dict__", "    n = ''", "    try:"]
    items = []
    for i, f in enumerate(written):
        check = f.kind.inline(f.detail, f"v{i}")
        lines += [f"        n = {f.name!r}", f"        v{i} = d[n]"]
        if _shortcut(namespace, f, i, mode, 0):
            lines.append(f"        if type(v{i}) is t{i}: v{i} = f{i}(v{i})")
            if f.kind.name == "optional":
                lines += _unwrapped(namespace, f, i, mode=mode, way=0, pad="        ", test="el")
            else:
                namespace[f"c{i}"] = f.kind.converters(f.detail, mode)[0]
                lines.append(f"        else: v{i} = c{i}(v{i})")
        elif check is None and f.kind.name == "optional":
            lines += _unwrapped(namespace, f, i, mode=mode, way=0, pad="        ")
        elif check is None:
            namespace[f"c{i}"] = f.kind.converters(f.detail, mode)[0]
            lines.append(f"        v{i} = c{i}(v{i})")
        else:
            namespace[f"c{i}"] = f.kind.converters(f.detail, mode)[0]
            lines.append(f"        if not {check}: v{i} = c{i}(v{i})")
        items.append(f"{f.name!r}: v{i}")
    lines += [
        f"        return {{{', '.join(items)}}}",
        "    except Bad as e:",
        "        raise e.inside(n)",
        "    except KeyError:",
        "        raise Bad('the attribute is missing', n) from None",
    ]
    return _compile(cls, "encode", lines, namespace)


_INTERNED = 100
"""Decoded string fields up to this long are interned."""


def _is_str(f: Field) -> bool:
    return f.tp is str or f.tp == Optional[str]


def _unwrapped(
    namespace: Dict[str, Any], f: Field, i: int, *, mode: str, way: int, pad: str, test: str = ""
) -> List[str]:
    """An ``Optional`` field converted without the kind's ``None`` wrapper: ``None`` passes,
    anything else goes straight to the inner converter (``way`` 0: encode, 1: decode), and a
    type error about the value itself is retold as the wrapper does (``"a string or null"``).
    Measured (CPU time, min of 5 x 20,000 calls): one Python call less per such field.
    ``test`` is put before the ``if`` (``"el"``: the branch follows another).
    """
    parts = typing.cast(Any, f.kind).unwrapped(f.detail, mode)
    namespace[f"c{i}"] = parts[way]
    namespace[f"x{i}"] = parts[2 + way]
    namespace["retell"] = retell
    return [
        f"{pad}{test}if v{i} is not None:",
        f"{pad}    try:",
        f"{pad}        v{i} = c{i}(v{i})",
        f"{pad}    except Bad as e:",
        f"{pad}        retell(e, x{i}, v{i})",
        f"{pad}        raise",
    ]


def _plain_attributes(cls: type, every: List[Field]) -> bool:
    """Whether setting each field as an attribute stores it in the instance's ``__dict__`` and
    nothing else: no ``__setattr__`` of the class's own, no descriptor under a field's name,
    and names that are identifiers, not keywords (as ``@dataclass`` classes have them)."""
    if cls.__setattr__ is not object.__setattr__:  # type: ignore[comparison-overlap]
        return False
    for f in every:
        if not f.name.isidentifier() or keyword.iskeyword(f.name) or f.name.startswith("__"):
            return False
        # The class attribute itself (getattr would call a descriptor's __get__).
        found = next((k.__dict__[f.name] for k in cls.__mro__ if f.name in k.__dict__), None)
        if hasattr(type(found), "__set__") or hasattr(type(found), "__delete__"):
            return False
    return True


def _decode_step(
    namespace: Dict[str, Any], f: Field, i: int, pad: str, shared: List[str]
) -> List[str]:
    """The generated lines converting ``v{i}``, the JSON value of field ``f`` (indented by
    ``pad``); the globals holding a string field's last value are added to ``shared``."""
    optional = f.kind.name == "optional"
    if _shortcut(namespace, f, i, Mode.NATIVE, 1):
        # The nested record's plan refuses what is not a record's object as its kind's
        # converter does; the free-value decoder, what is not a JSON value.
        convert = [f"{pad}if type(v{i}) is t{i}: v{i} = f{i}(v{i})"]
        if optional:
            return convert + _unwrapped(
                namespace, f, i, mode=Mode.NATIVE, way=1, pad=pad, test="el"
            )
        namespace[f"c{i}"] = f.kind.converters(f.detail, Mode.NATIVE)[1]
        return [*convert, f"{pad}else: v{i} = c{i}(v{i})"]
    if _is_str(f):
        # Equal short strings (host, user, Python version...) of decoded records are shared:
        # the benchmark's decoded record holds 3.2 KB, 4.1 KB without (tracemalloc), for about
        # 1 us (4%) of from_json_dict. The field's last value is kept (a global of the generated
        # code, replaced whole) and an equal string answered with it: a string compare instead
        # of a call hashing a fresh string; measured from_json_dict -3% (CPU, 3.11, interleaved
        # in-process A/B, paired median of 25 rounds, the benchmark's records repeating every
        # value; a value new each time, as unique_id, costs one failed compare more than
        # before). The converter of a string refuses whatever is not one, so only a plain
        # string is shared.
        namespace["intern"] = sys.intern
        namespace[f"s{i}"] = ""
        shared.append(f"s{i}")
        namespace[f"c{i}"] = f.kind.converters(f.detail, Mode.NATIVE)[1]
        return [
            f"{pad}if type(v{i}) is str:",
            f"{pad}    if v{i} == s{i}: v{i} = s{i}",
            f"{pad}    elif len(v{i}) <= {_INTERNED}: v{i} = s{i} = intern(v{i})",
            f"{pad}elif v{i} is not None: v{i} = c{i}(v{i})"
            if optional
            else f"{pad}else: v{i} = c{i}(v{i})",
        ]
    check = f.kind.inline(f.detail, f"v{i}")
    if check is None and optional:
        return _unwrapped(namespace, f, i, mode=Mode.NATIVE, way=1, pad=pad)
    namespace[f"c{i}"] = f.kind.converters(f.detail, Mode.NATIVE)[1]
    step = f"v{i} = c{i}(v{i})" if check is None else f"if not {check}: v{i} = c{i}(v{i})"
    return [pad + step]


def _decoder(cls: type, every: List[Field]) -> Convert:
    """``decode(data)``: one converter call per field, defaults for missing optional keys."""
    namespace: Dict[str, Any] = {"Bad": Bad, "show": show, "cls": cls, "new": object.__new__}
    lines = [
        "def decode(data):",
        "    if not isinstance(data, dict):",
        "        raise Bad(f'expected an object, got {show(data)}')",
        "    n = ''",
        "    try:",
    ]
    items = []
    shared: List[str] = []  # the globals holding each string field's last value
    for i, f in enumerate(every):
        pad = "        " if f.default is None else "            "
        convert = _decode_step(namespace, f, i, pad, shared)
        lines.append(f"        n = {f.name!r}")
        if f.default is None:
            lines += [f"        v{i} = data[n]", *convert]
        else:
            namespace[f"d{i}"] = f.default
            lines += [
                "        if n in data:",
                f"            v{i} = data[n]",
                *convert,
                "        else:",
                f"            v{i} = d{i}()",
            ]
        items.append(f"{f.name!r}: v{i}")
    if shared:
        lines.insert(1, f"    global {', '.join(shared)}")
    lines.append("        record = new(cls)")
    if _plain_attributes(cls, every):
        # One store per field, in declaration order as __init__ makes them: no dict built and
        # copied, and the instance keeps its values inline (3.11+: no __dict__ object until one
        # is asked for): measured 4.4 -> 3.3 KB a decoded record, from_json_dict -10% CPU.
        lines += [f"        record.{f.name} = v{i}" for i, f in enumerate(every)]
    else:
        lines.append(f"        record.__dict__.update({{{', '.join(items)}}})")
    lines += [
        "        return record",
        "    except Bad as e:",
        "        raise e.inside(n)",
        "    except KeyError:",
        "        raise Bad('required field is missing', n) from None",
    ]
    return _compile(cls, "decode", lines, namespace)


_PLANS: Dict[Tuple[type, str], Plan] = {}


def plan(cls: type, mode: str = Mode.NATIVE) -> Plan:
    """The plan of record class ``cls`` in ``mode``, built on first use."""
    found = _PLANS.get((cls, mode))
    if found is None:
        found = _PLANS[(cls, mode)] = Plan(cls, mode)
    return found


_DECODERS: Dict[type, Convert] = {}
"""Each record class's decoder, found with one lookup (no tuple key to build)."""


def _decoder_of(cls: type) -> Convert:
    found = _DECODERS[cls] = plan(cls).decode
    return found


_ENCODERS: Dict[str, Dict[type, Convert]] = {Mode.NATIVE: {}, Mode.TANGO: {}}
"""Each record class's encoder in each mode, found with one lookup (no tuple key to build)."""


def _encoder_of(cls: type, mode: str) -> Convert:
    found = _ENCODERS[mode][cls] = plan(cls, mode).encode
    return found


def encode(record: Any, *, tango_compat: bool = False) -> Dict[str, Any]:
    """Encode a record into a new JSON-safe dict (see :meth:`Record.to_json_dict`)."""
    cls = type(record)
    mode = Mode.TANGO if tango_compat else Mode.NATIVE
    try:
        # No typing.cast: with ``Dict[str, Any]`` evaluated here it cost 0.4 us a call.
        out: Dict[str, Any] = (_ENCODERS[mode].get(cls) or _encoder_of(cls, mode))(record)
        return out
    except Bad as e:
        raise StepInfoEncodeError(e.path(), e.problem) from None
    except RecursionError:
        raise StepInfoEncodeError("", "the value is nested too deeply") from None


def decode(cls: type[_T], data: Any) -> _T:
    """Decode ``data`` into a new ``cls`` (see :meth:`Record.from_json_dict`)."""
    try:
        # No typing.cast: a call of its own (0.1 us).
        record: _T = (_DECODERS.get(cls) or _decoder_of(cls))(data)
        return record
    except Bad as e:
        raise StepInfoDecodeError(e.path(), e.problem) from None
    except RecursionError:
        raise StepInfoDecodeError("", "the value is nested too deeply") from None
