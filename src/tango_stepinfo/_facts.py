"""The facts of a record as the command line prints them, read from its fields and metadata.

``show``, ``diff`` and the capture summary list facts, never fields by hand: a field added to a
record class appears in all three. Field metadata read here (documented on the record-format
page of the docs, "Adding a field"):

- ``"label"``: how the field is named (default: its name, ``_`` as spaces); a field of a
  nested record is named after the record field too (``git commit``), unless that label is
  ``""`` (``platform``, ``environment``);
- ``"diff_label"``: its name inside its ``diff`` group, when not its label (``Python`` is
  ``version`` under *Python*);
- ``"group"``: the section of ``diff`` it is listed under (default: its record field's);
- ``"none"``: what ``None`` prints as (default ``(none)``; ``show`` prints ``-``);
- ``"show": False``: left out of ``show`` (still in the summary and ``diff``);
- ``"cli": False``: left out of all three (``tango``: the writer, not the machine).

A nested record is walked field by field, a list of records item by item (``gpus[0] name``), a
``Dict[str, X]`` key by key; a list of ``(name, version)`` pairs is one fact that ``diff``
compares row by row.
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any, Dict, List, Optional

from . import _kinds, _plans

__all__ = ["Fact", "facts", "holds_record"]


class Fact:
    """One fact: where it is, how it is named and grouped, and its value."""

    __slots__ = (
        "absent",
        "group",
        "key",
        "label",
        "name",
        "none",
        "pairs",
        "record",
        "show",
        "since",
        "value",
        "within",
    )

    def __init__(
        self,
        *,
        label: str,
        name: str,
        key: str,
        group: str,
        value: Any,
        none: str,
        show: bool,
        since: Optional[str],
        absent: Optional[str] = None,
        record: bool = False,
        pairs: bool = False,
        within: Optional[str] = None,
    ) -> None:
        # Named parameters, not a loop of setattr over ``**kw``: a record with 80,000
        # variables makes as many facts a side, and diff took 2.7 s of CPU for two of them.
        self.label = label
        self.name = name
        self.key = key
        self.group = group
        self.value = value
        self.none = none
        self.show = show
        self.since = since
        self.absent = absent  # the none text of a missing record above it
        self.record = record  # a record field itself (only listed when it is None)
        self.pairs = pairs  # a list of (name, version) pairs
        self.within = within  # the key of the dict field holding this entry, else None

    def text(self, none: Optional[str] = None) -> str:
        """The value as text (``none`` for ``None``, else the field's or the missing record's)."""
        value = self.value
        if value is None:
            return none or self.absent or self.none
        if type(value) is str:  # most facts: no isinstance chain
            return value
        if isinstance(value, bool):
            return "yes" if value else "no"
        if self.pairs:
            return str(len(value))
        if isinstance(value, (list, tuple, set, frozenset, dict)) and not value:
            return "(none)"  # an empty list or dict: known, and empty
        if isinstance(value, (set, frozenset)):
            return ", ".join(sorted(map(str, value)))
        if isinstance(value, (list, tuple)):
            return ", ".join(map(str, value))
        if isinstance(value, dict):
            return json.dumps(value, sort_keys=True, default=str)
        if isinstance(value, _dt.datetime):
            return value.isoformat(sep=" ")
        return str(value)

    def json(self) -> Any:
        """The value as ``diff --json`` prints it."""
        value = self.value
        if value is None or isinstance(value, (str, int, float, bool)):
            return value
        return self.text()


def _unwrap(tp: Any) -> Any:
    kind, detail = _kinds.kind_of(tp)
    return _kinds.kind_of(detail) if kind.name == "optional" else (kind, detail)


def holds_record(tp: Any) -> bool:
    """Whether a field of type ``tp`` holds a record (or ``None``)."""
    return bool(_unwrap(tp)[0].name == "record")


def facts(cls: type, values: Dict[str, Any], *, only: Optional[List[str]] = None) -> List[Fact]:
    """The facts of a record of class ``cls`` whose field values are ``values`` (its
    ``__dict__``), in field order; ``only``: just these top-level fields."""
    out: List[Fact] = []
    _walk(cls, values, out, only=only)
    return out


def _walk(
    cls: type,
    values: Optional[Dict[str, Any]],
    out: List[Fact],
    *,
    label: str = "",
    name: str = "",
    key: str = "",
    group: str = "",
    absent: Optional[str] = None,
    show: bool = True,
    only: Optional[List[str]] = None,
) -> None:
    for f in _plans.fields(cls):
        meta = f.field.metadata
        if (only is not None and f.name not in only) or meta.get("cli", True) is False:
            continue
        own = meta.get("label", f.name.replace("_", " "))
        full = f"{label} {own}".strip()
        # Names inside a diff group, like keys, are relative to the field that names the group.
        short = meta.get("diff_label", own) if "group" in meta else f"{name} {own}".strip()
        # Keys in diff's JSON are relative to the field that names the group.
        f_key = f.name if "group" in meta else (f"{key}.{f.name}" if key else f.name)
        common = {
            "group": meta.get("group", group),
            "show": show and meta.get("show", True),
            "since": f.since,
            "none": meta.get("none", "(none)"),
        }
        value = None if values is None else values.get(f.name)
        kind, detail = _unwrap(f.tp)
        if kind.name == "record":
            out.append(
                Fact(
                    label=full or f.name,
                    name=short,
                    key=f_key,
                    value=value,
                    absent=absent,
                    record=True,
                    **common,
                )
            )
            inner = value.__dict__ if value is not None else None
            gone = absent if value is not None else (absent or common["none"])
            sub_key = "" if "group" in meta else f_key
            _walk(
                detail,
                inner,
                out,
                label=full,
                name="" if "group" in meta else short,
                key=sub_key,
                group=common["group"],
                absent=gone,
                show=common["show"],
            )
        elif kind.name == "list" and _unwrap(detail[1])[0].name == "record" and value:
            for i, item in enumerate(value):
                item_key = f"{f_key}[{i}]"
                _walk(
                    _unwrap(detail[1])[1],
                    getattr(item, "__dict__", None),
                    out,
                    label=f"{full}[{i}]",
                    name=f"{short}[{i}]",
                    key=item_key,
                    group=common["group"],
                    absent=absent,
                    show=common["show"],
                )
        elif kind.name == "dict" and isinstance(value, dict) and value:
            group_, show_, since_, none_ = common["group"], common["show"], f.since, common["none"]
            out += [
                Fact(
                    label=f"{full} {k}",
                    name=f"{short} {k}",
                    key=f"{f_key}.{k}",
                    value=value[k],
                    absent=absent,
                    group=group_,
                    show=show_,
                    since=since_,
                    none=none_,
                    within=f_key,
                )
                for k in sorted(value)
            ]
        else:
            out.append(
                Fact(
                    label=full,
                    name=short,
                    key=f_key,
                    value=value,
                    absent=absent,
                    pairs=kind.name == "string pairs",
                    **common,
                )
            )
