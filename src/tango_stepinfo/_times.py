"""Times in records: the ISO 8601 forms the JSON codec reads and writes, and UTC conversion.

Decoded times are in ``pytz.utc``, as the times of Tango's own records (it pickles smaller than
:data:`datetime.timezone.utc` and compares equal to the same instant in any zone). ``pytz`` and
the time pattern are loaded on first use, so that importing the package stays cheap.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any, Callable, List, Tuple

from ._errors import Bad, show

__all__ = [
    "TIME_PATTERN",
    "as_utc",
    "decode",
    "decoder",
    "encode",
    "encode_tango",
    "encoder",
    "parse_time",
    "safe_tz",
]

UTC = _dt.timezone.utc

TIME_PATTERN = (
    r"(?!0000)([0-9]{4})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt ]"
    r"([01][0-9]|2[0-3]):([0-5][0-9]):([0-5][0-9]|60)(?:[.,]([0-9]+))?"
    r"(?:(Z|z)|([+-])([01][0-9]|2[0-3])(?::?([0-5][0-9])(?::?([0-5][0-9]))?)?)?"
)
"""The ISO 8601 times the decoder reads; ASCII digits and in-range fields only (no year 0000,
which a datetime cannot hold), so that the JSON Schema (which uses it too) and the decoder agree
(a day past the month's end, and a time whose UTC instant falls outside years 1 to 9999, are
the decoder's alone to refuse). Besides the forms Tango and this library write, those of other
tools: a fraction of any length (.NET writes 7 digits, Go and Java up to 9), a lowercase ``t``
(RFC 3339 allows it), an offset of hours only (PostgreSQL's ``+05``) and a leap second
(``23:59:60``)."""
_time_re: re.Pattern[str] | None = None

_WRITTEN = (
    r"[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])T"
    r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{6}\+00:00)?"
)
"""The two shapes written (ours, with microseconds and offset; Tango's, to the second): a subset
of :data:`TIME_PATTERN` without groups, tried first. Measured (CPU, 3.11, in-process A/B):
decoding one of ours -30%."""
_written: Any = None  # _WRITTEN's compiled fullmatch, made on first use
_fromisoformat = _dt.datetime.fromisoformat
_combine = _dt.datetime.combine

_pytz_utc: _dt.tzinfo | None = None


def decoded_utc() -> _dt.tzinfo:
    """The UTC of decoded times: ``pytz.utc``, as Tango's own times (imported on first use)."""
    global _pytz_utc
    if _pytz_utc is None:
        import pytz

        _pytz_utc = pytz.utc
    return _pytz_utc


def parse_time(text: str) -> _dt.datetime:
    """Parse an ISO 8601 time as Tango or this library writes it into an aware UTC datetime.

    Accepts ``2024-03-10T06:59:58`` (Tango: no offset, meaning UTC), an optional fraction, and
    ``Z`` or a ``+hh:mm`` offset (see :data:`TIME_PATTERN` for all forms). The same strings are
    accepted on every Python. Digits of the fraction past the microseconds are dropped (as
    Tango drops the fraction, and Python 3.11's :meth:`~datetime.datetime.fromisoformat` the
    digits past six); a leap second, which a datetime cannot hold, is read as the last
    microsecond before the next minute, so that times stay in order.
    The result's time zone is ``pytz.utc``, as in the records Tango makes: it pickles smaller
    than :data:`datetime.timezone.utc` and compares equal to the same instant in any zone.

    :raises ValueError: for anything else, or a date that does not exist.
    """
    global _time_re
    if _time_re is None:
        _time_re = re.compile(TIME_PATTERN, re.ASCII)
    m = _time_re.fullmatch(text)
    if m is None:
        raise ValueError("not an ISO 8601 time")
    y, mo, d, h, mi, s, frac, _z, sign, oh, om, os_ = m.groups()
    micro = int(frac[:6].ljust(6, "0")) if frac else 0
    if s == "60":  # a leap second
        s, micro = "59", 999999
    value = _dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), micro, decoded_utc())
    if sign:
        offset = _dt.timedelta(hours=int(oh), minutes=int(om or 0), seconds=int(os_ or 0))
        value -= -offset if sign == "-" else offset  # wall time at that offset -> UTC
    return value


def safe_tz(tz: _dt.tzinfo | None) -> bool:
    """Whether ``tz`` pickles as something the safe loader reads: none, a fixed offset, pytz."""
    return tz is None or type(tz) is _dt.timezone or type(tz).__module__.startswith("pytz")


def as_utc(value: _dt.datetime, utc: _dt.tzinfo = UTC) -> _dt.datetime:
    """``value`` in UTC (kept as it is if it already is); a naive one is taken as UTC."""
    tz = value.tzinfo
    if tz is None or value.utcoffset() is None:
        return value.replace(tzinfo=utc)
    if tz is UTC or tz is _pytz_utc:
        return value
    return value.astimezone(utc)


def encode(value: Any) -> str:
    """Our JSON form: UTC with microseconds and offset (``2024-03-10T06:59:58.123456+00:00``)."""
    if type(value) is _dt.datetime:
        tz = value.tzinfo
        if tz is UTC or (tz is _pytz_utc and tz is not None):
            # Already in UTC, written without as_utc and ``timespec``: measured (CPU, 3.11,
            # in-process A/B) -25% a time.
            if value.microsecond:
                return value.isoformat()
            return value.isoformat()[:19] + ".000000+00:00"
    if not isinstance(value, _dt.datetime):
        raise Bad(f"expected a datetime, got {show(value)}")
    try:
        return as_utc(value).isoformat(timespec="microseconds")
    except OverflowError:
        raise Bad(f"{value!r} is out of range in UTC") from None


def encode_tango(value: Any) -> str:
    """Tango's JSON form: UTC to the second, without an offset (``2024-03-10T06:59:58``)."""
    if type(value) is _dt.datetime:
        tz = value.tzinfo
        if tz is UTC or (tz is _pytz_utc and tz is not None):
            return value.isoformat()[:19]  # as ``timespec="seconds"``: truncated, not rounded
    if not isinstance(value, _dt.datetime):
        raise Bad(f"expected a datetime, got {show(value)}")
    try:
        return as_utc(value).replace(tzinfo=None).isoformat(timespec="seconds")
    except OverflowError:
        raise Bad(f"{value!r} is out of range in UTC") from None


def _compile_written() -> Any:
    global _written
    _written = re.compile(_WRITTEN, re.ASCII).fullmatch
    return _written


def decode(value: Any) -> _dt.datetime:
    """A time from its JSON form (or a datetime), in ``pytz.utc``."""
    if type(value) is str:
        if (len(value) == 32 or len(value) == 19) and (_written or _compile_written())(value):
            # What parse_time does for these shapes, without its groups; same errors.
            try:
                parsed = _fromisoformat(value)
            except ValueError as e:
                raise Bad(f"expected an ISO 8601 time, got {show(value)} ({e})") from None
            # As ``parsed.replace(tzinfo=...)``, in a fifth of its time (3.11: 0.2 us, not 1).
            return _combine(parsed.date(), parsed.time(), _pytz_utc or decoded_utc())
        try:
            return parse_time(value)
        except (ValueError, OverflowError) as e:
            raise Bad(f"expected an ISO 8601 time, got {show(value)} ({e})") from None
    if isinstance(value, _dt.datetime):
        try:
            return as_utc(value, _pytz_utc or decoded_utc()).replace(tzinfo=_pytz_utc)
        except OverflowError:
            raise Bad(f"{value!r} is out of range in UTC") from None
    raise Bad(f"expected an ISO 8601 time, got {show(value)}")


_NOTHING = object()


def encoder(tango: bool = False) -> Callable[[Any], str]:
    """A new :func:`encode` (with ``tango``: :func:`encode_tango`) that keeps its last UTC time
    and the text written for it, and answers the very same object again with that text.

    Each time field of a record plan has its own (``start_time`` and ``end_time`` would evict
    each other from one). Only an exact ``datetime`` in ``datetime.timezone.utc`` or
    ``pytz.utc`` is kept: it is immutable and its text depends on its fields alone (a subclass
    or another zone may compute its offset in code of its own). The object is held, so its
    ``id`` cannot be reused while it is kept; the pair is one tuple, replaced whole (safe
    between threads). Measured (timeit, min of 9): the time seen last 0.04 us against 1.1 us
    (3.11; 3.9: 0.1 against 1.4; ``isoformat`` computes the offset by a method call); a new one,
    within the noise of :func:`encode`. ``to_json_dict`` of the benchmark's record: -22% CPU
    (3.11), -16% (3.9), -18% (3.13): see the commit adding it.
    """
    write = encode_tango if tango else encode
    kept: List[Tuple[object, str]] = [(_NOTHING, "")]

    def enc(value: Any) -> str:
        seen, text = kept[0]
        if value is seen:
            return text
        text = write(value)
        if type(value) is _dt.datetime:
            tz = value.tzinfo
            if tz is UTC or (tz is _pytz_utc and tz is not None):
                kept[0] = (value, text)
        return text

    return enc


def decoder() -> Callable[[Any], _dt.datetime]:
    """A new :func:`decode` that keeps its last string and the time decoded from it, and
    answers an equal string (a plain ``str``: its type is checked before comparing, so that no
    code of a subclass runs) with that same time object. A ``datetime`` is immutable, so sharing
    it between decoded records changes no value; what is returned for a string does not depend
    on what was decoded before. Each time field has its own. Measured (timeit, min of 9): an
    equal string 0.05 us against 0.8 us (3.11; 3.9: 0.14 against 0.76; regex,
    ``fromisoformat``, ``combine``); a new one, up to 0.1 us more than :func:`decode` (3.11).
    ``from_json_dict`` of the benchmark's record: -9% CPU (3.11), -5% (3.9), -9% (3.13).
    """
    kept: List[Tuple[object, _dt.datetime]] = [(_NOTHING, _dt.datetime.min)]

    def dec(value: Any) -> _dt.datetime:
        text, seen = kept[0]
        if type(value) is str:
            if value == text:
                return seen
            seen = decode(value)
            kept[0] = (value, seen)
            return seen
        return decode(value)

    return dec


def to_state(value: Any) -> Any:
    """A time as pickled, in a form the safe loader reads: a zone it would refuse becomes the
    same instant in UTC, and a subclass of ``datetime`` (pendulum's, as Airflow's times are,
    pandas' ``Timestamp``) a plain ``datetime``, since its class would be refused too."""
    if type(value) is _dt.datetime and safe_tz(value.tzinfo):
        return value  # (nearly always: one type check more than before for a pickled time)
    if not isinstance(value, _dt.datetime):
        return value
    if not safe_tz(value.tzinfo):
        try:
            value = as_utc(value, _pytz_utc or decoded_utc())
        except OverflowError:  # out of range in UTC: its zone kept as it is
            return _plain(value)
    return _plain(value)


def _plain(t: _dt.datetime) -> _dt.datetime:
    """``t`` as a plain ``datetime`` (the same fields, zone and fold)."""
    if type(t) is _dt.datetime:
        return t
    return _dt.datetime(
        t.year, t.month, t.day, t.hour, t.minute, t.second, t.microsecond, t.tzinfo, fold=t.fold
    )
