"""The git checkout around the working directory, read from its ``.git`` files.

No git binary and no subprocess is needed for ``commit``, ``remote`` and ``branch``:

- The repository is found as git finds it: walking up from the working directory to the first
  folder with a ``.git`` folder or ``.git`` file (``gitdir: <path>``, as in worktrees and
  submodules; a ``commondir`` file there points at the shared repository), or that is itself a
  bare repository. The walk stops at a ``$GIT_CEILING_DIRECTORIES`` entry and, unless
  ``$GIT_DISCOVERY_ACROSS_FILESYSTEM`` is true, at a file-system boundary.
- ``commit`` is ``HEAD`` resolved: a detached hash, or a symbolic ref (``ref: refs/heads/x``,
  followed through symbolic refs) read from its loose file, else from ``packed-refs``; ``None``
  on an unborn branch (a repository with no commits).
- ``branch`` is the checked-out branch (``x`` for ``refs/heads/x``, the full name of any other
  ref), kept on an unborn branch, ``None`` when ``HEAD`` is detached.
- ``remote`` is ``remote.origin.url`` from the repository's ``config`` (and the files its
  ``[include]`` sections name), else the URL of the first remote there, else ``None``; user
  names and passwords are removed by :func:`tango_stepinfo.redact.redact_url`. The URL is the
  configured one: ``url.<base>.insteadOf`` rewriting and remotes defined in the user's or the
  system's config are not applied.
- ``dirty`` says whether tracked files differ from ``HEAD``, and ``diff`` is the SHA-256 of the
  output of ``git diff`` with :data:`DIFF_OPTIONS` against the commit, hashed chunk by chunk;
  ``dirty`` is whether that output is empty (a change undone in the working tree is clean).
  When the index looks fresh, that ``git diff`` is the only child (``GIT_TERMINAL_PROMPT=0``,
  a 2 s timeout); otherwise ``git status --porcelain --untracked-files=no`` runs first and
  ``git diff`` only when it found changes (see :func:`_command`). Only when a ``git`` binary is
  on ``$PATH``, and at most once per repository and commit in a process (a child that could
  not be started for a passing shortage, ``EMFILE`` or ``EAGAIN``, is started again by the next
  record). Both ``None`` when there is no binary, git fails or times out (the reason is noted
  as ``git.dirty`` and ``git.diff``), or ``TANGO_STEPINFO_GIT_DIRTY`` is
  ``0``/``false``/``no``/``off``; ``diff`` is ``None`` in a repository with no commits
  (``git status`` alone answers there).
- Every child runs without the variables that point git at one repository's files
  (``GIT_DIR``, ``GIT_INDEX_FILE``, ``GIT_OBJECT_DIRECTORY``...; see :data:`_LOCAL_ENV`), as git
  runs a command in a submodule: a git hook sets them for its own repository.
- Every child runs as ``git -C <worktree>``, looking no higher (``GIT_CEILING_DIRECTORIES``),
  so that git applies its ``safe.directory`` check (a repository of another user gets ``dirty``
  and ``diff`` ``None``); ``git diff`` pins to git's defaults the settings that change its
  output (:data:`_PINNED`), so that the same edits hash alike whatever the user's git config.
- Every child runs with ``GIT_OPTIONAL_LOCKS=0`` (it never takes ``index.lock``), except the
  ``git status`` run when the index looks stale, as in a copied checkout or a fresh clone
  (:func:`_index_is_stale`): it runs as a plain ``git status`` and refreshes the index under
  git's own lock, once, unless ``TANGO_STEPINFO_GIT_REFRESH`` is off. ``git diff`` never writes
  the index.

When ``HEAD`` cannot be read or is corrupt, ``commit`` (and ``branch``) are ``None`` and the
reason is noted as ``git.commit`` (and ``git.branch``); an unborn branch notes nothing. When a
file of the repository cannot be opened because the process lacks file descriptors or memory
(``EMFILE``, ``ENFILE``, ``ENOMEM``: a process that leaked its files), whether there is a
repository is unknown: ``git`` is ``None``, the reason noted as ``git``, and nothing read is
kept, so the next record reads the repository again.

Not handled (each gives ``commit``/``branch`` ``None`` or skips the feature, logged at DEBUG):
the reftable ref format, ``core.worktree``, ``$GIT_DIR`` (ignored, as Tango ignores it) and
``[includeIf]`` sections.

Caching: the repository found for a working directory is remembered until the working
directory changes; ``commit``, ``branch`` and ``remote`` are re-read only when the ``stat`` of a
file they were read from (``HEAD``, the ref, ``packed-refs``, ``config``) changed, so each
record costs a few ``stat`` calls. The first probe of a process starts the check's first child
(``git diff`` or ``git status``) without waiting for it (:func:`prefetch`), so that it runs
while the other fields are probed; the git probe then reads its answer. :func:`clear` drops it all.
"""

from __future__ import annotations

import _thread
import os
import stat
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from . import _fallbacks, _proc, redact
from ._proc import SHORTAGES, debug, readable, run, sig, unchanged, which
from ._proc import collect as _collect
from ._proc import spawn as _spawn

if TYPE_CHECKING:
    # Type aliases for the checker only: subscripting typing for these five cost 0.2 to 0.3 ms
    # of the first record (3.11, per-statement timing of the module's import).
    from ._proc import Deps, Sig

    GitFacts = Tuple[Optional[str], Optional[str], Optional[str], Optional[bool], Optional[str]]
    """``(commit, remote, branch, dirty, diff)``, the fields of ``GitMetadata`` in order."""

    Key = Tuple[str, Optional[str]]  # (gitdir, commit)
    Tree = Tuple[Optional[bool], Optional[str], Optional[str]]
    """``(dirty, diff, reason)``: the answer for one commit; ``reason`` says why both are
    ``None``."""

    Command = Tuple[str, List[str], Dict[str, str], float]
    """``(what, argv, env, timeout)`` of the first child of a check: ``what`` is ``status`` or
    ``diff``."""

__all__ = [
    "Repo",
    "clear",
    "facts",
    "find",
    "parse_config",
    "prefetch",
    "read",
    "reap_pending",
]

GIT_TIMEOUT = 2.0
"""Seconds ``git diff`` or ``git status`` may take before it is killed and ``dirty`` recorded as
``None``."""

REFRESH_TIMEOUT = 10.0
"""Seconds a ``git status`` refreshing a stale index may take: once per copied checkout, and
stopping it would leave the index stale for every later process (0.6 s at 100,000 files on an
idle 2-core machine, several seconds when it is busy)."""

_PER_WORKTREE = ("refs/bisect/", "refs/worktree/", "refs/rewritten/")


class Repo:
    """Where a repository's files are.

    :ivar gitdir: the folder holding ``HEAD`` (``.git``, or ``.git/worktrees/<name>``).
    :ivar commondir: the folder holding ``refs``, ``packed-refs`` and ``config``.
    :ivar worktree: the top of the checkout, ``None`` for a bare repository.
    """

    __slots__ = ("commondir", "gitdir", "worktree")

    def __init__(self, gitdir: str, commondir: str, worktree: Optional[str]) -> None:
        self.gitdir = gitdir
        self.commondir = commondir
        self.worktree = worktree

    def __repr__(self) -> str:
        return f"Repo({self.gitdir!r}, {self.commondir!r}, {self.worktree!r})"


# --- finding the repository ----------------------------------------------------------------------


_short: Optional[str] = None
"""The problem when a file of the repository could not be opened since :func:`_current` began,
for want of file descriptors or memory (:data:`._proc.SHORTAGES`); ``None`` otherwise."""


def _read_text(path: str) -> Optional[str]:
    """The text of the regular file ``path``; ``None`` when it is missing, unreadable or not a
    regular file. Opened without blocking and checked before it is read: a FIFO (a config
    include naming one, ``/dev/stdin``) would wait for a writer forever, ``/dev/zero`` never end.

    Read unbuffered (the size ``fstat`` gave, then until the end) and decoded as
    ``open(path, encoding="utf-8", errors="surrogateescape").read()`` does, line ends included
    (``\\r\\n`` and ``\\r`` become ``\\n``): a text file object costs five more system calls
    and about 14 us a file, and the first record reads three to five (3.11).
    """
    global _short
    try:
        f, st = _proc.open_regular(path)
        with f:
            chunks = [f.read(st.st_size + 1)]
            while chunks[-1]:  # the file may have grown since: read to its end
                chunks.append(f.read(65536))
    except _proc.NotARegularFile:
        debug("%s is not a regular file, not read", path)
        return None
    except OSError as e:
        if e.errno in SHORTAGES:  # EMFILE fails even the open of a missing file
            _short = e.strerror or type(e).__name__
        return None
    except ValueError:  # a NUL byte in a path read from a file
        return None
    text = b"".join(chunks).decode("utf-8", "surrogateescape")
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def _is_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def _is_gitdir(path: str) -> bool:
    """Whether ``path`` looks like a git directory, as git checks it (HEAD, objects, refs)."""
    if not os.path.isfile(os.path.join(path, "HEAD")):
        return False
    common = _commondir(path)
    return _is_dir(os.path.join(common, "objects")) and _is_dir(os.path.join(common, "refs"))


def _commondir(gitdir: str) -> str:
    text = _read_text(os.path.join(gitdir, "commondir"))
    if not text or not text.strip():
        return gitdir
    return os.path.normpath(os.path.join(gitdir, text.strip()))


def _gitfile(path: str) -> Optional[str]:
    """The git directory a ``.git`` file points at, or ``None`` if it is not valid."""
    text = _read_text(path)
    if text is None or not text.startswith("gitdir:"):
        debug("%s is not a valid gitfile", path)
        return None
    target = os.path.join(os.path.dirname(path), text[len("gitdir:") :].strip())
    target = os.path.normpath(target)
    if not _is_gitdir(target):
        debug("%s points at %s, which is not a git directory", path, target)
        return None
    return target


def _ceilings() -> List[str]:
    value = os.environ.get("GIT_CEILING_DIRECTORIES", "")
    return [os.path.normpath(p) for p in value.split(os.pathsep) if os.path.isabs(p)]


def find(start: str) -> Optional[Repo]:
    """Find the repository around ``start`` as git does; ``None`` when there is none."""
    if not os.path.isabs(start):
        debug("the working directory is unknown, so is the git repository")
        return None
    ceilings = _ceilings()
    across = os.environ.get("GIT_DISCOVERY_ACROSS_FILESYSTEM", "").lower() in (
        "1",
        "true",
        "yes",
        "on",
    )
    here = os.path.abspath(start)
    try:
        device = os.stat(here).st_dev
    except (OSError, ValueError):
        device = None
    while True:
        dotgit = os.path.join(here, ".git")
        try:
            st = os.stat(dotgit)
        except (OSError, ValueError):
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode) and _is_gitdir(dotgit):
            return Repo(dotgit, _commondir(dotgit), here)
        if st is not None and stat.S_ISREG(st.st_mode):
            gitdir = _gitfile(dotgit)
            return None if gitdir is None else Repo(gitdir, _commondir(gitdir), here)
        if _is_gitdir(here):
            return Repo(here, _commondir(here), None)  # a bare repository, or inside .git
        parent = os.path.dirname(here)
        if parent == here or parent in ceilings:
            return None
        if not across and device is not None:
            try:
                if os.stat(parent).st_dev != device:
                    return None
            except (OSError, ValueError):
                return None
        here = parent


# --- reading HEAD, refs and config ---------------------------------------------------------------


def _is_hash(text: str) -> bool:
    return len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text)


def _packed_ref(commondir: str, ref: str) -> Optional[str]:
    text = _read_text(os.path.join(commondir, "packed-refs"))
    if text is None:
        return None
    for line in text.splitlines():
        if not line or line[0] in "#^":
            continue
        value, _, name = line.partition(" ")
        if name.strip() == ref:
            return value.strip()
    return None


def _resolve(
    repo: Repo, deps: List[Tuple[str, Sig]]
) -> Tuple[Optional[str], Optional[str], Optional[str]]:
    """``(commit, branch, reason)`` of ``HEAD``; every file consulted is added to ``deps``.

    ``reason`` says why the commit (and the branch, when it is ``None`` too) could not be read:
    an unreadable or corrupt ``HEAD`` (a crash can leave it empty or zero-filled), a ref
    holding neither a hash nor a ref, the reftable format. ``None`` when they were read, and on
    an unborn branch, whose commit does not exist yet.
    """
    head_path = os.path.join(repo.gitdir, "HEAD")
    deps.append((head_path, sig(head_path)))
    text = _read_text(head_path)
    if text is None:
        debug("cannot read %s", head_path)
        return None, None, "cannot read HEAD; recorded commit and branch as None"
    text = text.strip()
    if not text.startswith("ref:"):
        if _is_hash(text):
            return text, None, None  # detached
        debug("%s holds neither a hash nor a ref", head_path)
        return None, None, "HEAD holds neither a hash nor a ref; recorded commit and branch as None"
    ref = text[len("ref:") :].strip()
    branch = ref[len("refs/heads/") :] if ref.startswith("refs/heads/") else ref
    if ref == "refs/heads/.invalid":
        debug("%s uses the reftable format, which is not read", repo.commondir)
        return None, None, "the reftable ref format is not read; recorded commit and branch as None"
    for _ in range(10):  # a ref may itself be symbolic
        base = repo.gitdir if ref.startswith(_PER_WORKTREE) else repo.commondir
        loose = os.path.join(base, *ref.split("/"))
        loose_sig = sig(loose)
        deps.append((loose, loose_sig))
        value = _read_text(loose) if loose_sig is not None else None
        if value is None:
            packed = os.path.join(repo.commondir, "packed-refs")
            deps.append((packed, sig(packed)))
            value = _packed_ref(repo.commondir, ref)
            if value is None:
                return None, branch, None  # an unborn branch: no commits yet
        value = value.strip()
        if value.startswith("ref:"):
            ref = value[len("ref:") :].strip()
            continue
        if _is_hash(value):
            return value, branch, None
        debug("%s holds neither a hash nor a ref", loose)
        return None, branch, f"{ref} holds neither a hash nor a ref; recorded commit as None"
    debug("%s: symbolic refs nested too deeply", head_path)
    return None, branch, "symbolic refs nested more than 10 deep; recorded commit as None"


def _config_value(text: str, i: int) -> Tuple[str, int]:
    """Parse a config value starting at ``text[i]``; return it and the index after its line."""
    out: List[str] = []
    spaces = 0
    quoted = False
    n = len(text)
    while i < n:
        c = text[i]
        i += 1
        if c == "\n":
            if quoted:
                break  # git rejects this; keep what was read
            break
        if not quoted and c in ";#":
            while i < n and text[i] != "\n":
                i += 1
            break
        if not quoted and c in " \t\r":
            if out:
                spaces += 1
            continue
        if spaces:
            out.append(" " * spaces)
            spaces = 0
        if c == '"':
            quoted = not quoted
        elif c == "\\" and i < n:
            e = text[i]
            i += 1
            if e == "\n":
                continue  # line continuation
            if e == "\r" and i < n and text[i] == "\n":
                i += 1
                continue
            out.append({"n": "\n", "t": "\t", "b": "\b"}.get(e, e))
        else:
            out.append(c)
    return "".join(out), i


def _section(header: str) -> str:
    """``remote.origin`` for ``remote "origin"``, ``remote.old`` for ``remote.Old``."""
    name, _, sub = header.strip().partition(" ")
    sub = sub.strip()
    if sub.startswith('"') and sub.endswith('"') and len(sub) >= 2:
        sub = sub[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        return f"{name.lower()}.{sub}"
    if "." in name and not sub:  # the deprecated [section.subsection]
        head, _, tail = name.partition(".")
        return f"{head.lower()}.{tail.lower()}"
    return name.lower()


def parse_config(text: str) -> List[Tuple[str, str, str]]:
    """The entries of a git config file as ``(section, key, value)``, in file order.

    ``section`` is the lower-cased section name, then ``.`` and the subsection as written when
    there is one (``remote.origin``); ``key`` is lower-cased. A key without ``=`` has the value
    ``"true"``. Malformed lines are skipped.
    """
    entries: List[Tuple[str, str, str]] = []
    section = ""
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t\r\n":
            i += 1
        if i >= n:
            break
        c = text[i]
        if c in ";#":
            i = text.find("\n", i)
            i = n if i < 0 else i + 1
            continue
        if c == "[":
            end = text.find("]", i)
            line_end = text.find("\n", i)
            if end < 0 or (0 <= line_end < end):
                i = n if line_end < 0 else line_end + 1
                continue
            section = _section(text[i + 1 : end])
            i = end + 1
            continue
        j = i
        while j < n and (text[j].isalnum() or text[j] == "-"):
            j += 1
        key = text[i:j].lower()
        k = j
        while k < n and text[k] in " \t":
            k += 1
        if not key:
            nl = text.find("\n", i)
            i = n if nl < 0 else nl + 1
            continue
        if k < n and text[k] == "=":
            value, i = _config_value(text, k + 1)
        else:
            nl = text.find("\n", k)
            i = n if nl < 0 else nl + 1
            value = "true"
        entries.append((section, key, value))
    return entries


def _read_config(path: str, deps: List[Tuple[str, Sig]], depth: int = 0) -> List[Tuple[str, str]]:
    """``(remote name, url)`` pairs of ``path`` and its includes, in order; adds to ``deps``."""
    path_sig = sig(path)
    deps.append((path, path_sig))
    text = _read_text(path) if path_sig is not None else None
    if text is None:
        return []
    remotes: List[Tuple[str, str]] = []
    for section, key, value in parse_config(text):
        if section.startswith("remote.") and key == "url":
            remotes.append((section[len("remote.") :], value))
        elif section == "include" and key == "path" and depth < 10:
            try:
                target = os.path.expanduser(value)
            except ValueError as e:  # a NUL byte in ~user: pwd.getpwnam refuses it
                debug("%s: skipping the include %r: %s", path, value, e)
                continue
            if not os.path.isabs(target):
                target = os.path.join(os.path.dirname(path), target)
            remotes.extend(_read_config(target, deps, depth + 1))
        elif section.startswith("includeif.") and depth == 0:
            debug("%s: [includeIf] sections are not read", path)
    return remotes


def _remote(repo: Repo, deps: List[Tuple[str, Sig]]) -> Optional[str]:
    remotes = _read_config(os.path.join(repo.commondir, "config"), deps)
    if not remotes:
        return None
    url = dict(reversed(remotes)).get("origin", remotes[0][1])  # first url of each remote
    return redact.redact_url(url)


def read(
    repo: Repo,
) -> Tuple[Optional[str], Optional[str], Optional[str], Deps, Optional[str]]:
    """Read ``(commit, remote, branch)`` from the files of ``repo``, then the files' ``stat``
    and why the commit could not be read (see :func:`_resolve`; ``None`` when it was)."""
    deps: List[Tuple[str, Sig]] = []
    commit, branch, reason = _resolve(repo, deps)
    remote = _remote(repo, deps)
    return commit, remote, branch, tuple(deps), reason


# --- dirty and diff ------------------------------------------------------------------------------

DIFF_OPTIONS = (
    "--binary",
    "--no-color",
    "--no-ext-diff",
    "--no-textconv",
    "--no-renames",
    "--src-prefix=a/",
    "--dst-prefix=b/",
)
"""The options of the ``git diff`` whose output ``GitMetadata.diff`` hashes (part of the format)."""

_INDEX_SAMPLE = 16  # index entries compared with their files to tell a copied checkout


def _off(name: str) -> bool:
    return os.environ.get(name, "1").strip().lower() in ("0", "false", "no", "off")


def _dirty_enabled() -> bool:
    return not _off("TANGO_STEPINFO_GIT_DIRTY")


def _varint(data: bytes, pos: int) -> Tuple[int, int]:
    """Git's offset varint (index version 4 path compression): ``(value, position after it)``."""
    byte = data[pos]
    value = byte & 0x7F
    while byte & 0x80:
        pos += 1
        byte = data[pos]
        value = ((value + 1) << 7) | (byte & 0x7F)
    return value, pos + 1


def _index_is_stale(repo: Repo, commit: str) -> bool:
    """Whether most of the first index entries disagree with their files' ``stat``, or are racy.

    What a checkout copied with ``cp -a``, a Docker ``COPY`` or a CI cache restore looks like:
    every file has a new inode and change time, so git re-reads every file in every process
    until the index is refreshed. A fresh clone of a small repository looks alike to git: its
    files were written in the same second as the index, so git cannot trust their ``stat``
    ("racily clean" entries, whose ``mtime`` is not older than the index) and re-hashes them in
    every process, until a locked ``git status`` rewrites the index a second later (7 ms
    instead of 1.3 ms per ``git status`` for 273 files on the 2-core development machine). An
    entry counts as racy only while that rewrite would cure it: its ``mtime`` is at least the
    index's, in seconds, and older than the current second (a file dated in the future stays
    racy whatever git writes, and is left alone).

    Reads the start of the index (format versions 2 to 4) and ``lstat``s up to 16 files: 0.2 to
    0.3 ms on the busy 2-core development machine (load 7), once per commit and process.
    ``False`` when anything is unexpected. The big-endian fields are read with
    :meth:`int.from_bytes`: importing :mod:`struct` cost 0.4 ms of the first record (3.11).
    """
    worktree = repo.worktree
    if worktree is None:
        return False
    path = os.path.join(repo.gitdir, "index")  # not $GIT_INDEX_FILE: see _LOCAL_ENV
    try:
        with open(path, "rb") as f:
            data = f.read(16384)  # 16 entries, paths up to 1 KB
            written = int(os.fstat(f.fileno()).st_mtime)  # git's racy test compares seconds
        now = int(time.time())
        if data[:4] != b"DIRC" or len(data) < 12:
            return False
        version, count = _be(data, 4), _be(data, 8)
        if version not in (2, 3, 4):
            return False
        fixed = 40 + len(commit) // 2 + 2  # stat fields, object name, flags
        offset, name, checked, stale = 12, b"", 0, 0
        while checked < min(count, _INDEX_SAMPLE) and offset + fixed <= len(data):
            ctime, mtime, ino = _be(data, offset), _be(data, offset + 8), _be(data, offset + 20)
            mode, size = _be(data, offset + 24), _be(data, offset + 36)
            flags = int.from_bytes(data[offset + fixed - 2 : offset + fixed], "big")
            pos = offset + fixed + (2 if version >= 3 and flags & 0x4000 else 0)
            if version == 4:
                strip, pos = _varint(data, pos)
            end = data.find(b"\0", pos)
            if end < 0:
                break  # a path past what was read: judge by the entries before it
            if version == 4:
                name = name[: len(name) - strip] + data[pos:end]
                offset = end + 1
            else:
                name = data[pos:end]
                offset += (end - offset + 8) & ~7  # padded with 1 to 8 NULs
            if mode >> 12 not in (0o10, 0o12):  # regular files and links, not submodules
                continue
            checked += 1
            try:
                st = os.lstat(os.path.join(worktree, os.fsdecode(name)))
            except OSError:
                continue  # deleted: a change, not stale data
            mask = 0xFFFFFFFF
            if (int(st.st_ctime) & mask, int(st.st_mtime) & mask, st.st_ino & mask) != (
                ctime,
                mtime,
                ino,
            ) or st.st_size & mask != size:
                stale += 1
            elif written <= mtime < now:
                stale += 1  # racily clean: re-hashed by every git status until refreshed
    except (OSError, ValueError, IndexError):
        return False
    return checked > 0 and 2 * stale >= checked


def _be(data: bytes, offset: int) -> int:
    """The big-endian 32-bit unsigned integer at ``offset`` of ``data`` (git's index fields)."""
    if offset + 4 > len(data):
        raise ValueError("the index ends inside an entry")
    return int.from_bytes(data[offset : offset + 4], "big")


_LOCAL_ENV = (
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_CONFIG",
    "GIT_OBJECT_DIRECTORY",
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_IMPLICIT_WORK_TREE",
    "GIT_GRAFT_FILE",
    "GIT_INDEX_FILE",
    "GIT_NO_REPLACE_OBJECTS",
    "GIT_REPLACE_REF_BASE",
    "GIT_PREFIX",
    "GIT_INTERNAL_SUPER_PREFIX",
    "GIT_SHALLOW_FILE",
    "GIT_COMMON_DIR",
)
"""The variables that ``git rev-parse --local-env-vars`` lists (git 2.39) but the two carrying
``git -c`` settings: what git itself removes before it runs a command in another repository (a
submodule). The repository of a record is the one found from the working directory; these,
when set (a git hook sets ``GIT_DIR`` and ``GIT_INDEX_FILE`` for its own repository), belong to
another, and would make git read that one's index or objects: a clean checkout recorded as
dirty, with the hash of a diff against another repository's index."""


def _git_env(repo: Repo, refresh: bool) -> Dict[str, str]:
    """The environment of a git child run as ``git -C <worktree>`` (see :func:`_diff_argv`).

    ``GIT_CEILING_DIRECTORIES`` is the folder holding the checkout: a ``.git`` git finds
    invalid (a corrupt ``HEAD``) would make it look further up, and answer for a repository
    around the checkout (a home folder kept in git) with the commit of this one.
    """
    env = dict(os.environ)
    for name in _LOCAL_ENV:
        env.pop(name, None)
    parent = os.path.dirname(str(repo.worktree))
    if parent != repo.worktree:
        env["GIT_CEILING_DIRECTORIES"] = parent
    env.pop("GIT_DIFF_OPTS", None)  # --unified=N: overrides diff.context (see _PINNED)
    env["GIT_TERMINAL_PROMPT"] = "0"
    if not refresh:
        env["GIT_OPTIONAL_LOCKS"] = "0"
    return env


def _command(repo: Repo, commit: Optional[str], git: str) -> Command:
    """The first (usually only) child of the check of ``repo``, run as the program ``git`` (a
    full path, or the bare name for the C library to look for on ``$PATH``).

    When the index looks fresh (the usual case) that child is ``git diff`` itself
    (:func:`_diff_argv`): its output is both answers (``dirty`` is whether it is empty), so a
    dirty tree costs one child, not two; in a clean tree it costs what ``git status`` costs
    (7.1 and 7.2 ms in a 273-file clone, 103 and 102 ms at best at 100,000 files). Otherwise
    ``git status`` runs first, and ``git diff`` only when it found changes: in a repository with
    no commits (nothing to diff against), and when the index looks stale
    (:func:`_index_is_stale`), where ``git diff`` would compare every stale file with its
    blob (4.4 s against 1.1 s for ``git status`` in a ``cp -a`` copy at 100,000 files). That
    ``git status`` runs with ``GIT_OPTIONAL_LOCKS=0``, so that it never takes ``index.lock``
    from under the user's own git commands, except when the index looks stale and
    ``TANGO_STEPINFO_GIT_REFRESH`` is not ``0``: then it runs as a plain ``git status`` does,
    refreshing the index under git's own lock, once, so that later processes find it fresh.
    """
    stale = commit is not None and _index_is_stale(repo, commit)
    if commit is not None and not stale:
        return "diff", _diff_argv(git, repo, commit), _git_env(repo, False), GIT_TIMEOUT
    refresh = stale and not _off("TANGO_STEPINFO_GIT_REFRESH")
    if refresh:
        debug(
            "the index of %s looks stale (a copied checkout?): git status refreshes it",
            repo.worktree,
        )
    argv = [
        *_base_argv(git, repo),
        "-c",
        "diff.ignoreSubmodules=none",  # as git diff runs (_PINNED): a hidden change is no change
        "status",
        "--porcelain",
        "--untracked-files=no",
    ]
    return "status", argv, _git_env(repo, refresh), REFRESH_TIMEOUT if refresh else GIT_TIMEOUT


_NO_GIT: Tree = (None, None, "no git binary on $PATH; recorded dirty and diff as None")


def _failed(what: str, done: Optional[Tuple[int, bytes]], started: float, timeout: float) -> str:
    if done is not None:
        return f"git {what} exited with {done[0]}; recorded dirty and diff as None"
    if time.monotonic() - started >= timeout:
        return f"git {what} timed out after {timeout:g} s; recorded dirty and diff as None"
    return f"git {what} could not be run or read; recorded dirty and diff as None"


def _answer(
    repo: Repo,
    commit: Optional[str],
    done: Optional[Tuple[int, bytes]],
    started: float,
    timeout: float,
) -> Tree:
    """``(dirty, diff, reason)`` from the answer of ``git status``; runs ``git diff`` if dirty."""
    if done is None or done[0] != 0:
        return None, None, _failed("status", done, started, timeout)
    if not done[1].strip():
        return False, None, None
    if commit is None:
        return True, None, None  # files added to a repository with no commits: nothing to diff
    return _diff(repo, commit)


def _base_argv(git: str, repo: Repo) -> List[str]:
    """How both children of the dirty check start: ``git -C <worktree> --no-replace-objects``
    (not ``--git-dir``; see :func:`_diff_argv`)."""
    return [git, "-C", str(repo.worktree), "--no-replace-objects"]


def _diff_argv(git: str, repo: Repo, commit: str) -> List[str]:
    """The ``git diff`` whose output ``diff`` hashes, against ``commit``.

    Runs with ``GIT_OPTIONAL_LOCKS=0`` and ``diff.autoRefreshIndex=false``: ``git diff`` would
    otherwise rewrite the index under its lock even with ``GIT_OPTIONAL_LOCKS=0`` (git 2.39).
    Files whose stat data alone differ are compared by content and give no output.
    ``diff.relative=false``: a user's ``diff.relative=true`` would limit the diff to the working
    directory, and a step run in a subfolder would miss the changes outside it (a ``-c``, not
    ``--no-relative``, which gits before 2.28 refuse). The commit
    is named by its hash rather than ``HEAD`` (the output is the same), so that the hash
    belongs to the recorded ``commit`` even if ``HEAD`` moves meanwhile.

    Runs as ``git -C <worktree>`` (so does ``git status``), so that git finds the repository
    itself and applies its ``safe.directory`` check: it refuses a repository owned by another
    user ("dubious ownership"), whose config may name commands that ``git diff`` and ``git
    status`` run (a ``filter.<driver>.clean``, a ``core.fsmonitor`` hook). ``--git-dir`` and
    ``--work-tree`` skip that check: a ``/tmp/.git`` planted by another user would run its
    commands as ours. The refusal leaves ``dirty`` and ``diff`` ``None`` (``git diff`` then
    exits with 129, ``git status`` with 128); it looks no higher than the checkout
    (:func:`_git_env`). ``--no-replace-objects``: the diff is against the recorded commit's own
    tree, not that of a commit ``git replace`` put in its place (a local ref clones do not
    fetch). The other settings that change its output are pinned to git's defaults
    (:data:`_PINNED`), and ``GIT_DIFF_OPTS`` is dropped (:func:`_git_env`).
    """
    argv = _base_argv(git, repo)
    for setting in _PINNED:
        argv += ("-c", setting)
    return [*argv, "diff", *DIFF_OPTIONS, "-O" + os.devnull, commit, "--"]


_PINNED = (
    "diff.autoRefreshIndex=false",
    "diff.relative=false",
    "diff.algorithm=default",
    "diff.indentHeuristic=true",
    "diff.context=3",
    "diff.interHunkContext=0",
    "diff.suppressBlankEmpty=false",
    "diff.submodule=short",
    "diff.ignoreSubmodules=none",
    "core.quotePath=true",
    "core.abbrev=auto",
    "core.loosecompression=1",
    "core.fsmonitor=",  # off: empty is false to gits since 2.36, no hook to older ones
)
"""The ``-c`` settings of the ``git diff`` whose output ``diff`` hashes: git's defaults for every
setting that changes what it writes (from any config file, ``GIT_CONFIG_COUNT`` or
``GIT_CONFIG_PARAMETERS``: a ``-c`` comes last and wins), so that two machines hash the same
edits alike. ``core.loosecompression`` sets the zlib level of binary patches (``core.compression``
too, unless it is set; 1 is git's default). ``-O`` with an empty file undoes ``diff.orderFile``
(an empty value is refused). ``diff.ignoreSubmodules=none`` is the default it sets: a
``submodule.<name>.ignore`` of the repository's (``.gitmodules``, its ``config``) still applies.
``core.fsmonitor`` empty: a configured hook command is not run; git then reads the stat data
of every file, as without one. Not pinned: ``diff.<driver>.xfuncname``
and ``.binary`` (files given a ``diff`` attribute; the drivers' names are the user's), the
``text``, ``eol`` and ``filter`` attributes and ``core.autocrlf``/``core.eol`` (the checkout was
written with them: ignoring them would call every converted file changed), ``core.fileMode``
and ``core.symlinks`` (set by ``git init`` for the file system)."""


class _Hasher:
    """The SHA-256 and size of a child's output, fed chunk by chunk (a ``Sink``).

    :mod:`hashlib` is imported at the first chunk: importing it costs 2.6 ms of CPU (it loads
    OpenSSL), which a clean tree, whose ``git diff`` writes nothing, never pays.
    """

    __slots__ = ("digest", "size")

    def __init__(self) -> None:
        self.digest: Any = None
        self.size = 0

    def __call__(self, chunk: bytes) -> None:
        if self.digest is None:
            import hashlib

            self.digest = hashlib.sha256()
        self.digest.update(chunk)
        self.size += len(chunk)

    def answer(self, done: Optional[Tuple[int, bytes]], started: float, timeout: float) -> Tree:
        """``(dirty, diff, reason)`` once ``git diff`` ended (``done``, as :func:`run` gives)."""
        if done is None or done[0] != 0:
            return None, None, _failed("diff", done, started, timeout)
        if self.size == 0:
            return False, None, None  # clean, or staged changes undone in the working tree
        return True, self.digest.hexdigest(), None


def _diff(repo: Repo, commit: str) -> Tree:
    """Hash the output of ``git diff`` against ``commit`` chunk by chunk (:func:`_diff_argv`)."""
    git = which("git")
    if git is None:
        return _NO_GIT
    hasher = _Hasher()
    started = time.monotonic()
    done = run(_diff_argv(git, repo, commit), GIT_TIMEOUT, _git_env(repo, False), hasher)
    return hasher.answer(done, started, GIT_TIMEOUT)


def _status(repo: Repo, commit: Optional[str]) -> Tree:
    """Ask ``git diff`` (or ``git status``, then ``git diff``) how tracked files differ from
    ``HEAD``, waiting for the answer."""
    if repo.worktree is None:
        return None, None, None  # a bare repository has no checkout to compare
    git = which("git")
    if git is None:
        return _NO_GIT
    what, argv, env, timeout = _command(repo, commit, git)
    if what == "diff" and commit is not None:
        return _diff(repo, commit)
    started = time.monotonic()
    return _answer(repo, commit, run(argv, timeout, env), started, timeout)


# --- the cached facts ----------------------------------------------------------------------------

# Reentrant: a signal handler that makes a record while its thread waits for a git child of a
# dirty check (a SIGTERM handler writing a step's last record) checks in turn instead of waiting
# forever for its own thread.
_lock = _thread.RLock()
_found: Optional[Tuple[str, Optional[Repo]]] = None
# (repo, deps, commit, remote, branch, why the commit could not be read)
_state: Optional[Tuple[Repo, Deps, Optional[str], Optional[str], Optional[str], Optional[str]]] = (
    None
)
_dirty: Dict[Key, Tree] = {}
# The first child of a check started ahead of need by prefetch(): key, repo, child, when it
# started, its timeout, and for a git diff the hasher of its output (None for git status).
_pending: Optional[Tuple[Key, Repo, _proc.Child, float, float, Optional[_Hasher]]] = None


def _discard_pending() -> None:
    """Kill and reap the child started ahead of need, if any (the lock is held)."""
    global _pending
    if _pending is not None:
        child = _pending[2]
        _pending = None
        child.stop()


_exit_hooked = False


def _hook_exit() -> None:
    global _exit_hooked
    import atexit

    atexit.register(_discard_at_exit)
    _exit_hooked = True


def _discard_at_exit() -> None:
    """At interpreter exit, stop the child started ahead of need that no record read (an
    interrupted record, then exit): left running, it outlived the process, and a ``git status``
    refreshing a stale index held ``index.lock`` meanwhile (git removes it on ``SIGTERM``).
    Skipped when another thread holds the lock (a daemon thread stopped mid-check). Exit waits
    1 s at most, for a git that neither ends on ``SIGTERM`` nor on ``SIGKILL`` at once (in
    uninterruptible sleep on a hung NFS mount): see :func:`._proc.kill`."""
    if _lock.acquire(blocking=False):
        try:
            _discard_pending()
        finally:
            _lock.release()


def _after_fork() -> None:
    # A child process must not read or reap its parent's git child, and a fork copies a lock
    # held by another thread as held.
    global _lock, _pending
    _lock = _thread.RLock()
    if _pending is not None:
        _pending[2].done()
        _pending = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def clear() -> None:
    """Forget the repository found, the facts read from it and every ``dirty`` answer."""
    global _found, _state
    with _lock:
        _found = None
        _state = None
        _dirty.clear()
        _discard_pending()


def _start_pending(repo: Repo, key: Key) -> None:
    """Start the first child of the check of ``key`` without waiting for it (the lock is held)."""
    global _pending
    if _pending is not None or not hasattr(os, "posix_spawn"):
        return
    if repo.worktree is None:
        _dirty[key] = (None, None, None)  # a bare repository has no checkout to compare
        return
    # git is looked for by the C library in the child where it may (_proc.searchable), not by
    # which() here first: 0.2 ms less CPU for a first record with the check on (3.11). Not found
    # there, no child starts, and the record's own check asks which() (_status): _NO_GIT.
    search = _proc.searchable()
    git = "git" if search else which("git")
    if git is None:
        _dirty[key] = _NO_GIT
        return
    what, argv, env, timeout = _command(repo, key[1], git)
    hasher = _Hasher() if what == "diff" else None
    started = time.monotonic()
    child = _spawn(argv, env, search)
    if child is not None:  # (a signal handler raising before this line: the Child stops it)
        _pending = (key, repo, child, started, timeout, hasher)
        if not _exit_hooked:
            _hook_exit()
    # else: the record's own check (_dirty_for) tries again, and keeps a lasting failure


def reap_pending() -> None:
    """Record the answer of the child started ahead of need, once it has answered.

    Called by every probe of a fact fixed for the process, so that a child no git probe reads
    (a process making only ``PlatformMetadata``) is reaped instead of staying a zombie. Costs a
    ``poll`` of its output while it runs; does nothing when another thread holds the lock.
    """
    pending = _pending
    if pending is None or not _lock.acquire(blocking=False):
        return
    try:
        if _pending is not pending:
            return  # finished by another thread meanwhile
        try:
            ended = readable(pending[2].out.fileno(), 0.0)  # it wrote its answer, or exited
        except (OSError, ValueError):
            ended = True  # _finish_pending reports it
        if ended or time.monotonic() - pending[3] > pending[4]:
            _finish_pending()
    finally:
        _lock.release()


def _finish_pending() -> None:
    """Wait for the child started ahead of need and record its answer (the lock is held)."""
    global _pending
    pending = _pending
    if pending is not None:
        key, repo, child, started, timeout, hasher = pending
        now = time.monotonic()
        left = max(timeout - (now - started), 0.01)
        try:
            waiting = readable(child.out.fileno(), 0.0)
        except (OSError, ValueError):
            waiting = False  # _collect reports it
        if waiting:
            # Output nobody read yet: a child whose output outgrew the pipe (a diff over 64 KiB)
            # has been blocked on it since, waiting for us, not working; its time runs from now.
            started, left = now, timeout
        if _pending is not pending:
            return  # finished meanwhile by a signal handler's record, in this thread
        _pending = None  # _collect owns the child now (an exception meanwhile kills it)
        if hasher is None:
            _dirty[key] = _answer(repo, key[1], _collect("git", child, left), started, timeout)
        else:
            _dirty[key] = hasher.answer(_collect("git", child, left, hasher), started, timeout)


_UNKNOWN: Tree = (None, None, None)


def _dirty_for(repo: Repo, commit: Optional[str], wait: bool = True) -> Tree:
    key = (repo.gitdir, commit)
    try:
        return _dirty[key]
    except KeyError:
        pass
    if not _dirty_enabled():
        return _UNKNOWN  # turned off: a setting, not a fallback
    with _lock:
        if not wait:
            if key not in _dirty:
                _start_pending(repo, key)
            return _UNKNOWN
        _finish_pending()
        if key not in _dirty:
            before = _proc.shortages
            tree = _status(repo, commit)
            if _proc.shortages != before:
                return tree  # a child not started for a passing shortage: the next one asks
            _dirty[key] = tree
        return _dirty[key]


def _current(
    cwd: str,
) -> Optional[Tuple[Repo, Optional[str], Optional[str], Optional[str], Optional[str]]]:
    """``(repo, commit, remote, branch, reason)`` around ``cwd``, from the cache while still
    true; ``reason`` says why the commit could not be read (see :func:`_resolve`).

    ``None`` outside a repository, and when a file could not be opened for want of file
    descriptors or memory (:data:`_short` says why): that is no answer, and none is kept.
    """
    global _found, _state, _short
    _short = None
    found = _found
    if found is None or found[0] != cwd:
        repo = find(cwd)
        if _short is not None:
            return None
        found = _found = (cwd, repo)
        if repo is None:
            _forget_reasons()
    repo = found[1]
    if repo is None:
        return None
    state = _state
    if state is None or state[0] is not repo or not unchanged(state[1]):
        commit, remote, branch, deps, reason = read(repo)
        if _short is not None:
            return None
        if commit is None and branch is None and sig(deps[0][0]) is None:
            # HEAD is gone: the repository was removed or moved; look again next time.
            _found = None
            _forget_reasons()
            return None
        state = _state = (repo, deps, commit, remote, branch, reason)
    return repo, state[2], state[3], state[4], state[5]


_short_noted = False
"""Whether the last :func:`facts` noted a reason under ``git`` (files it could not open)."""


def _forget_reasons() -> None:
    """Drop the reasons of a repository left behind (its failing ``git diff``, its unreadable
    ``HEAD``): they are not those of a record made outside it. Run when the working directory
    is found outside any repository, not for every record there."""
    for key in ("git.commit", "git.branch", "git.dirty", "git.diff"):
        _fallbacks.note(key, None)


def prefetch(cwd: str) -> None:
    """Start the check of the repository around ``cwd`` (:func:`_command`) without waiting.

    Called by the first probe of a process, so that the child runs while the other fields
    are probed; :func:`facts` then reads its answer. Does nothing outside a repository, when the
    answer is known, when the check is turned off, or without :func:`os.posix_spawn`. A child no
    record reads is reaped by the first probe after it ended (:func:`reap_pending`), or killed
    by :func:`clear`.
    """
    current = _current(cwd)
    if current is not None:
        _dirty_for(current[0], current[1], wait=False)


def facts(cwd: str) -> Optional[GitFacts]:
    """``(commit, remote, branch, dirty, diff)`` of the repository around ``cwd``; ``None`` outside.

    Notes why ``dirty`` and ``diff`` are ``None`` when a check failed (``git.dirty``,
    ``git.diff`` in :mod:`._fallbacks`), why ``commit`` (``git.commit``, and ``git.branch``
    when it is ``None`` too) when ``HEAD`` could not be read, and why the whole is ``None``
    (``git``) when the repository's files could not be opened, at every call.
    """
    global _short_noted
    current = _current(cwd)
    short = _short
    if short is not None or _short_noted:  # a flag, not a note per check: the usual case
        _short_noted = short is not None
        _fallbacks.note(
            "git",
            None
            if short is None
            else f"cannot open the repository's files ({short}); recorded git as None",
        )
    if current is None:
        return None
    repo, commit, remote, branch, unread = current
    dirty, diff, reason = _dirty_for(repo, commit)
    _fallbacks.note("git.commit", unread)
    _fallbacks.note("git.branch", unread if branch is None else None)
    _fallbacks.note("git.dirty", reason)
    _fallbacks.note("git.diff", reason)
    return commit, remote, branch, dirty, diff
