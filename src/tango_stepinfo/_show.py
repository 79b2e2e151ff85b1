"""What ``show`` and the capture summary print: text made from a record's facts.

The step's own rows (name, class, state, times, duration, error: Tango's fields and the
properties derived from them) come first; every other fact follows, read from the fields and
their metadata (:mod:`._facts`), so that a new field appears with no change here. Output never
depends on the terminal, and control characters are escaped so that a record cannot drive it.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, List, Optional, Tuple

from ._facts import Fact, facts, holds_record
from ._plans import fields
from .errors import InvalidStepStateError

__all__ = ["capture_summary", "clean", "human_duration", "show_record", "table"]

Rows = List[Tuple[str, str]]

_FIRST_PACKAGES = 5


def clean(text: str) -> str:
    """``text`` with control characters escaped, so that output cannot drive the terminal."""
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii")
        for c in text
    )


def table(rows: Rows, indent: str = "") -> str:
    """``label: value`` rows with the values aligned; a label ``""`` continues the row above."""
    width = max((len(label) for label, _ in rows), default=0) + 2
    lines = []
    for label, value in rows:
        head = f"{label}:" if label else ""
        lines.append(f"{indent}{head:<{width}}{value}".rstrip())
    return "\n".join(lines) + "\n"


def human_duration(delta: _dt.timedelta) -> str:
    """``delta`` for people: ``3.2s``, ``4m 05s``, ``1h 02m 03s``, ``2d 03h 00m 00s``.

    Under a minute, tenths of a second (truncated, never rounded up); above, whole seconds.
    """
    micros = delta // _dt.timedelta(microseconds=1)
    sign = "-" if micros < 0 else ""
    micros = abs(micros)
    if micros < 60_000_000:
        tenths = micros // 100_000
        return f"{sign}{tenths // 10}.{tenths % 10}s"
    minutes, seconds = divmod(micros // 1_000_000, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{sign}{days}d {hours:02d}h {minutes:02d}m {seconds:02d}s"
    if hours:
        return f"{sign}{hours}h {minutes:02d}m {seconds:02d}s"
    return f"{sign}{minutes}m {seconds:02d}s"


def text_or_dash(value: Any) -> str:
    """``value`` as printable text, ``-`` for ``None``."""
    if value is None:
        return "-"
    return clean(str(value))


def _time(value: Optional[_dt.datetime]) -> str:
    return "-" if value is None else value.isoformat(sep=" ", timespec="seconds")


def _last_line(error: Optional[str]) -> str:
    if error is None:
        return "-"
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    return clean(lines[-1]) if lines else "(empty)"


def local_time(record: Any, which: str, utc: Optional[_dt.datetime]) -> Optional[_dt.datetime]:
    """``record.<which>`` (a ``*_local`` property), or ``utc`` when the platform cannot tell."""
    try:
        local: Optional[_dt.datetime] = getattr(record, which)
    except (OverflowError, OSError, ValueError):  # out of the platform's local-time range
        return utc
    return local


def _shown(fact: Fact) -> bool:
    """Whether ``show`` lists the fact: not turned off, not a field added since Tango that the
    record does not have, and a record field only when the record is missing."""
    if not fact.show or (fact.value is None and fact.since is not None):
        return False
    if fact.absent is not None:
        return False  # the missing record above it is listed instead
    return not fact.record or fact.value is None


def show_record(record: Any) -> str:
    """The text ``show`` prints for one record."""
    try:
        state = str(record.state)
    except InvalidStepStateError as e:
        state = clean(str(e))
    duration = record.duration
    rows: Rows = [
        ("name", text_or_dash(record.step_name)),
        ("class", text_or_dash(record.step_class_name)),
        ("state", state),
        ("started", _time(local_time(record, "start_time_local", record.start_time))),
        ("ended", _time(local_time(record, "end_time_local", record.end_time))),
        ("duration", "-" if duration is None else human_duration(duration)),
        ("error", _last_line(record.error)),
    ]
    # Tango's own fields of the step are the rows above; every record field (platform,
    # environment) and every field added since is listed from its facts.
    names = [f.name for f in fields(type(record)) if f.since is not None or holds_record(f.tp)]
    for fact in facts(type(record), record.__dict__, only=names):
        if _shown(fact):
            value = fact.text() if fact.record else fact.text("-")
            rows.append((clean(fact.label), clean(value)))
    return clean(record.unique_id) + "\n" + table(rows, "  ")


def capture_summary(platform: Any, environment: Any) -> str:
    """The aligned summary printed by ``tango-stepinfo`` with no arguments: every fact of the
    platform and environment, the package list last."""
    from .step_info import StepInfo

    found = facts(
        StepInfo,
        {"platform": platform, "environment": environment},
        only=["platform", "environment"],
    )
    rows: Rows = []
    later: Rows = []
    for fact in found:
        if fact.absent is not None or (fact.record and fact.value is not None):
            continue  # a record is listed field by field, or as one row when it is missing
        if fact.pairs and fact.value is not None:
            later += _pairs_rows(fact)
        else:
            rows.append((clean(fact.label), clean(fact.text())))
    return table(rows + later)


def _pairs_rows(fact: Fact) -> Rows:
    pairs = fact.value
    rows: Rows = [(clean(fact.label), str(len(pairs)))]
    rows += [("", f"{clean(n)} {clean(v)}") for n, v in pairs[:_FIRST_PACKAGES]]
    if len(pairs) > _FIRST_PACKAGES:
        rows.append(("", f"... and {len(pairs) - _FIRST_PACKAGES} more (--json lists all)"))
    return rows
