"""The one clock of the lifecycle helpers: the current time, aware, in UTC, with microseconds.

Every time :meth:`~tango_stepinfo.StepInfo.mark_started`,
:meth:`~tango_stepinfo.StepInfo.mark_completed` and :meth:`~tango_stepinfo.StepInfo.mark_failed`
record comes from :func:`now`, so tests replace this one function to control them all.
"""

from __future__ import annotations

import datetime as _dt
from typing import Optional

__all__ = ["now"]

_utc: Optional[_dt.tzinfo] = None


def now() -> _dt.datetime:
    """The current time in UTC, to the microsecond, with ``pytz.utc`` as its zone.

    ``pytz.utc`` is the zone of Tango's own times and of the times this library decodes, so a
    record marked here compares and prints the same after a JSON round trip. :mod:`pytz` is
    imported on the first call, before the clock is read.
    """
    global _utc
    if _utc is None:
        import pytz

        _utc = pytz.utc
    # Read in timezone.utc, then rebuilt in pytz.utc: about 2 us, where now(pytz.utc) costs
    # about 6 us (its fromutc calls datetime.replace, itself about 5 us on CPython 3.11).
    t = _dt.datetime.now(_dt.timezone.utc)
    return _dt.datetime(t.year, t.month, t.day, t.hour, t.minute, t.second, t.microsecond, _utc)
