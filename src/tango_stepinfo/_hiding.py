"""How anonymous records hide values (:mod:`._privacy` says what they hide, and when).

:class:`Policy` makes the stand-ins (``"anonymous"``, or ``anon:`` and an HMAC) and scrubs free
text of the names this process knows (:func:`process_names`), GPU UUIDs and IP addresses;
:func:`apply` hides a record's fields in place, for :func:`tango_stepinfo.anonymize`
(absolute paths are shortened by :mod:`._privacy`'s :func:`~._privacy.shorten` and its kin,
which a record in ``full`` mode needs too: a fallback reason's path is shortened).

Loaded by the first anonymous record and by :func:`tango_stepinfo.anonymize`, never by
``import tango_stepinfo`` or by a record in ``full`` mode: as part of :mod:`._privacy`, it
cost about 0.2 ms and 140 of the objects ``import tango_stepinfo`` allocates (3.11).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from ._privacy import (
    ANONYMOUS,
    WITHHELD,
    is_hidden,
    shorten,
    shorten_command,
    shorten_value,
    shorten_word,
)
from ._proc import debug

__all__ = [
    "Policy",
    "apply",
    "canonical",
    "home_owner",
    "names_in",
    "process_names",
    "record_names",
]


class Policy:
    """How values are hidden: ``"anonymous"``, or ``anon:`` + 12 hex digits of an HMAC.

    :param key: the HMAC key; ``None`` or empty for the plain ``"anonymous"``.
    """

    __slots__ = ("_key", "_memo", "_names", "_pattern", "_scrubbed")

    def __init__(self, key: Optional[str], names: Optional[Iterable[str]] = None) -> None:
        # What scrubbing and hiding import, imported now: a process out of file descriptors
        # then fails here, where _privacy.current() falls back, not in a later scrub. (Not
        # ipaddress, 2.7 ms, seldom needed: _is_ipv6 falls back on its own.)
        import re

        from . import _git

        if key:
            import hashlib
            import hmac

            del hashlib, hmac
        del re, _git
        self._key = _encode(key) if key else None
        self._memo: Dict[str, str] = {}
        self._names: Optional[Dict[str, str]] = None if names is None else canonical(names)
        self._pattern: Optional[_Pattern] = None
        self._scrubbed: Dict[str, str] = {}

    def ready(self) -> bool:
        """Whether the names to hide are read, reading them now if they are not yet
        (:func:`process_names`): until they are, :meth:`scrub` hides a text whole, and what it
        gives is not worth keeping."""
        if self._names is None:
            found = process_names()
            if found is None:
                return False
            self._names = canonical(found)
        return True

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

        digest = hmac.new(self._key, _encode(value), hashlib.sha256)
        hidden = self._memo[value] = "anon:" + digest.hexdigest()[:12]
        return hidden

    def variable(self, name: str, value: str) -> Tuple[str, str]:
        """An environment variable as an anonymous record holds it: a variable naming a user or
        host (:data:`_NAME_VARIABLES`: ``USER``, ``HOSTNAME``...) hidden whole; any other with
        its absolute paths shortened (:func:`shorten_value`) after its names are scrubbed (so
        that a second pass finds what the first left), and its name scrubbed."""
        if name in _NAME_VARIABLES and value:
            return self.scrub(name), self.hide(value)
        return self.scrub(name), shorten_value(self.scrub(value))

    def scrub(self, text: str) -> str:
        """``text`` with every user, host or GPU it names, and IP addresses, hidden.

        The names are this process's (:func:`process_names`) unless given to the constructor;
        each is matched whole, in any letter case, and replaced by its stand-in
        (:meth:`hide` of the name as known).
        """
        try:
            return self._scrubbed[text]
        except KeyError:
            pass
        if not self.ready():  # out of file descriptors: hidden whole, the names read later
            debug("the names to hide could not all be read: a text hidden whole")
            return ANONYMOUS
        names = self._names
        assert names is not None
        if self._pattern is None:
            self._pattern = _scrub_pattern(names)
        by_group = self._pattern.names  # which name each group n0, n1... matches

        def stand_in(match: Any) -> str:
            found: str = match.group(0)
            group: str = match.lastgroup
            if group in by_group:  # not found.lower(): "ALİ" matches "ali" but lowers to "ali̇"
                return self.hide(by_group[group])
            if match.lastgroup == "ip" and any(int(n) > 255 for n in found.split(".")):
                return found  # four numbers, not an address
            if match.lastgroup == "ip6" and not _is_ipv6(found):
                return found  # a time (12:30:45), a MAC address...
            return self.hide(found)

        guesses = _guesses
        before: str = text
        out: str = self._pattern.sub(stand_in, text)
        for _ in range(3):  # a stand-in can end what reads as an address next to it: once more
            if out == before:
                break
            before, out = out, self._pattern.sub(stand_in, out)
        if len(self._scrubbed) < 4096 and _guesses == guesses:  # later records meet the same
            self._scrubbed[text] = out  # few texts again (not a guess: checked again later)
        return out


_guesses = 0  # texts _is_ipv6 could not check: their scrub is not kept (Policy.scrub)


def _is_ipv6(text: str) -> bool:
    """Whether ``text`` is an IPv6 address; ``True`` when :mod:`ipaddress` cannot load (out of
    file descriptors or memory): hidden, rather than maybe an address left."""
    global _guesses
    try:
        import ipaddress  # 2.7 ms, only when an anonymous record's text has hex groups and colons
    except OSError:
        _guesses += 1
        return True
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _encode(text: str) -> bytes:
    """``text`` as bytes for the HMAC: as the OS gave it (``surrogateescape``), and a lone
    surrogate that stands for no byte (from JSON, ``"\\ud800"``) as ``surrogatepass`` writes
    it, never raising."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


# --- names: who and where to hide in free text ------------------------------------------------

_GENERIC = frozenset(
    (
        "root",
        "nobody",
        "runner",
        "ubuntu",
        "user",
        "admin",
        "localhost",
        "jovyan",
        "anon",
        ANONYMOUS,
    )
)
"""Account and host names shared by everyone (containers, CI runners): hidden in ``user`` and
``host``, but not looked for in free text, where ``--root`` or ``localhost`` say nothing."""

_NAME_VARIABLES = (
    # the user, under its login, a sudo, a batch system and a CI system
    "LOGNAME",
    "USER",
    "LNAME",
    "USERNAME",
    "SUDO_USER",
    "SLURM_JOB_USER",
    "PBS_O_LOGNAME",
    "GITHUB_ACTOR",
    "GITHUB_TRIGGERING_ACTOR",
    "GITHUB_REPOSITORY_OWNER",
    "GITLAB_USER_LOGIN",
    "GITLAB_USER_EMAIL",
    "CI_PROJECT_NAMESPACE",
    # the host, and those a batch system names
    "HOSTNAME",
    "SLURMD_NODENAME",
    "SLURM_SUBMIT_HOST",
    "SLURM_CLUSTER_NAME",
    "PBS_O_HOST",
    "PBS_SERVER",
)
"""Environment variables whose values name the user, the host or an account of theirs."""

_HOME_ROOTS = ("/home/", "/Users/", "/u/", "/usr/home/", "C:/Users/", "c:/Users/")


def home_owner(path: str) -> Optional[str]:
    """The user a home folder path names (``/home/alice/x`` gives ``alice``); else ``None``."""
    path = path.replace("\\", "/")
    for home in _HOME_ROOTS:
        at = path.find(home)
        if at >= 0 and (at == 0 or not path[at - 1].isalnum()):
            owner = path[at + len(home) :].partition("/")[0]
            return owner or None
    return None


def names_in(value: str) -> List[str]:
    """The names to look for that one identifying value gives: itself, the parts of an e-mail
    address, and a host name's first label and its domain (``node1.cs.uni.edu`` gives
    ``node1`` and ``cs.uni.edu``)."""
    value = value.strip()
    found = [value]
    local, at, domain = value.rpartition("@")
    if at:
        found += [local, domain]
        value = domain
    first, dot, domain = value.partition(".")
    if dot and "/" not in value:
        found.append(first)
        if "." in domain:
            found.append(domain)
    return found


def process_names() -> Optional[List[str]]:
    """The identifying values of this process, to hide in free text (see :meth:`Policy.scrub`):
    the login name (and that of the uid), the host name, the values of :data:`_NAME_VARIABLES`,
    the owner of a home folder in ``$HOME``, the working directory (deleted too, as
    :func:`._probe.root` finds it) and ``sys.executable``, and the namespace of the git remote
    of the working directory's repository (at the first anonymous record: names are read once
    per process).

    ``None`` when the process is out of file descriptors before or after reading them: the
    passwd entry and the git config are files, and a name that could not be read is missing
    for no reason a record could see (the caller hides the whole text, and reads again later).
    """
    import sys

    from . import _probe

    if _short_of_files():
        return None
    env = os.environ
    values = [env.get(name, "") for name in _NAME_VARIABLES]
    values.append(env.get("PBS_JOBID", "").partition(".")[2])  # 1234.server.uni.edu
    try:
        import pwd

        values.append(pwd.getpwuid(os.getuid()).pw_name)
    except (ImportError, KeyError, AttributeError, OSError):
        pass  # no passwd entry (docker run -u 1234), or no uids
    uname = getattr(os, "uname", None)
    if uname is not None:
        values.append(uname().nodename)
    where = _probe._cwd_getcwd() or _probe._cwd_proc() or _probe._cwd_pwd() or ""
    for path in (env.get("HOME", ""), where, str(getattr(sys, "executable", "") or "")):
        owner = home_owner(path)
        if owner:
            values.append(owner)
    if where:  # the owner of the git remote (a fork's): read from the config, no git child
        from . import _git

        repo = _git.find(where)
        remote = None if repo is None else _git._remote(repo, [])
        values.extend(_remote_names(remote) if remote else ())
    if _short_of_files():
        return None
    return [value for value in values if value]


def _short_of_files() -> bool:
    """Whether opening a file fails for want of file descriptors or memory (a missing or
    forbidden ``/dev/null``, in a bare chroot or sandbox, is no shortage)."""
    from ._proc import SHORTAGES, open_file

    try:
        open_file(os.devnull).close()
    except OSError as e:
        return e.errno in SHORTAGES
    return False


def canonical(values: Iterable[str]) -> Dict[str, str]:
    """The names of identifying ``values`` (:func:`names_in`) worth looking for, by their
    lowercase form: at least 3 characters, not a number alone (a uid: too often a number of
    something else), not generic, not hidden already."""
    found: Dict[str, str] = {}
    for name in (name for value in values for name in names_in(value)):
        lower = name.lower()
        if (
            len(name) >= 3
            and not name.isdigit()
            and lower not in _GENERIC
            and not lower.startswith("anon:")
        ):
            found.setdefault(lower, name)
    return found


def _scrub_pattern(names: Dict[str, str]) -> _Pattern:
    """One expression for the names (whole: no letter, or digit for a digit, next to either
    end), GPU and MIG UUIDs (whole, prefixes of at least 8 digits, AMD's ``GPU-`` and 16
    digits), and IPv4 and IPv6 addresses; compiled only in anonymous records.

    Each alternative starts with a character, and checks what comes before that character
    after it (``a(?<![^\\W\\d_].)lice``, not ``(?<![^\\W\\d_])alice``): a position whose
    character starts none of them is then passed over quickly, 2 to 3 times less CPU on 128 KiB
    of text (23 ms for ``a`` repeated, 8 ms for ``1.1.1.1 ``, Python 3.11).
    """
    import re

    def bounded(name: str) -> str:
        before = r"(?<!\d.)" if name[0].isdigit() else r"(?<![^\W\d_].)"
        after = r"(?!\d)" if name[-1].isdigit() else r"(?![^\W\d_])"
        return re.escape(name[0]) + before + re.escape(name[1:]) + after

    # names first, longest first: a host name holding a GPU UUID or an address is hidden whole;
    # a group each, so that the stand-in is the name's whatever the letter case of the match
    ordered = sorted(names, key=len, reverse=True)
    alternatives = [f"(?P<n{i}>{bounded(n)})" for i, n in enumerate(ordered)]
    alternatives += [
        # a whole UUID, a prefix of one (CUDA takes any unique prefix), or AMD's 16 digits
        # (what follows is not looked at: GPU-<id>_0.log and GPU-8d8b1c2ez lose the digits)
        r"(?P<gpu>[GM](?<!\w.)(?:PU|IG)-[0-9A-F]{8}(?:-?[0-9A-F])*)",
        r"(?P<ip>\d(?<![\w.]\d)\d{0,2}\.(?:\d{1,3}\.){2}\d{1,3}(?![\w.]|\.\d))",
    ]
    # IPv6: hex groups with at least two colons (checked by ipaddress: 12:30:45 is none)
    alternatives.append(
        r"(?P<ip6>[0-9A-F:](?<![\w:.][0-9A-F:])(?:(?<=:)|[0-9A-F]{0,3})"
        r"(?::[0-9A-F]{0,4}){2,7}(?:%[\w.-]+)?(?![\w:]|\.\d))"
    )
    return _Pattern(
        re.compile("|".join(alternatives), re.IGNORECASE),
        {f"n{i}": names[n] for i, n in enumerate(ordered)},
    )


class _Pattern:
    """The compiled scrub expression and the name each of its groups ``n0``, ``n1``... stands
    for."""

    __slots__ = ("names", "sub")

    def __init__(self, compiled: Any, names: Dict[str, str]) -> None:
        self.sub = compiled.sub
        self.names = names


# --- records -------------------------------------------------------------------------------------


def _reasons(reasons: Any, policy: Policy) -> Any:
    if not isinstance(reasons, dict):
        return reasons
    return {
        key: WITHHELD if is_hidden(key) else policy.scrub(text) if isinstance(text, str) else text
        for key, text in reasons.items()
    }


def _remote_names(remote: str) -> List[str]:
    """The owners a git remote names: the folders of its path on a host (``alice`` of
    ``https://github.com/alice/paper.git`` or ``git@github.com:alice/paper.git``), or the owner
    of a home folder in a local path."""
    owner = home_owner(remote)
    if owner:
        return [owner]
    _, sep, rest = remote.partition("://")
    if not sep:  # scp-like: [user@]host:path
        host, colon, rest = remote.partition(":")
        if not colon or "/" in host:
            return []
    else:
        rest = rest.partition("/")[2]
    return [part for part in rest.split("/")[:-1] if part]


def record_names(record: Any, out: List[str]) -> List[str]:
    """The identifying values a record (and the records inside it) holds: user, host, the
    owners of home folders in its paths, of its git remote, and the values of the variables
    that name a user or host (:data:`_NAME_VARIABLES`)."""
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        kind = type(record).__name__
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            record_names(value, out)
        elif isinstance(value, list):
            for item in value:
                if dataclasses.is_dataclass(item) and not isinstance(item, type):
                    record_names(item, out)
        elif kind == "PlatformMetadata" and f.name in ("user", "host") and value:
            out.append(str(value))
        elif kind == "GitMetadata" and f.name == "remote" and isinstance(value, str):
            out.extend(_remote_names(value))
        elif kind == "JobMetadata" and f.name == "id" and record.system == "pbs":
            out.append(str(value).partition(".")[2])  # PBS ids name their server
        elif f.name == "variables" and isinstance(value, dict):
            for name, text in value.items():
                if not isinstance(text, str):
                    continue
                if name in _NAME_VARIABLES:
                    out.append(text)
                out.extend(o for o in map(home_owner, text.split(os.pathsep)) if o)
        elif kind == "EnvironmentMetadata" and f.name in ("root", "executable", "command"):
            text = str(value)
            out.extend(o for o in map(home_owner, text.split()) if o)
    return out


def apply(record: Any, policy: Policy) -> bool:
    """Hide, in place, the fields of ``record`` (a deep copy) and of the records inside it;
    whether anything changed (compared field by field: never ``config`` or ``metadata``, whose
    values may not compare, numpy arrays say)."""
    changed = False
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        name = f.name
        new: Any = value
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            if name == "job":  # any job record: its url dropped, id and name scrubbed
                names = {g.name for g in dataclasses.fields(value)}
                if "url" in names and getattr(value, "url") is not None:  # noqa: B009
                    setattr(value, "url", None)  # noqa: B010
                    changed = True
                for text in ("id", "name"):
                    old = getattr(value, text) if text in names else None
                    if isinstance(old, str):
                        scrubbed = policy.scrub(old)
                        changed = changed or scrubbed != old
                        setattr(value, text, scrubbed)
            changed = apply(value, policy) or changed
            continue
        if value is None:
            continue
        kind = type(record).__name__
        if (kind, name) in (
            ("PlatformMetadata", "user"),
            ("PlatformMetadata", "host"),
            ("GitMetadata", "remote"),
            ("GpuMetadata", "uuid"),
        ):
            new = policy.hide(str(value))
        elif (kind, name) == ("GitMetadata", "branch"):
            new = policy.scrub(value) if isinstance(value, str) else value
        elif kind == "EnvironmentMetadata":
            if name == "root":
                new = Path(policy.hide(str(value)))
            elif name == "executable":
                new = Path(shorten(policy.scrub(str(value))))
            elif name == "command" and isinstance(value, str):
                new = shorten_command(policy.scrub(value))
            elif name == "variables" and isinstance(value, dict):
                new = dict(
                    policy.variable(k, v) if isinstance(v, str) else (policy.scrub(k), v)
                    for k, v in value.items()
                )
        elif name == "gpus" and isinstance(value, list):
            for gpu in value:
                if dataclasses.is_dataclass(gpu) and not isinstance(gpu, type):
                    changed = apply(gpu, policy) or changed
        elif kind == "StepInfo" and name == "error":
            new = shorten_word(policy.scrub(value)) if isinstance(value, str) else value
        if name == "fallbacks":
            new = _reasons(value, policy)
        if new is not value:
            changed = changed or new != value
            setattr(record, name, new)
    if type(record).__name__ == "EnvironmentMetadata" and hasattr(record, "privacy"):
        changed = changed or record.privacy != ANONYMOUS
        record.privacy = ANONYMOUS
    return changed
