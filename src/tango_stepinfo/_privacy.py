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
  absolute path in it);
- ``job.url`` (when a record has a job): ``None``;
- the reasons (``fallbacks``) of those fields: a fixed line that says a probe fell back without
  saying how, as the reason could name the hidden value;
- ``platform.gpus[].uuid``: a stand-in as for the host (a GPU's UUID names its machine);
- in the free text of ``environment.command``, ``environment.executable``, the names and
  values of ``environment.variables``, ``git.branch``, ``job.id`` and ``job.name``, the other
  fallback reasons and a failure's ``error`` (whose absolute paths are shortened too): every
  user or host name the process knows (:func:`._hiding.process_names`; a record's own, for
  :func:`anonymize`), matched whole in any letter case, GPU and MIG UUIDs and IP addresses,
  each by its stand-in (:meth:`._hiding.Policy.scrub`): ``~alice/x``, ``--entity Alice``,
  ``node-alice01``, ``alice/fix`` become ``~anonymous/x``, ``--entity anonymous``...

``environment.privacy`` says ``"anonymous"`` in such a record. Any other mode raises
:class:`tango_stepinfo.errors.InvalidSettingError` at the first record: a typo never records
everything silently. :func:`anonymize` applies the same rules to a record already made.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from typing import TYPE_CHECKING, Any, List, Optional, TypeVar

from .errors import InvalidSettingError

if TYPE_CHECKING:
    from ._hiding import Policy

__all__ = [
    "ANONYMOUS",
    "WITHHELD",
    "anonymize",
    "clear",
    "current",
    "free_text",
    "is_hidden",
    "reason",
    "settled",
    "shorten",
    "shorten_command",
    "shorten_value",
    "shorten_word",
    "shorten_words",
]

# How values are hidden (the stand-ins, the names scrubbed from free text, a record's fields)
# is in :mod:`._hiding`, loaded by the first anonymous record or anonymize():
# a record in full mode never needs it, and loading it with this module cost 0.2 ms of
# ``import tango_stepinfo`` (3.11).

ANONYMOUS = "anonymous"
"""What a hidden value becomes without a key, and the value of ``environment.privacy``."""

WITHHELD = "the probe fell back; its reason is withheld in an anonymous record"
"""The reason recorded for a hidden field whose probe fell back."""

_HIDDEN_REASONS = ("user", "host", "root", "executable", "command", "variables", "git.remote")

if TYPE_CHECKING:  # for the checker only: a TypeVar costs 0.01 to 0.02 ms at import (3.11)
    _R = TypeVar("_R")


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
        if mode == ANONYMOUS:
            from ._proc import SHORTAGES

            try:
                from ._hiding import Policy

                policy = Policy(key)
            except OSError as e:  # out of file descriptors or memory: the rules cannot load
                if e.errno not in SHORTAGES:
                    raise
                policy = _blank(e)
                return policy  # type: ignore[no-any-return]
            _policy = policy
            if _blanked:
                _blank(None)
        else:
            policy = _policy = None
    return policy  # type: ignore[no-any-return]


BLANK_REASON = "the rules of anonymous records could not load"
"""The start of the reason noted under ``privacy`` for a record made by :class:`_Blank`."""

_blanked = False  # a record was made by _Blank: its reason is noted (cleared by the real rules)
_blank_reason = ""  # that reason, the one text _Blank.scrub keeps


class _Blank:
    """The policy of an anonymous record whose rules (:mod:`._hiding` and what it imports)
    cannot load, the process being out of file descriptors or memory: every hidden value and
    every free text becomes ``"anonymous"`` (never the value unhidden), a variable keeps its
    name. Not kept: the next record loads the rules again."""

    def hide(self, value: str) -> str:
        return ANONYMOUS

    def scrub(self, text: str) -> str:
        return text if text == _blank_reason and text else ANONYMOUS  # its own reason only

    def variable(self, name: str, value: str) -> tuple[str, str]:
        return name, ANONYMOUS

    def ready(self) -> bool:
        return False


def settled() -> bool:
    """Whether what the probes hide now is final, to be kept for the process: in ``full``
    mode, or once the rules of anonymous records loaded and read the names to hide (out of
    file descriptors, a record hides its texts whole, and the next one probes them again)."""
    try:
        policy = current()
    except InvalidSettingError:  # the record fails anyway
        return True
    return policy is None or bool(policy.ready())


def _blank(error: Optional[OSError]) -> Any:
    """:class:`_Blank`, with the reason noted under ``privacy`` (``error`` ``None``: cleared)."""
    global _blanked, _blank_reason
    from . import _fallbacks

    if error is None:
        _blanked = False
        _fallbacks.note("privacy", None)
        return None
    if not _blanked:  # noting runs this module's reason(), which asks current() again
        _blanked = True
        why = error.strerror or type(error).__name__
        _blank_reason = (
            f"{BLANK_REASON} ({why}); hidden values and free text recorded as 'anonymous'"
        )
        _fallbacks.note("privacy", _blank_reason)
        if _policy is not _UNREAD:  # the rules loaded meanwhile, in the note's own current()
            _blanked = False
            _fallbacks.note("privacy", None)
    return _Blank()


def clear() -> None:
    """Forget the mode read, so that the next record reads it again (``clear_cache()``)."""
    global _policy, _blanked
    _policy = _UNREAD
    _blanked = False


def reason(key: str, text: str) -> str:
    """``text``; in an anonymous record :data:`WITHHELD` when ``key`` is a hidden field, else
    ``text`` with its names scrubbed (:meth:`._hiding.Policy.scrub`; its paths are the system
    files a probe read, kept).

    Never raises: an unknown mode counts as anonymous here (the record itself will fail).
    """
    if not is_hidden(key):
        return free_text(text, paths=False)
    try:
        anonymous = current() is not None
    except InvalidSettingError:
        anonymous = True
    return WITHHELD if anonymous else text


def free_text(text: str, paths: bool = True) -> str:
    """``text`` (a failure's traceback, a fallback reason) as this process's mode records it:
    as it is in ``full`` mode; in an anonymous record with its names scrubbed
    (:meth:`._hiding.Policy.scrub`) and, with ``paths``, its absolute paths shortened (a
    reason's paths are the system files a probe read: ``/proc/driver/nvidia/gpus``). Never
    raises: an unknown mode counts as anonymous."""
    policy: Any  # a Policy, None, or a _Blank
    try:
        policy = current()
    except InvalidSettingError:
        try:
            from ._hiding import Policy

            policy = Policy(None)
        except OSError:  # out of file descriptors or memory as well
            policy = _Blank()
    if policy is None:
        return text
    return shorten_word(policy.scrub(text)) if paths else policy.scrub(text)


def is_hidden(key: str) -> bool:
    """Whether the reason noted under ``key`` belongs to a field anonymous records hide."""
    return key in _HIDDEN_REASONS or key.partition(".")[0] == "job"


# --- paths ---------------------------------------------------------------------------------------


def _absolute(path: str) -> bool:
    """Whether ``path`` is absolute: POSIX, a drive's (``C:\\`` or ``C:/``), or a Windows
    share's (``\\\\server\\share``)."""
    return path.startswith(("/", "\\\\")) or (len(path) > 2 and path[1] == ":" and path[2] in "\\/")


def shorten(path: str) -> str:
    """``.../`` and the last component of an absolute path (POSIX, a drive's, or a Windows
    share's ``\\\\server\\share\\...``, which names its server); anything else as it is."""
    if not _absolute(path):
        return path
    parts = [p for p in path.replace("\\", "/").split("/") if p]
    return ".../" + parts[-1] if parts else "/"


def shorten_word(word: str) -> str:
    """A command-line word with its absolute path, or the one after ``=``, shortened."""
    if any(c.isspace() for c in word):  # a shell command in one word: every path in it
        from itertools import groupby  # keeps each run of whitespace (tabs, newlines) as it is

        return "".join(
            "".join(run) if space else shorten_word("".join(run))
            for space, run in groupby(word, str.isspace)
        )
    core = word.lstrip("'\"")
    lead = word[: len(word) - len(core)]
    inner = core.rstrip("'\";")
    tail = core[len(inner) :]
    head, equals, value = inner.partition("=")
    if equals and not _absolute(head):  # NAME=value; a path holding "=" is shortened whole
        return lead + head + equals + shorten(value) + tail
    return lead + shorten(inner) + tail


def shorten_words(words: List[str]) -> List[str]:
    """The words of a command line with absolute paths shortened (see the module docstring)."""
    return [shorten_word(w) for w in words]


def shorten_command(text: str) -> str:
    """A shell-quoted command line (as records hold it) with absolute paths shortened."""
    import shlex

    try:
        words = shlex.split(text)
    except ValueError:  # not shell-quoted after all: treat it as one embedded command line
        return shorten_word(text)
    short = shorten_words(words)
    return text if short == words else shlex.join(short)  # nothing to shorten: not re-quoted


def shorten_value(value: str) -> str:
    """An environment variable's value: an absolute path or a list of them, shortened; else each
    absolute path in it, as in a command line's word (``--out /data/proj/x`` holds one)."""
    parts = value.split(os.pathsep)
    if all(shorten(p) != p for p in parts):
        return os.pathsep.join(shorten(p) for p in parts)
    return shorten_word(value)


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
    from . import _hiding

    out = copy.deepcopy(record)
    names = _hiding.record_names(out, [])
    # Passes until one changes nothing (the usual case: the second), at most five: names
    # overlapping names, or a path shortened into what reads as an address ("/1'::'" becomes
    # ".../1::"), take another.
    for _ in range(5):
        if not _hiding.apply(out, _hiding.Policy(key, names)):
            break
        more = _hiding.record_names(out, [])
        if _hiding.canonical(more).keys() - _hiding.canonical(names).keys():
            names += more
    return out
