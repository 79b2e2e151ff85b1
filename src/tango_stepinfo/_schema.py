"""A JSON Schema (draft 2020-12) of the record format, derived from the dataclass fields.

Nothing here names a field of a particular class or a kind of type: the schema is built from
the fields as the codec reads them (:func:`tango_stepinfo._plans.fields`), and each field's kind
(:mod:`tango_stepinfo._kinds`) gives the schema of its JSON form. Descriptions come from the
``:ivar name:`` lines of the class docstrings.

A field is required when it has no default, or when its default factory probes the machine
(field metadata ``"probe": True``): decoding never probes, so such a field must be in the JSON.
Unknown keys are allowed, as :meth:`~tango_stepinfo._record.Record.from_json_dict` ignores them.
One schema covers both our JSON and Tango's: times may have an offset and a fraction or not,
and the fields Tango does not write are optional.
"""

from __future__ import annotations

import inspect
import re
from typing import Any, Dict, List, Optional

from ._kinds import kind_of
from ._plans import fields

__all__ = ["DIALECT", "schema"]

DIALECT = "https://json-schema.org/draft/2020-12/schema"
"""The ``$schema`` URI of the dialect the schemas are written in."""

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
        """The schema of the JSON form of the type hint ``tp``, as its kind gives it."""
        kind, detail = kind_of(tp)
        return kind.schema(detail, self)

    def of_record(self, cls: type) -> Dict[str, Any]:
        """A ``$ref`` to ``cls``'s entry in ``$defs``, building the entry on first use."""
        name = cls.__name__
        if name not in self.defs:
            self.defs[name] = {}  # placeholder: a record may refer to itself
            self.defs[name] = self.body(cls)
        return {"$ref": f"#/$defs/{name}"}

    def body(self, cls: type) -> Dict[str, Any]:
        """The object schema of the record class ``cls``."""
        docs = _ivars(cls)
        properties: Dict[str, Any] = {}
        required: List[str] = []
        for f in fields(cls):
            prop = self.of_type(f.tp)
            if f.name in docs:
                prop = {**prop, "description": docs[f.name]}
            default = f.field.default
            if default is None or isinstance(default, (str, int, float, bool)):
                prop = {**prop, "default": default}
            properties[f.name] = prop
            if f.default is None:  # required in JSON, exactly as the decoder says
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
