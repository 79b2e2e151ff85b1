"""A JSON Schema (draft 2020-12) of the record format, derived from the dataclass fields.

Nothing here names a field of a particular class: the schema is built from
``dataclasses.fields``, ``typing.get_type_hints`` and the field metadata, with the same type
conventions as :mod:`tango_stepinfo._codec` (``str``, ``int``, ``bool``, ``float``,
``datetime``, ``Path``, ``Any``, ``Optional``, ``List``, ``Set``, ``Tuple``, ``Dict[str, X]``
and nested record dataclasses). Descriptions come from the ``:ivar name:`` lines of the class
docstrings.

A field is required when it has no default, or when its default factory probes the machine
(field metadata ``"probe": True``): decoding never probes, so such a field must be in the JSON.
Unknown keys are allowed, as :meth:`~tango_stepinfo._codec.Record.from_json_dict` ignores them.
One schema covers both our JSON and Tango's: times may have an offset and a fraction or not,
and the fields Tango does not write are optional.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from typing import Any, Dict, List, Optional

from ._codec import TIME_PATTERN, classify, field_default

__all__ = ["DIALECT", "schema"]

DIALECT = "https://json-schema.org/draft/2020-12/schema"
"""The ``$schema`` URI of the dialect the schemas are written in."""

# The codec's own time pattern, anchored (ASCII digits only: ECMA 262 and Python agree on it).
_TIME_PATTERN = f"^(?:{TIME_PATTERN})$"

_SCALARS: Dict[Any, str] = {str: "string", int: "integer", bool: "boolean", float: "number"}

_IVAR = re.compile(r"^:ivar\s+(\w+):\s*(.*)$")


def _ivars(cls: type) -> Dict[str, str]:
    """The ``:ivar name: text`` descriptions of ``cls``'s docstring, continuation lines joined."""
    found: Dict[str, str] = {}
    current: Optional[str] = None
    for line in (inspect.getdoc(cls) or "").splitlines():
        m = _IVAR.match(line)
        if m:
            current = m.group(1)
            found[current] = m.group(2).strip()
        elif current is not None and line.startswith((" ", "\t")) and line.strip():
            found[current] += " " + line.strip()
        else:
            current = None
    return found


def _summary(cls: type) -> str:
    """The first paragraph of ``cls``'s docstring, on one line."""
    doc = inspect.getdoc(cls) or ""
    return " ".join(doc.split("\n\n", 1)[0].split())


class _Builder:
    """Builds the schema of one record type, collecting nested records under ``$defs``."""

    def __init__(self) -> None:
        self.defs: Dict[str, Dict[str, Any]] = {}

    def of_type(self, tp: Any) -> Dict[str, Any]:
        """The schema of the JSON form of the type hint ``tp`` (read as the codec reads it)."""
        kind, detail = classify(tp)
        if kind == "any":
            return {}
        if kind == "scalar":
            return {"type": _SCALARS[detail]}
        if kind == "time":
            return {
                "type": "string",
                "pattern": _TIME_PATTERN,
                "description": "ISO 8601 time; without an offset it means UTC",
            }
        if kind == "path":
            return {"type": "string"}
        if kind == "record":
            return self.of_record(detail)
        if kind == "optional":
            inner = self.of_type(detail)
            if isinstance(inner.get("type"), str):
                # Keywords for one JSON type ignore the others, so merging the types is exact.
                return {**inner, "type": [inner["type"], "null"]}
            return {"anyOf": [inner, {"type": "null"}]}
        if kind == "sequence":
            # Sets too: they are written without repeats, and readers accept repeats.
            return {"type": "array", "items": self.of_type(detail[1])}
        if kind == "tuple":
            return {
                "type": "array",
                "prefixItems": [self.of_type(a) for a in detail],
                "items": False,
                "minItems": len(detail),
                "maxItems": len(detail),
            }
        if detail is Any:  # kind == "dict"
            return {"type": "object"}
        return {"type": "object", "additionalProperties": self.of_type(detail)}

    def of_record(self, cls: type) -> Dict[str, Any]:
        """A ``$ref`` to ``cls``'s entry in ``$defs``, building the entry on first use."""
        name = cls.__name__
        if name not in self.defs:
            self.defs[name] = {}  # placeholder: a record may refer to itself
            self.defs[name] = self.body(cls)
        return {"$ref": f"#/$defs/{name}"}

    def body(self, cls: type) -> Dict[str, Any]:
        """The object schema of the record class ``cls``."""
        hints = typing.get_type_hints(cls)
        docs = _ivars(cls)
        properties: Dict[str, Any] = {}
        required: List[str] = []
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            prop = self.of_type(hints[f.name])
            if f.name in docs:
                prop = {**prop, "description": docs[f.name]}
            if f.default is None or isinstance(f.default, (str, int, float, bool)):
                prop = {**prop, "default": f.default}
            properties[f.name] = prop
            if field_default(f) is None:  # required in JSON, exactly as the decoder says
                required.append(f.name)
        out: Dict[str, Any] = {"title": cls.__name__}
        summary = _summary(cls)
        if summary:
            out["description"] = summary
        out["type"] = "object"
        out["properties"] = properties
        out["required"] = required
        return out


def schema(cls: Optional[type] = None) -> Dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) of the JSON form of a record class.

    The schema accepts what :meth:`~tango_stepinfo.StepInfo.to_json_dict` writes, in either
    format, and what ai2-tango 1.3.2 writes. Nested records are referenced from ``$defs``.

    :param cls: the record dataclass; :class:`~tango_stepinfo.StepInfo` by default.
    :raises TypeError: a field has a type hint the codec does not know either.
    """
    if cls is None:
        from .step_info import StepInfo

        cls = StepInfo
    builder = _Builder()
    out: Dict[str, Any] = {"$schema": DIALECT, **builder.body(cls)}
    if builder.defs:
        out["$defs"] = {name: builder.defs[name] for name in sorted(builder.defs)}
    return out
