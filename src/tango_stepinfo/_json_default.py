"""The process-wide default of ``to_json_dict(tango_compat=...)``: ``$TANGO_STEPINFO_JSON``.

A fleet where Tango's own ``StepInfo`` and this library's write to one workspace needs every
record in Tango's format, and Tango's workspaces call ``to_json_dict()`` without arguments. So
the variable sets what an omitted ``tango_compat`` means in this process:

=======================  ==================================================================
``TANGO_STEPINFO_JSON``  ``to_json_dict()`` writes
=======================  ==================================================================
unset or empty           this library's JSON (``tango_compat=False``)
``ours``                 this library's JSON (``tango_compat=False``)
``tango``                what ai2-tango 1.3.2 writes (``tango_compat=True``)
anything else            nothing: :exc:`~tango_stepinfo.InvalidSettingError`
=======================  ==================================================================

Case and surrounding spaces are ignored. An explicit ``tango_compat=True`` or ``False`` always
wins and never reads the variable. The variable is read once per process, on the first call
that needs it (later calls pay one global lookup); ``tango_stepinfo.clear_cache()`` reads it
again.
"""

from __future__ import annotations

import os
from typing import Optional, Tuple

from .errors import InvalidSettingError

__all__ = ["VARIABLE", "clear", "tango_compat"]

VARIABLE = "TANGO_STEPINFO_JSON"
_VALUES = {"": False, "ours": False, "tango": True}

_setting: Optional[Tuple[bool, str]] = None  # (tango_compat, problem if the value is unknown)


def tango_compat(explicit: Optional[bool]) -> bool:
    """``explicit`` when given, else the default this process's ``$TANGO_STEPINFO_JSON`` sets.

    :raises InvalidSettingError: ``explicit`` is ``None`` and the variable holds an unknown
        value; the message names the variable and the value.
    """
    if explicit is not None:
        return explicit
    global _setting
    setting = _setting
    if setting is None:
        raw = os.environ.get(VARIABLE, "")
        value = _VALUES.get(raw.strip().lower())
        problem = "" if value is not None else f"expected 'tango' or 'ours' (or unset), got {raw!r}"
        setting = _setting = (bool(value), problem)
    if setting[1]:
        raise InvalidSettingError(VARIABLE, setting[1])
    return setting[0]


def clear() -> None:
    """Forget the value read, so that the next call reads the variable again."""
    global _setting
    _setting = None
