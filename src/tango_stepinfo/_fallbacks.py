"""Why a probe fell back: one reason per field, kept for the ``fallbacks`` fields of records.

Each probe says what happened to it with :func:`note`: a one-line reason when it failed or fell
back (``"no passwd entry for uid 1234; recorded the uid"``), ``None`` when it succeeded (which
clears a reason left by an earlier call). Absence is not a fallback: a machine with no GPU, no
job or no git repository notes ``None``. Keys are field names (``"user"``, ``"root"``) or dotted
paths of nested fields (``"git.dirty"``).

Reasons of facts fixed for the process are noted once, when they are probed; reasons of facts
re-checked for every record (the working directory, git) are noted at each check. A record's
``fallbacks`` field is declared after its other fields, so its default factory runs after theirs
and :func:`collect` sees the reasons of the values the record just got. Reasons never hold a
traceback or a secret.
"""

from __future__ import annotations

from typing import Dict, Iterable, Optional

from ._proc import debug

__all__ = ["clear", "collect", "note"]

_reasons: Dict[str, str] = {}


def note(key: str, reason: Optional[str]) -> None:
    """Record why the probe of ``key`` fell back (logged at DEBUG), or that it did not (``None``).

    :param key: the field name, or the dotted path of a nested field (``"git.dirty"``).
    :param reason: one line saying what happened and what was recorded instead.
    """
    if reason is None:
        _reasons.pop(key, None)
        return
    from . import _privacy

    reason = _privacy.reason(key, reason)  # anonymous records withhold reasons of hidden fields
    if _reasons.get(key) != reason:
        debug("%s: %s", key, reason)
    _reasons[key] = reason


def collect(keys: Iterable[str]) -> Optional[Dict[str, str]]:
    """The current reasons of ``keys`` and of their dotted sub-keys; ``None`` when there are none.

    ``collect(["root", "git"])`` gives the reasons of ``root`` and of ``git.dirty``, ``git.diff``...
    """
    if not _reasons:
        return None  # the usual case, and the one every record asks about: no fallback at all
    wanted = tuple(keys)
    found = {
        key: reason
        for key, reason in list(_reasons.items())
        if key in wanted or key.partition(".")[0] in wanted
    }
    return {key: found[key] for key in sorted(found)} or None


def clear() -> None:
    """Forget every reason (``clear_cache()`` calls this)."""
    _reasons.clear()
