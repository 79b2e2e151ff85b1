"""The one clock of the lifecycle helpers."""

from __future__ import annotations

import datetime as dt

import pytz

from tango_stepinfo import _clock


def test_now_is_aware_utc_to_the_microsecond() -> None:
    before = dt.datetime.now(dt.timezone.utc)
    now = _clock.now()
    after = dt.datetime.now(dt.timezone.utc)
    assert now.tzinfo is pytz.utc
    assert now.utcoffset() == dt.timedelta(0)
    assert before <= now <= after
    # Microseconds are kept: the clock is not rounded to the second (as Tango's JSON is).
    readings = {_clock.now().microsecond for _ in range(50)}
    assert len(readings) > 1
