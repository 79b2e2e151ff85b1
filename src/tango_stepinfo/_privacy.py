"""Anonymous records: what ``TANGO_STEPINFO_PRIVACY=anonymous`` hides, and how.

The mode is read from the environment once per process, at the first record (and again after
``clear_cache()``): ``full`` (the default; also when the variable is unset or empty) records
everything; ``anonymous`` (any letter case) makes the probes record, instead of

- ``platform.user``, ``platform.host``, ``environment.root`` and ``environment.git.remote``:
  ``"anonymous"``, or with ``TANGO_STEPINFO_PRIVACY_KEY`` set, ``anon:`` and the first 12 hex
  digits of HMAC-SHA256(key, value), so that records of one user or host still group together
  without naming them;
- ``environment.executable``, the words of ``environment.command`` and the values of
  ``environment.variables`` that are absolute paths: the last component only
  (``/home/alice/proj/train.py`` becomes ``.../train.py``; in ``--out=/home/alice/x`` and
  ``OUT=/home/alice/x`` the value after ``=``; in a word holding a whole shell command, each
  absolute path in it). A path ending in a folder named after the user still shows that name;
- ``job.url`` (when a record has a job): ``None``;
- the reasons (``fallbacks``) of those fields: a fixed line that says a probe fell back without
  saying how, as the reason could name the hidden value.

``environment.privacy`` says ``"anonymous"`` in such a record. Any other mode raises
:class:`tango_stepinfo.errors.InvalidSettingError` at the first record: a typo never records
everything silently. :func:`anonymize` applies the same rules to a record already made.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, TypeVar

from .errors import InvalidSettingError

__all__ = ["ANONYMOUS", "Policy", "anonymize", "clear", "current", "reason", "shorten"]

ANONYMOUS = "anonymous"
"""What a hidden value becomes without a key, and the value of ``environment.privacy``."""

WITHHELD = "the probe fell back; its reason is withheld in an anonymous record"
"""The reason recorded for a hidden field whose probe fell back."""

_HIDDEN_REASONS = ("user", "host", "root", "executable", "command", "variables", "git.remote")

if TYPE_CHECKING:  # for the checker only: a TypeVar costs 0.01 to 0.02 ms at import (3.11)
    _R = TypeVar("_R")


class Policy:
    """How values are hidden: ``"anonymous"``, or ``anon:`` + 12 hex digits of an HMAC.

    :param key: the HMAC key; ``None`` or empty for the plain ``"anonymous"``.
    """

    __slots__ = ("_key", "_memo")

    def __init__(self, key: Optional[str]) -> None:
        self._key = key.encode("utf-8", "surrogateescape") if key else None
        self._memo: Dict[str, str] = {}

    def hide(self, value: str) -> str:
        """The stand-in for ``value``; values already hidden are kept (anonymizing twice)."""
        if self._key is None or value == ANONYMOUS or value.startswith("anon:"):
            return ANONYMOUS if self._key is None else value
        try:
            return self._memo[value]
        except KeyError:
            pass
        import hashlib
        import hmac

        digest = hmac.new(self._key, value.encode("utf-8", "surrogateescape"), hashlib.sha256)
        hidden = self._memo[value] = "anon:" + digest.hexdigest()[:12]
        return hidden


_UNREAD: Any = object()
_policy: Any = _UNREAD


def current() -> Optional[Policy]:
    """The policy of this process; ``None`` in ``full`` mode. Read once, until :func:`clear`.

    :raises InvalidSettingError: ``TANGO_STEPINFO_PRIVACY`` names no known mode.
    """
    global _policy
    policy = _policy
    if policy is _UNREAD:
        value = os.environ.get("TANGO_STEPINFO_PRIVACY", "")
        mode = value.strip().lower() or "full"
        if mode not in ("full", ANONYMOUS):
            raise InvalidSettingError(
                "TANGO_STEPINFO_PRIVACY",
                f"unknown privacy mode {value!r}; expected 'full' or 'anonymous'",
            )
        key = os.environ.get("TANGO_STEPINFO_PRIVACY_KEY")
        policy = _policy = Policy(key) if mode == ANONYMOUS else None
    return policy  # type: ignore[no-any-return]


def clear() -> None:
    """Forget the mode read, so that the next record reads it again (``clear_cache()``)."""
    global _policy
    _policy = _UNREAD


def reason(key: str, text: str) -> str:
    """``text``, or :data:`WITHHELD` when ``key`` is a hidden field of an anonymous record.

    Never raises: an unknown mode counts as anonymous here (the record itself will fail).
    """
    if not _is_hidden(key):
        return text
    try:
        anonymous = current() is not None
    except InvalidSettingError:
        anonymous = True
    return WITHHELD if anonymous else text


# --- paths ---------------------------------------------------------------------------------------


def shorten(path: str) -> str:
    """``.../`` and the last component of an absolute path; anything else as it is."""
    if not path.startswith("/") and not (len(path) > 2 and path[1] == ":" and path[2] in "\\/"):
        return path
    parts = [p for p in path.replace("\\", "/").split("/") if p]
    return ".../" + parts[-1] if parts else "/"


def _shorten_word(word: str) -> str:
    """A command-line word with its absolute path, or the one after ``=``, shortened."""
    if any(c.isspace() for c in word):  # a shell command in one word: every path in it
        return " ".join(_shorten_word(w) for w in word.split(" "))
    core = word.lstrip("'\"")
    lead = word[: len(word) - len(core)]
    inner = core.rstrip("'\";")
    tail = core[len(inner) :]
    head, equals, value = inner.partition("=")
    if equals and not head.startswith("/"):
        return lead + head + equals + shorten(value) + tail
    return lead + shorten(inner) + tail


def shorten_words(words: List[str]) -> List[str]:
    """The words of a command line with absolute paths shortened (see the module docstring)."""
    return [_shorten_word(w) for w in words]


def shorten_command(text: str) -> str:
    """A shell-quoted command line (as records hold it) with absolute paths shortened."""
    import shlex

    try:
        words = shlex.split(text)
    except ValueError:  # not shell-quoted after all: treat it as one embedded command line
        return _shorten_word(text)
    return shlex.join(shorten_words(words))


def shorten_value(value: str) -> str:
    """An environment variable's value: an absolute path or a list of them, shortened."""
    parts = value.split(os.pathsep)
    if all(shorten(p) != p for p in parts):
        return os.pathsep.join(shorten(p) for p in parts)
    return value


# --- anonymize() ---------------------------------------------------------------------------------


def _reasons(reasons: Any) -> Any:
    if not isinstance(reasons, dict):
        return reasons
    return {key: WITHHELD if _is_hidden(key) else text for key, text in reasons.items()}


def _is_hidden(key: str) -> bool:
    """Whether the reason noted under ``key`` belongs to a field anonymous records hide."""
    return key in _HIDDEN_REASONS or key.partition(".")[0] == "job"


def _apply(record: Any, policy: Policy) -> None:
    """Hide, in place, the fields of ``record`` (a deep copy) and of the records inside it."""
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        name = f.name
        new: Any = value
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            if name == "job" and any(g.name == "url" for g in dataclasses.fields(value)):
                setattr(value, "url", None)  # noqa: B010 - any job record with a url
            _apply(value, policy)
            continue
        if value is None:
            continue
        kind = type(record).__name__
        if (kind, name) in (
            ("PlatformMetadata", "user"),
            ("PlatformMetadata", "host"),
            ("GitMetadata", "remote"),
        ):
            new = policy.hide(str(value))
        elif kind == "EnvironmentMetadata":
            if name == "root":
                new = Path(policy.hide(str(value)))
            elif name == "executable":
                new = Path(shorten(str(value)))
            elif name == "command" and isinstance(value, str):
                new = shorten_command(value)
            elif name == "variables" and isinstance(value, dict):
                new = {k: shorten_value(v) if isinstance(v, str) else v for k, v in value.items()}
        if name == "fallbacks":
            new = _reasons(value)
        if new is not value:
            setattr(record, name, new)
    if type(record).__name__ == "EnvironmentMetadata" and hasattr(record, "privacy"):
        record.privacy = ANONYMOUS


def anonymize(record: _R, key: Optional[str] = None) -> _R:
    """An anonymized copy of ``record``, by the rules of ``TANGO_STEPINFO_PRIVACY=anonymous``.

    For sharing records made in ``full`` mode (with a paper, a bug report). Works on any record
    (:class:`~tango_stepinfo.StepInfo`, :class:`~tango_stepinfo.PlatformMetadata`,
    :class:`~tango_stepinfo.EnvironmentMetadata`, :class:`~tango_stepinfo.GitMetadata`, ...)
    and the records inside it; ``record`` itself is left as it is. Does not read the
    environment: the key is the argument.

    :param record: the record to copy.
    :param key: when given, hidden values become ``anon:`` + 12 hex digits of
        HMAC-SHA256(key, value), as with ``TANGO_STEPINFO_PRIVACY_KEY``.
    :raises TypeError: ``record`` is not a record (a dataclass instance).
    """
    if not dataclasses.is_dataclass(record) or isinstance(record, type):
        raise TypeError(f"anonymize() takes a record, got {type(record).__name__}")
    out = copy.deepcopy(record)
    _apply(out, Policy(key))
    return out
