"""Probes of the machine and the process, behind the metadata default factories.

Every probe returns a value of its field's type and never raises: a failure falls back as listed
below, and the reason is logged at ``DEBUG`` on the ``tango_stepinfo`` logger. Each probe is a
chain of small functions, ``_a() or _b() or fallback``, each catching only the errors it expects.

============================  ===============================================================
probe                         value, then its fallbacks in order
============================  ===============================================================
:func:`operating_system`      ``platform.platform()`` (computed from ``os.uname()`` on Linux,
                              the same string without importing :mod:`platform`), else
                              ``"unknown"``
:func:`cpu_count`             ``os.cpu_count()``; ``None`` when unknown
:func:`user`                  what ``getpass.getuser()`` returns (``LOGNAME``, ``USER``,
                              ``LNAME``, ``USERNAME``, then the passwd entry of the uid), read
                              without importing :mod:`getpass`; the numeric uid as a string
                              when there is none; ``"unknown"`` without uids
:func:`host`                  ``os.uname().nodename`` (what ``socket.gethostname()`` returns
                              on POSIX), ``socket.gethostname()``, ``platform.node()``, then
                              ``"unknown"``
:func:`python`                ``platform.python_version()`` (parsed from ``sys.version``, the
                              same string); ``sys.version_info`` when ``sys.version`` does
                              not start with its version (replaced by the program)
:func:`executable`            ``sys.executable``; when empty (embedded interpreters) or not
                              a string, the target of ``/proc/self/exe``, else
                              ``Path("python")``
:func:`command`               ``$TANGO_STEPINFO_COMMAND`` when set and not empty, else
                              ``shlex.join(sys.argv)`` (``sys.orig_argv`` under
                              ``python -m``), secrets redacted by
                              :func:`tango_stepinfo.redact.redact_command`; ``""`` when
                              ``sys.argv`` is missing or empty
:func:`root`                  ``os.getcwd()``; when the folder was deleted, the target of
                              ``/proc/self/cwd`` without its `` (deleted)`` mark, then ``$PWD``
                              if absolute, then ``Path(".")``
:func:`packages`              every distribution on ``sys.path`` (see :func:`packages`);
                              ``None`` only when ``sys.path`` is not a list; those in zip
                              archives on it are left out, and that noted
:func:`git`                   see :mod:`tango_stepinfo._git`; ``None`` outside a repository
:func:`cpu_model`             see :mod:`tango_stepinfo._machine`
:func:`cpu_usable`            see :mod:`tango_stepinfo._machine`
:func:`memory`                see :mod:`tango_stepinfo._machine`
:func:`container`             see :mod:`tango_stepinfo._machine`
:func:`gpus`                  see :mod:`tango_stepinfo._gpu`
:func:`implementation`        ``sys.implementation.name``
:func:`job`                   see :mod:`tango_stepinfo._job`
:func:`variables`             the variables ``TANGO_STEPINFO_VARIABLES`` names (see
                              :mod:`._variables`); ``None`` when it is set but empty
:func:`privacy`               ``"anonymous"`` or ``None``; an unknown mode raises
                              :exc:`~tango_stepinfo.errors.InvalidSettingError` (the only
                              probe that raises: a setting is wrong, see :mod:`._privacy`)
============================  ===============================================================

Every probe notes why it fell back with :func:`tango_stepinfo._fallbacks.note` (one line, kept
for the records' ``fallbacks`` fields), and notes ``None`` when it did not.

Caching. Facts fixed for the life of a process (OS string, CPU count, user, host, Python,
executable, and the machine, GPU and job facts) are probed once, exactly once even when many
threads race for them. Facts that can change are re-checked for every record, cheaply: the working
directory (one ``getcwd``; ``root`` and ``git`` follow it), the command line (compared with the
``sys.argv`` it was built from), the package list (re-scanned only when ``sys.path`` or the
``stat`` of one of its folders changed, so a ``pip install`` during the run shows up in later
records) and git (see :mod:`._git`). Staleness bound: these three are checked together, at most
once per :data:`STALE_AFTER` (1 ms) per process, and a probe never returns a value whose check
began more than 1 ms before the probe was called: a ``chdir``, ``pip install`` or commit shows
up in the records made more than 1 ms after it (and at once after :func:`clear_cache` or
``StepInfo.refresh()``, which stay exact). One thread checks at a time (:func:`_recheck`, under
a ``_thread`` lock): the first to find the last check over checks every one of the three asked
for since (about seven system calls, each letting another thread take the GIL), while threads
finding it over meanwhile sleep on the lock, then use its result if it is still within the
bound, else check again; a fact first asked for after a check began is checked alone. (When
each thread checked the facts it found stale itself, 16 threads making records lost a third of
their throughput to GIL handoffs.) The command line and the settings are compared for every
record (no system call).
Every value handed out is immutable or a fresh copy, so
mutating one record never changes another. The first probe of a process (and the first after
:func:`clear_cache`) probes every fixed fact at once: it starts the two child processes a first
record needs, the first git child of the dirty check (``git diff``, or ``git status`` when the
index looks stale or there are no commits; see :mod:`._git`) and ``uname -p``, then probes the
rest while they run. :func:`clear_cache` (public as ``tango_stepinfo.clear_cache()``) drops
every cached fact; ``StepInfo.refresh()`` calls it.

Settings (environment variables): ``TANGO_STEPINFO_GIT_DIRTY=0`` turns off the ``git diff``
and ``git status`` behind ``GitMetadata.dirty`` and ``diff`` (for huge repositories);
``TANGO_STEPINFO_GIT_REFRESH=0`` never lets git refresh a stale index (see :mod:`._git`);
``TANGO_STEPINFO_VARIABLES`` chooses ``EnvironmentMetadata.variables`` (:mod:`._variables`);
``TANGO_STEPINFO_PRIVACY`` and ``TANGO_STEPINFO_PRIVACY_KEY`` make anonymous records
(:mod:`._privacy`): user, host, executable, root, command and the git remote are hidden as they
are probed, so the values seen are never kept. When
``TANGO_STEPINFO_COMMAND`` is set and not empty, it is the recorded command (see
:func:`command`).

Nothing heavy is imported at module import: :mod:`logging`, :mod:`getpass`, :mod:`select`,
:mod:`subprocess`, :mod:`socket` and :mod:`platform` are loaded only by the probe that needs them,
and only on the path that needs them (on Linux, none of :mod:`subprocess`, :mod:`socket`,
:mod:`platform` or :mod:`importlib.metadata` is ever loaded).
"""

from __future__ import annotations

import _thread
import os
import stat
import sys
from pathlib import Path
from time import monotonic
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

from . import _fallbacks, _privacy
from ._proc import (
    SHORTAGES,
    _dropped,
    _reap_dropped,
    debug,
    load,
    open_regular,
    searchable,
    sig,
    unchanged,
    which,
)
from ._proc import collect as _collect
from ._proc import run_subprocess as _run_subprocess
from ._proc import spawn as _spawn

if TYPE_CHECKING:
    from ._git import GitFacts
    from ._proc import Deps

    Package = Tuple[str, str]  # for the checker only: 0.04 ms at import (3.11)

# --- the cache of facts fixed for the process ----------------------------------------------------

_lock = _thread.RLock()  # not threading: importing it costs 0.6 ms at import
# Reentrant, as _recheck_lock below: a signal handler that makes a record while its thread probes
# the fixed facts (a first record, its uname child running) probes them in turn instead of
# waiting forever for its own thread.
_fixed: Dict[str, Any] = {}
_git_module: Any = None  # tango_stepinfo._git, once a probe has needed it


STALE_AFTER = 0.001
"""Seconds during which the last check of the working directory, the package scan and git is
reused (one :func:`time.monotonic` compare per probe; see the module docstring)."""

# The re-checked facts (working directory, package scan, git) are checked together, by one
# thread at a time (see _recheck). _fresh is (valid until, epoch): the facts stamped with that
# epoch were checked from STALE_AFTER before "valid until" on. Each fact is cached as
# (epoch, value); every tuple is replaced whole, so reading them needs no lock.
# Held by the thread re-checking. Reentrant: a signal handler that makes a record while its
# thread is inside a re-check (a SIGTERM handler writing a step's last record) re-checks in
# turn instead of waiting forever for its own thread; the outer check then finishes as before.
_recheck_lock = _thread.RLock()
_fresh: Tuple[float, int] = (0.0, 0)
_cwd_seen: Tuple[int, str] = (-1, "")
_git_seen: Tuple[int, Any] = (-1, None)
_packages_epoch = -1  # the epoch _packages was last checked in
# Whether each fact was asked for since the last check: a check re-checks those only, so that
# git is not re-read (and its dirty check not run) for a process that stopped asking for it.
_used = {"cwd": False, "packages": False, "git": False}


def _after_fork() -> None:
    global _lock, _recheck_lock
    _lock = _thread.RLock()  # another thread may have held it at the fork
    _recheck_lock = _thread.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def _fact(name: str) -> Any:
    """Return the fact ``name``, fixed for the process; the first call probes them all.

    Also reaps the git child of the dirty check started ahead of need (:func:`prefetch_git`) once
    it has ended, so that a process making only :class:`PlatformMetadata` leaves no zombie child
    behind; and a child dropped before it was waited for (:class:`._proc.Child`: a signal
    handler raised while it was handed over), once it has ended.
    """
    if _git_module is not None:
        _git_module.reap_pending()
    if _dropped:
        _reap_dropped()
    try:
        return _fixed[name]
    except KeyError:
        pass
    global _probing
    with _lock:
        if name not in _fixed:
            me = _thread.get_ident()
            if _probing == me:  # a signal handler's record, made while its thread probes
                return _while_probing()[name]
            _probing = me
            # asked before probing: the names to hide may become readable meanwhile, and what
            # was hidden whole for want of files is not worth keeping
            keep = _privacy.settled()
            try:
                facts = _probe_fixed_facts()
            finally:
                _probing = None
            if not keep:
                return facts.get(name)
            _fixed.update(facts)
        return _fixed.get(name)  # the machine facts are left out when their modules cannot load


_probing: Optional[int] = None
"""The thread probing the fixed facts (:func:`_probe_fixed_facts`), while it does."""


def _while_probing() -> Dict[str, Any]:
    """The fixed facts for a record made by a signal handler while its own thread probes them.

    A handler runs in the thread it interrupted, so it cannot wait for that probe (the lock is
    reentrant so that it does not wait forever), and probing again could meet the probe
    modules half imported. Such a record gets the facts that need neither a child process nor
    a module import: the OS string without ``uname -p``'s answer (the same wherever it prints
    ``unknown`` or the machine), and ``None`` for the machine, GPU and job facts. Nothing is
    kept: the next record gets the facts the interrupted probe finds.
    """
    debug("a record made while its own thread probes the fixed facts: machine facts left None")
    parts = _linux_parts()
    facts = _process_facts(_privacy.current())
    facts.update(dict.fromkeys(_MACHINE_FACTS))
    facts["operating_system"] = _operating_system(None if parts is None else _os_linux(parts, None))
    return facts


def _process_facts(policy: Any) -> Dict[str, Any]:
    """The fixed facts that need neither a child process nor a probe module: CPU count, user,
    host, Python, executable and implementation. In anonymous records (``policy``) the user, the
    host and the executable are hidden as they are probed: the values seen are never kept."""
    facts: Dict[str, Any] = {
        "cpu_count": _cpu_count(),
        "user": _user(),
        "host": _host(),
        "python": _python_version(),
        "executable": _executable(),
        "implementation": sys.implementation.name,
    }
    if policy is not None:
        facts["user"], facts["host"] = policy.hide(facts["user"]), policy.hide(facts["host"])
        facts["executable"] = Path(_privacy.shorten(policy.scrub(str(facts["executable"]))))
    return facts


def _cached(name: str) -> Any:
    """The fact ``name`` as :func:`_fact` gives it, without the reaping :func:`_fact` does for
    every call: the newer facts' fields leave that to the record's first fields (each later
    record then pays one dict lookup per field)."""
    try:
        return _fixed[name]
    except KeyError:
        return _fact(name)


def _probe_fixed_facts() -> Dict[str, Any]:
    """Probe every fact fixed for the process, in one place, while two children run.

    The slow parts of a first record are child processes: ``uname -p`` for the OS string, and
    the first git child of the dirty check (``git diff``, or ``git status`` when the index looks
    stale; started by :func:`prefetch_git` before this when a ``StepInfo`` is made, read by the
    git probe). The other facts are probed, and the package scan warmed up, while they run.
    Nothing here starts ``git``: a ``PlatformMetadata`` alone never does.
    """
    policy = _privacy.current()  # an unknown mode raises here, before any child is started
    parts = _linux_parts()
    processor = None
    try:
        processor = _start_uname_p() if parts is not None else None
        # imported while uname runs (0.3 ms); out of file descriptors, the machine facts are
        # left out of _fixed, so probed again (_fact)
        modules = _modules(
            ("tango_stepinfo._machine", "tango_stepinfo._job"), _MACHINE_FACTS, "None"
        )
        facts = _process_facts(policy)
        gpus: Optional[Callable[[], Optional[List[Any]]]] = None
        if modules is not None:
            _machine, _job = modules
            for key in _MACHINE_FACTS:  # a reason left by a try that could not load them
                _fallbacks.note(key, None)
            gpus = _start_gpus(_machine.gpu_driver())
            cgroups = _machine.cgroups()  # read once for both cpu_usable and memory
            facts.update(
                cpu_model=_machine.cpu_model(),
                cpu_usable=_machine.cpu_usable(cgroups),
                memory=_machine.memory(cgroups),
                container=_machine.container(cgroups),
                job=_job.job(),
            )
        if policy is not None and facts.get("job") is not None:
            # (system, id, name, url, attempt): the url is dropped, id and name scrubbed, as probed
            system, job_id, name, _, attempt = facts["job"]
            name = name if name is None else policy.scrub(name)
            facts["job"] = (system, policy.scrub(job_id), name, None, attempt)
        packages()  # the first scan, cached for the record being made
    except BaseException:  # KeyboardInterrupt meanwhile: it propagates, uname is not left behind
        if processor is not None:
            processor()  # reaps it: it has usually ended (else killed, within 2 s at most)
        raise
    linux = None if parts is None or processor is None else _os_linux(parts, processor())
    facts["operating_system"] = _operating_system(linux)
    if gpus is not None:
        facts["gpus"] = gpus()
    if policy is not None and facts.get("gpus"):
        # (name, uuid, bus, driver, memory): a GPU's UUID names its machine as well as the host
        facts["gpus"] = [
            (g[0], g[1] if g[1] is None else policy.hide(g[1]), *g[2:]) for g in facts["gpus"]
        ]
    return facts


_MACHINE_FACTS = ("cpu_model", "cpu_usable", "memory", "container", "job", "gpus")
"""The fixed facts probed by modules of their own (:mod:`._machine`, :mod:`._job`,
:mod:`._gpu`), which a process out of file descriptors cannot load."""


def _modules(names: Sequence[str], noting: Sequence[str], recorded: str) -> Optional[List[Any]]:
    """The modules ``names`` (absolute: ``"tango_stepinfo._git"``), loaded now if they are not
    yet (:func:`._proc.load`).

    When the process lacks the file descriptors or memory to load one, ``None``, and
    ``"<why>; recorded <recorded>"`` is noted as the reason of each fact in ``noting``: nothing
    is kept, so the next record tries again. Clearing those reasons once the modules load is the
    caller's (some facts have reasons of their own).
    """
    found = [load(name) for name in names]
    why = next((m for m in found if isinstance(m, str)), None)
    if why is None:
        return found
    for key in noting:
        _fallbacks.note(key, f"{why}; recorded {recorded}")
    return None


def _start_gpus(driver: bool) -> Callable[[], Optional[List[Any]]]:
    """Start the GPU probe (:func:`._gpu.start`; NVML, when there is a driver, answers in a
    thread meanwhile); without a GPU driver (``driver``), ``None`` without importing
    :mod:`._gpu`: 0.18 ms less CPU for the first record (3.11, median of the paired differences
    of 301 alternating fresh processes each, busy 2-core machine)."""
    if driver:
        modules = _modules(("tango_stepinfo._gpu",), ("gpus",), "None")
        return (lambda: None) if modules is None else modules[0].start()
    _fallbacks.note("gpus", None)
    _fallbacks.note("gpus.memory", None)
    return lambda: None


_git_prefetched = False


def prefetch_git() -> None:
    """Start the dirty check's first git child without waiting for it, once per process (until
    :func:`clear_cache`).

    That child is ``git diff`` when the index looks fresh, else ``git status`` (see
    :func:`._git.prefetch`); nothing starts outside a repository or with the check turned off.

    Called by the first probe of an environment (:func:`python`), and by ``StepInfo`` before it
    probes its platform, so that the child runs while the other facts are probed; the git probe
    then reads its answer. Later calls cost one check of a flag.
    """
    global _git_prefetched
    if _git_prefetched:
        return
    _git = _load_git()
    if _git is None:  # out of file descriptors: tried again by the next record
        return
    _git_prefetched = True
    _git.prefetch(cwd())


def _load_git() -> Any:
    """:mod:`._git`, loaded now if it is not yet; ``None`` when the process lacks the file
    descriptors to load it (noted as the reason of ``git``: the next check tries again)."""
    global _git_module
    if _git_module is None:
        modules = _modules(("tango_stepinfo._git",), ("git",), "git as None")
        if modules is None:
            return None
        _fallbacks.note("git", None)
        _git_module = modules[0]
    return _git_module


# --- operating system --------------------------------------------------------------------------


def _linux_parts() -> Optional[Tuple[str, str, str, str]]:
    """``(system, release, machine, libc)`` on Linux with glibc; ``None`` elsewhere.

    ``platform.platform()`` costs 7 ms (importing :mod:`platform` and :mod:`subprocess`, and
    running ``uname -p``); on Linux with glibc its parts are these plus ``uname -p``, which
    :func:`_start_uname_p` runs without :mod:`subprocess`. Elsewhere ``platform.platform()``
    itself is asked.
    """
    if sys.platform != "linux":
        return None
    try:
        system, _node, release, _version, machine = os.uname()
        libc = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError) as e:
        debug("os.uname() or os.confstr() failed (%s), asking platform.platform()", e)
        return None
    if system != "Linux" or not libc or len(libc.split()) != 2:
        return None  # not glibc: platform.libc_ver() reads the interpreter binary instead
    return system, release, machine, "".join(libc.split())


def _start_uname_p() -> Callable[[], Optional[Tuple[int, bytes]]]:
    """Start ``uname -p``, as ``platform`` runs it; return a function waiting for its result.

    ``uname`` is looked for on ``$PATH`` by the C library in the child (:func:`os.posix_spawnp`,
    as :mod:`subprocess` has the child look for it under ``platform``): the first executable
    file of that name, else none (no ``uname``: the processor is blank, as ``platform`` leaves
    it). Looking for it here first with :func:`which` (eight ``access`` calls on this ``$PATH``)
    cost 0.09 ms on its own; the first record takes 0.26 ms less CPU without it (3.11, median of
    the paired differences of 301 alternating fresh processes each, busy 2-core machine).
    :func:`which` still looks for it where :func:`._proc.searchable` says the C library may not
    (an empty ``$PATH`` entry: the working directory).
    """
    if searchable():
        child = _spawn(["uname", "-p"], None, search=True)
        return lambda: None if child is None else _collect("uname", child, 2.0)
    uname = which("uname")
    if uname is None:
        return lambda: None
    return lambda: _run_subprocess([uname, "-p"], 2.0, None)


def _os_linux(parts: Tuple[str, str, str, str], uname_p: Optional[Tuple[int, bytes]]) -> str:
    """Format the parts exactly as ``platform.platform()`` and ``platform._platform`` do."""
    system, release, machine, libc = parts
    processor = ""
    if uname_p is not None and uname_p[0] == 0:
        processor = uname_p[1].decode("utf-8", "replace").strip()
    if processor == machine:
        processor = ""
    text = "-".join(x.strip() for x in (system, release, machine, processor, "with", libc) if x)
    for bad in ' /\\:;"()':
        text = text.replace(bad, "_" if bad == " " else "-")
    text = text.replace("unknown", "")
    while "--" in text:
        text = text.replace("--", "-")
    return text.rstrip("-")


def _os_platform() -> Optional[str]:
    try:  # (an OSError while importing too: a process out of file descriptors)
        import platform

        return platform.platform() or None
    except OSError as e:
        debug("platform.platform() failed: %s", e)
        return None


def _operating_system(linux: Optional[str]) -> str:
    found = linux or _os_platform()
    _fallbacks.note(
        "operating_system", None if found else "platform.platform() failed; recorded 'unknown'"
    )
    return found or "unknown"


def operating_system() -> str:
    """The operating system as ``platform.platform()`` names it; ``"unknown"`` if that fails."""
    value: str = _fact("operating_system")
    return value


# --- cpu count, user, host, python, executable --------------------------------------------------


def _cpu_count() -> Optional[int]:
    count = os.cpu_count()
    _fallbacks.note("cpu_count", None if count else "os.cpu_count() could not tell; recorded None")
    return count


def cpu_count() -> Optional[int]:
    """``os.cpu_count()``: the number of CPUs, ``None`` when unknown."""
    value: Optional[int] = _fact("cpu_count")
    return value


_LOGIN_VARIABLES = ("LOGNAME", "USER", "LNAME", "USERNAME")


def _user_variable() -> Optional[str]:
    """The first non-empty login variable, in ``getpass.getuser()``'s order (3.9 to 3.13).

    ``getpass.getuser()`` itself is not called: importing :mod:`getpass` cost 0.8 ms of the
    first record (it imports ``termios`` and more), for these lines and :func:`_user_passwd`.
    """
    for name in _LOGIN_VARIABLES:
        value = os.environ.get(name)
        if value:
            return value
    return None


def _user_passwd() -> Optional[str]:
    """The passwd entry's name of the real uid, as ``getpass.getuser()`` reads it after the
    variables; ``None`` without one (``docker run -u 1234``), without uids or without :mod:`pwd`.
    """
    getuid = getattr(os, "getuid", None)
    if getuid is None:
        return None
    try:
        import pwd

        return pwd.getpwuid(getuid())[0] or None
    except (KeyError, ImportError, OSError) as e:  # OSError: out of file descriptors
        debug("no login variable and no passwd entry (%r), recording the uid", e)
        return None


def _user_uid() -> Optional[str]:
    getuid = getattr(os, "getuid", None)
    return None if getuid is None else str(getuid())


def _user() -> str:
    name = _user_variable() or _user_passwd()
    if name is not None:
        _fallbacks.note("user", None)
        return name
    uid = _user_uid()
    _fallbacks.note(
        "user",
        f"no passwd entry and no login variable for uid {uid}; recorded the uid"
        if uid is not None
        else "no user name and no uids on this system; recorded 'unknown'",
    )
    return uid or "unknown"


def user() -> str:
    """The login name; the numeric uid when the user has no name; ``"unknown"`` without uids."""
    value: str = _fact("user")
    return value


def _host_uname() -> Optional[str]:
    # On POSIX, socket.gethostname() is the nodename of uname(2); asking os saves importing
    # socket (2 ms).
    uname = getattr(os, "uname", None)
    if uname is None:
        return None
    try:
        return str(uname().nodename) or None
    except OSError as e:
        debug("os.uname() failed: %s", e)
        return None


def _host_socket() -> Optional[str]:
    try:
        import socket

        return socket.gethostname() or None
    except OSError as e:
        debug("socket.gethostname() failed: %s", e)
        return None


def _host_platform() -> Optional[str]:
    try:
        import platform

        return platform.node() or None
    except OSError as e:
        debug("platform.node() failed: %s", e)
        return None


def _host() -> str:
    found = _host_uname() or _host_socket() or _host_platform()
    _fallbacks.note(
        "host", None if found else "no way of asking the host name worked; recorded 'unknown'"
    )
    return found or "unknown"


def host() -> str:
    """The host name; ``"unknown"`` when no way of asking for it works."""
    value: str = _fact("host")
    return value


def _python_version() -> str:
    # platform.python_version() is the leading [\w.+]+ run of sys.version, padded to x.y.z.
    text = getattr(sys, "version", None)
    head = str.__str__(text).split(None, 1)[0] if issubclass(type(text), str) and text else ""
    version = ""
    for ch in head:
        if not (ch.isalnum() or ch in "._+"):
            break
        version += ch
    parts = version.split(".")
    if parts[:2] != [str(v) for v in sys.version_info[:2]]:
        # sys.version replaced (by the program): it is not the interpreter's version
        _fallbacks.note(
            "python", "sys.version does not start with the version of sys.version_info; used that"
        )
        return ".".join(str(v) for v in sys.version_info[:3])
    _fallbacks.note("python", None)
    if len(parts) == 2:
        parts.append("0")
    return ".".join(parts)


def python() -> str:
    """The Python version, as ``platform.python_version()`` gives it (e.g. ``3.11.7``)."""
    prefetch_git()  # the first fact of an environment: its git probe comes later
    value: str = _fact("python")
    return value


def _executable_sys() -> Optional[Path]:
    exe = getattr(sys, "executable", None)
    if not issubclass(type(exe), str):  # None, or replaced by the program (bytes...)
        return None
    exe = str.__str__(exe)
    return Path(exe) if exe else None


def _executable_proc() -> Optional[Path]:
    debug("sys.executable is empty, reading /proc/self/exe")
    try:
        return Path(os.readlink("/proc/self/exe"))
    except OSError as e:
        debug("cannot read /proc/self/exe (%s), recording 'python'", e)
        return None


def _executable() -> Path:
    found = _executable_sys()
    if found is not None:
        _fallbacks.note("executable", None)
        return found
    found = _executable_proc()
    exe = getattr(sys, "executable", None)
    what = "empty" if exe is None or issubclass(type(exe), str) else "not a str"
    _fallbacks.note(
        "executable",
        f"sys.executable is {what}; recorded the target of /proc/self/exe"
        if found is not None
        else f"sys.executable is {what} and /proc/self/exe unreadable; recorded 'python'",
    )
    return found or Path("python")


def executable() -> Path:
    """The interpreter: ``sys.executable``, else ``/proc/self/exe``, else ``Path("python")``."""
    value: Path = _fact("executable")
    return value


def cpu_model() -> Optional[str]:
    """The CPU's model name (see :mod:`._machine`); ``None`` when unknown."""
    value: Optional[str] = _cached("cpu_model")  # later records: one dict lookup
    return value


def cpu_usable() -> Optional[int]:
    """The CPUs this process may use (see :mod:`._machine`); ``None`` when unknown."""
    value: Optional[int] = _cached("cpu_usable")  # later records: one dict lookup
    return value


def memory() -> Optional[int]:
    """Bytes of memory this process may use (see :mod:`._machine`); ``None`` when unknown."""
    value: Optional[int] = _cached("memory")  # later records: one dict lookup
    return value


def container() -> Optional[str]:
    """The container runtime detected (see :mod:`._machine`); ``None`` outside one."""
    value: Optional[str] = _cached("container")  # later records: one dict lookup
    return value


def gpus() -> Optional[List[Any]]:
    """The GPUs visible, as ``GpuMetadata`` field tuples (see :mod:`._gpu`); a fresh list."""
    found = _cached("gpus")
    return None if found is None else list(found)


def implementation() -> str:
    """``sys.implementation.name``: ``"cpython"``, ``"pypy"``..."""
    value: str = _cached("implementation")  # later records: one dict lookup
    return value


def job() -> Optional[Tuple[Any, ...]]:
    """The batch job or CI run, as ``JobMetadata`` field tuple (see :mod:`._job`)."""
    value: Optional[Tuple[Any, ...]] = _cached("job")
    return value


def variables() -> Optional[Dict[str, str]]:
    """The environment variables chosen by ``TANGO_STEPINFO_VARIABLES`` (see :mod:`._variables`).

    Read once per process, on its own (it reads only ``os.environ``: a record whose other
    fields are given probes nothing else); each call returns a fresh copy.
    """
    try:
        found = _fixed["variables"]
    except KeyError:
        modules = _modules(("tango_stepinfo._variables",), ("variables",), "None")
        if modules is None:  # out of file descriptors: not kept, tried again
            return None
        _fallbacks.note("variables", None)
        _variables = modules[0]
        policy = _privacy.current()
        keep = _privacy.settled()  # before: else hidden whole for want of files, not kept
        found = _variables.read(policy)
        if keep:
            with _lock:
                found = _fixed.setdefault("variables", found)
    return None if found is None else dict(found)


def privacy() -> Optional[str]:
    """``"anonymous"`` when ``TANGO_STEPINFO_PRIVACY=anonymous`` applies, else ``None``.

    :raises InvalidSettingError: the variable names no known mode (see :mod:`._privacy`).
    """
    return None if _privacy.current() is None else _privacy.ANONYMOUS


# --- command line --------------------------------------------------------------------------------

_argv: Tuple[List[Any], Any, str, Optional[str]] = ([], None, "", None)
"""The ``sys.argv`` last seen (a copy), ``sys.orig_argv`` then, the command and the reason."""
_env_line: Tuple[str, str, Optional[str]] = ("", "", None)  # line, command, fallback reason
_PY_FLAGS = frozenset("bBdEiIOPqRsSuvx")  # interpreter flags that take no argument


def _typed_argv(argv: List[str]) -> List[str]:
    """What was typed to start the process: ``sys.orig_argv`` under ``python -m``, else ``argv``.

    Under ``python [options] -m module args`` (also ``-mmodule``, and flags joined before the
    ``m`` as in ``-Im``), ``sys.argv`` is the module's file and ``args``. When ``sys.orig_argv``
    (Python 3.10+) has that shape, ends with the same ``args``, and ``sys.argv[0]`` is that
    module's file (``module/path.py``, ``module/path/__main__.py``, or ``-m`` while it is being
    found), ``sys.orig_argv`` is returned whole: interpreter, options, ``-m``, module and
    arguments as typed. Anything else (a script, ``-c``, a ``sys.argv`` the program changed,
    Python 3.9) gives ``argv``, and so does a ``sys.orig_argv`` holding anything but plain
    strings (the interpreter's never does).
    """
    orig = getattr(sys, "orig_argv", None)
    if not isinstance(orig, list) or not argv or not all(type(w) is str for w in orig):
        return argv
    head = len(orig) - (len(argv) - 1)
    if head < 2 or orig[head:] != argv[1:]:
        return argv
    for word, joined in ((orig[head - 1], True), (orig[head - 2] if head >= 3 else "", False)):
        if isinstance(word, str) and word.startswith("-") and not word.startswith("--"):
            flags, m, module = word[1:].partition("m")
            if not m or not set(flags) <= _PY_FLAGS or bool(module) is not joined:
                continue
            module = module or orig[head - 1]
            if isinstance(module, str) and _is_module_file(argv[0], module):
                return orig
    return argv


def _is_module_file(path: str, module: str) -> bool:
    """Whether ``path`` (``sys.argv[0]``) is what ``python -m module`` puts there."""
    if path == "-m":
        return True
    stem, dot, ext = path.rpartition(".")
    if not dot or ext not in ("py", "pyc") or not module:
        return False
    parts = module.split(".")
    for tail in (parts, [*parts, "__main__"]):
        if stem.replace(os.sep, "/").split("/")[-len(tail) :] == tail:
            return True
    return False


def command() -> str:
    """The command line of the process, shell-quoted, with secrets redacted.

    ``$TANGO_STEPINFO_COMMAND``, when set and not empty, is the command: a shell-quoted line
    that an engine hands down to its workers; it is split with :func:`shlex.split` and redacted
    with :func:`~tango_stepinfo.redact.redact_command` (so it is re-quoted the same way), or, when
    it cannot be split (an unclosed quote), redacted as text with
    :func:`~tango_stepinfo.redact.redact_text`. Otherwise the command is ``sys.argv``, or what
    was typed under ``python -m`` (see :func:`_typed_argv`), redacted with
    :func:`~tango_stepinfo.redact.redact_command`; ``""`` when ``sys.argv`` is missing or empty.

    Cached: the variable's line is redacted again only when it changes, ``sys.argv`` only when
    it (or ``sys.orig_argv``) changes; a record pays one environment lookup and one comparison.
    """
    global _argv, _env_line
    line = os.environ.get("TANGO_STEPINFO_COMMAND")
    if line:
        cached_line = _env_line
        if line != cached_line[0]:
            keep = _privacy.settled()  # before: else hidden whole for want of files, not kept
            found = _env_command(line)
            if found is None:
                return ""
            cached_line = found
            if keep:
                _env_line = found
        _fallbacks.note("command", cached_line[2])
        return cached_line[1]
    argv = getattr(sys, "argv", None)
    if not isinstance(argv, (list, tuple)):
        debug("sys.argv is missing or not a list (%r), recording ''", type(argv).__name__)
        _fallbacks.note("command", "sys.argv is missing or not a list; recorded ''")
        return ""
    if type(argv) is not list:  # a tuple, or a subclass: a plain list of the same items
        argv = list.copy(argv) if isinstance(argv, list) else list(tuple.__iter__(argv))
    cached = _argv
    orig = getattr(sys, "orig_argv", None)
    if orig is cached[1]:
        try:
            if cached[0] == argv:  # the same objects: equal without asking them
                _fallbacks.note("command", cached[3])
                return cached[2]
        except Exception:  # another item's own __eq__ (anything): sys.argv changed
            pass
    seen = list(argv)
    texts = [_argv_word(item) for item in seen]
    why = None
    if None in texts:
        why = "sys.argv holds items that are not str or decodable bytes; recorded them with str()"
        debug("%s", why)
    copy = [_argv_text(item) if text is None else text for item, text in zip(seen, texts)]
    typed = _typed_argv(copy)
    # by the first record's probes (0.3 ms), not the import; out of file descriptors, never a
    # command unredacted
    modules = _modules(("tango_stepinfo.redact",), ("command",), "''")
    if modules is None:
        return ""
    redact = modules[0]
    policy = _privacy.current()
    keep = policy is None or _privacy.settled()  # before: else hidden whole, not kept
    text = redact.redact_command(typed if policy is None else _privacy.shorten_words(typed))
    text = text if policy is None else policy.scrub(text)  # names, after the paths and secrets
    if keep:
        _argv = (seen, orig, text, why)
    _fallbacks.note("command", why)
    return text


def _env_command(line: str) -> Optional[Tuple[str, str, Optional[str]]]:
    """``(line, its redacted text, the fallback reason)`` of ``$TANGO_STEPINFO_COMMAND``'s
    ``line`` (see :func:`command`); ``None`` when the process lacks the file descriptors to
    load the redaction rules (noted: the record gets ``''``, never a command unredacted)."""
    modules = _modules(("tango_stepinfo.redact", "shlex"), ("command",), "''")
    if modules is None:
        return None
    redact, shlex = modules
    policy = _privacy.current()
    try:
        words = shlex.split(line)
        words = words if policy is None else _privacy.shorten_words(words)
        text = redact.redact_command(words)
        return (line, text if policy is None else policy.scrub(text), None)
    except ValueError as e:
        debug("TANGO_STEPINFO_COMMAND cannot be split (%s), redacting it as text", e)
        reason = "TANGO_STEPINFO_COMMAND is not a valid shell line; redacted it as text"
        text = redact.redact_text(line)
        text = text if policy is None else _privacy.shorten_command(policy.scrub(text))
        return (line, text, reason)


def _argv_word(item: Any) -> Optional[str]:
    """A ``sys.argv`` item as the plain string it is, or ``None`` when it is no text.

    Bytes are decoded as Python decodes the command line (the file-system encoding and its
    error handler); a subclass of ``str`` or ``bytes`` is read as the plain value it holds, so
    that none of its own methods runs.
    """
    kind = type(item)
    if kind is str:
        return item  # type: ignore[no-any-return]
    if issubclass(kind, str):
        return str.__str__(item)
    if issubclass(kind, (bytes, bytearray)):
        decode = bytes.decode if issubclass(kind, bytes) else bytearray.decode
        try:
            return decode(item, sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())
        except UnicodeDecodeError:  # an error handler that can fail (Windows: surrogatepass)
            return None
    return None


def _argv_text(item: Any) -> str:
    """``str(item)`` for a ``sys.argv`` item that is no text; ``<type name>`` when that fails."""
    try:
        text = str(item)
    except Exception:  # the item's own __str__: anything
        return f"<{type(item).__name__}>"
    return text if type(text) is str else str.__str__(text)


# --- working directory ---------------------------------------------------------------------------


def _cwd_getcwd() -> Optional[str]:
    try:
        return os.getcwd()
    except OSError as e:
        debug("os.getcwd() failed (%s), the working directory was probably deleted", e)
        return None


def _cwd_proc() -> Optional[str]:
    try:
        target = os.readlink("/proc/self/cwd")
    except OSError:
        return None
    return target[: -len(" (deleted)")] if target.endswith(" (deleted)") else target


def _cwd_pwd() -> Optional[str]:
    pwd = os.environ.get("PWD", "")
    if os.path.isabs(pwd):
        debug("recording $PWD as the working directory")
        return pwd
    debug("$PWD is not an absolute path, recording '.' as the working directory")
    return None


def cwd() -> str:
    """The working directory as a string, with the fallbacks of :func:`root` (noted as its).

    Checked at most once per :data:`STALE_AFTER` (see the module docstring).
    """
    _used["cwd"] = True
    until, epoch = _fresh
    seen = _cwd_seen
    now = monotonic()
    if seen[0] != epoch or now >= until:
        _recheck("cwd", now)
        seen = _cwd_seen
    return seen[1]


def _checked_cwd() -> str:
    where = _cwd_getcwd()
    if where is not None:
        _fallbacks.note("root", None)
        return where
    where = _cwd_proc()
    if where is not None:
        reason = "the working directory was deleted; recorded its former path from /proc/self/cwd"
    else:
        where = _cwd_pwd()
        reason = (
            "the working directory was deleted; used $PWD"
            if where is not None
            else "the working directory was deleted and $PWD is not absolute; recorded '.'"
        )
    _fallbacks.note("root", reason)
    return where or "."


_root: Tuple[str, Path] = ("", Path("."))


def root() -> Path:
    """The working directory; when it was deleted, the fallbacks in the module docstring."""
    global _root
    where = cwd()
    cached = _root
    if where == cached[0]:
        return cached[1]
    policy = _privacy.current()
    path = Path(where if policy is None else policy.hide(where))
    _root = (where, path)
    return path


# --- packages ------------------------------------------------------------------------------------

# (a copy of sys.path, the stat of its folders, the packages, why they may be incomplete)
_packages: Optional[Tuple[List[Any], Deps, List[Package], Optional[str]]] = None


def normalize_name(name: str) -> str:
    """A distribution name normalised as PEP 503 does: runs of ``-_.`` become ``-``, lower case.

    The same as ``re.sub(r"[-_.]+", "-", name).lower()``, with string methods: that costs 0.6 us a
    name where the regex costs 1.5 us, and the first record normalises every distribution's name.
    """
    name = name.lower().replace("_", "-").replace(".", "-")
    while "--" in name:
        name = name.replace("--", "-")
    return name


def _read_headers(path: str) -> Optional[Dict[str, str]]:
    """The ``Name`` and ``Version`` headers of a core metadata file; ``None`` if unreadable."""
    found: Dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                if not line.strip():
                    break
                key, colon, value = line.partition(":")
                key = key.strip().lower()
                if colon and key in ("name", "version") and key not in found:
                    found[key] = value.strip()
                    if len(found) == 2:
                        break
    except (OSError, ValueError) as e:
        debug("skipping %s: %s", path, e)
        return None
    return found


def _metadata_file(path: str, is_dist_info: bool) -> Optional[str]:
    """The non-empty metadata file of a ``.dist-info``/``.egg-info`` entry, or ``None``.

    A ``.dist-info`` entry costs one ``stat``, of its ``METADATA`` (a ``.dist-info`` file, not a
    folder, fails it with ``ENOTDIR``): the first record makes one per distribution.
    """
    if not is_dist_info:
        try:
            st = os.stat(path)
        except (OSError, ValueError) as e:
            debug("skipping %s: %s", path, e)
            return None
        if not stat.S_ISDIR(st.st_mode):
            return path if st.st_size > 0 else None  # an .egg-info file
    names = ("METADATA", "PKG-INFO") if is_dist_info else ("PKG-INFO",)
    for name in names:
        candidate = f"{path}{os.sep}{name}"
        try:
            st = os.stat(candidate)
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as e:  # NotADirectoryError: a .dist-info file
            debug("skipping %s: %s", path, e)
            return None
        if st.st_size > 0 and stat.S_ISREG(st.st_mode):
            return candidate
    debug("skipping %s: no metadata, or empty", path)
    return None


def _distribution(path: str, stem: str, is_dist_info: bool) -> Optional[Package]:
    """``(normalised name, version)`` of one metadata entry, or ``None`` if it is broken."""
    meta = _metadata_file(path, is_dist_info)
    if meta is None:
        return None
    if is_dist_info:
        name, dash, version = stem.partition("-")
        if dash and name and version and "-" not in version:
            return normalize_name(name), version  # the wheel spec puts name and version here
    headers = _read_headers(meta)
    if headers is None:
        return None
    if "name" not in headers or "version" not in headers:
        debug("skipping %s: no Name or Version in %s", path, meta)
        return None
    return normalize_name(headers["name"]), headers["version"]


def _scan_folder(
    folder: str, found: Dict[str, str], zips: List[str], unlisted: List[Tuple[str, str]]
) -> bool:
    """Add the distributions of one ``sys.path`` entry to ``found``, keeping earlier ones; add
    it to ``zips`` when it is a zip archive (whose distributions are not read), and
    ``(folder, problem)`` to ``unlisted`` when the process lacks the file descriptors or the
    memory to list it (``EMFILE``, ``ENFILE``, ``ENOMEM``: a passing shortage, not absence).

    The names are lowered in one call (joined by NUL, which no file name holds) and only
    ``*-info`` entries are looked at further: a ``site-packages`` holds many more modules than
    distributions.

    :returns: whether the folder holds any distribution entry at all.
    """
    try:
        names = os.listdir(folder or ".")
    except NotADirectoryError:
        debug("not scanning %s for packages: not a folder (zip files are not read)", folder)
        if _is_zip(folder):
            zips.append(folder)
        return False
    except OSError as e:
        if e.errno in SHORTAGES:
            debug("cannot list %s for packages: %s", folder, e)
            unlisted.append((folder, e.strerror or type(e).__name__))
        return False  # a missing sys.path entry, like pythonXY.zip, is normal
    except ValueError as e:  # a NUL byte or a lone surrogate: no folder has that name
        debug("not scanning %r for packages: %s", folder, e)
        return False
    joined = "\0".join(names).lower()
    if "-info" not in joined:  # the standard library's folders: 0.06 ms less a scan (3.11)
        return False
    lows = joined.split("\0")
    entries = sorted(name for name, low in zip(names, lows) if low.endswith("-info"))
    if not entries:
        return False
    prefix = os.path.join(folder, "")
    is_egg = folder.lower().endswith(".egg")  # an unzipped egg: metadata in EGG-INFO
    any_dist = False
    for entry in entries:
        low = entry.lower()
        if low.endswith(".dist-info"):
            # The usual wheel-style folder, in line: its version is in its name, and one stat
            # shows its METADATA is there (1.5 us a distribution less than through
            # _distribution, which reads or logs anything else).
            stem = entry[: -len(".dist-info")]
            name, dash, version = stem.partition("-")
            if dash and name and version and "-" not in version:
                try:
                    st = os.stat(f"{prefix}{entry}{os.sep}METADATA")
                    usual = st.st_size > 0 and stat.S_ISREG(st.st_mode)
                except (OSError, ValueError):
                    usual = False
                if usual:
                    any_dist = True
                    name = normalize_name(name)
                    if name not in found:
                        found[name] = version
                    continue
            dist = _distribution(prefix + entry, stem, True)
        elif low.endswith(".egg-info") or (is_egg and low == "egg-info"):
            dist = _distribution(prefix + entry, "", False)
        else:
            continue
        any_dist = True
        if dist is not None and dist[0] not in found:
            found[dist[0]] = dist[1]
    return any_dist


def packages() -> Optional[List[Package]]:
    """Every distribution visible on ``sys.path``, as sorted ``(name, version)`` pairs.

    Names are normalised as PEP 503 does; the first distribution of a name on ``sys.path`` wins,
    as import does. Found by listing each ``sys.path`` folder for ``*.dist-info`` and
    ``*.egg-info`` entries (and reading an unzipped ``*.egg`` on ``sys.path``); the version comes
    from a ``.dist-info`` folder's name, and metadata files are read only when the name does not
    carry it. Entries with no or empty metadata, or that cannot be read, are skipped (and logged);
    zip files on ``sys.path`` are not read (noted as the fallback reason of ``packages`` when
    one is there: its distributions are importable but missing from the list). Re-scanned
    only when ``sys.path`` or the ``stat`` of one of its entries changed; the standard library's
    entries (``os.__file__``'s folder, its ``lib-dynload`` and the ``pythonXY.zip`` beside it,
    usually missing), where installers never put distributions, are not stat'ed again unless
    the first scan found distributions in them (:func:`clear_cache` rescans everything).
    ``None`` when ``sys.path`` is not a list.
    """
    entries = getattr(sys, "path", None)
    if not isinstance(entries, list):
        debug("sys.path is not a list, recording packages as None")
        _fallbacks.note("packages", "sys.path is not a list; recorded None")
        return None
    _used["packages"] = True
    until, epoch = _fresh
    scan = _packages
    now = monotonic()
    try:
        fresh = scan is not None and _packages_epoch == epoch and scan[0] == entries and now < until
    except Exception:  # an entry's own __eq__ (anything): sys.path changed, the scan copies it
        fresh = False
    if scan is None or not fresh:
        _recheck("packages", now)  # checks sys.path as it is then
        scan = _packages
        if scan is None:  # sys.path stopped being a list meanwhile: scan what was seen
            scan = _scan(entries)
    _fallbacks.note("packages", scan[3])
    return list(scan[2])


def _scan(entries: List[Any]) -> Tuple[List[Any], Deps, List[Package], Optional[str]]:
    """Scan the folders of ``entries`` (``sys.path``): ``(a copy of entries, the folders' stat,
    the sorted packages, why they may be incomplete)``: the reason names the zip archives on
    ``sys.path``, whose distributions are importable but not read.

    Only ``str`` entries are folders (import skips the others: bytes, :class:`~pathlib.Path`,
    ``None``). A subclass of ``str`` is read as the plain string it holds, so that none of its
    methods (``__bool__``, ``__hash__``, ``__fspath__``...) runs: whatever they would raise.
    """
    entries = list.copy(entries)  # not list(): a list subclass's own __iter__ is not run
    folders = [str.__str__(e) or "." for e in entries if issubclass(type(e), str)]
    sigs = [sig(folder) for folder in folders]
    found: Dict[str, str] = {}
    zips: List[str] = []
    unlisted: List[Tuple[str, str]] = []
    holds = [_scan_folder(folder, found, zips, unlisted) for folder in folders]
    if unlisted:  # kept as missing: the next check finds them there and scans again
        missed = {folder for folder, _ in unlisted}
        sigs = [None if folder in missed else s for folder, s in zip(folders, sigs)]
    stdlib = os.path.dirname(getattr(os, "__file__", "") or "") or None
    fixed = set()
    if stdlib:
        # Each re-check system call lets another thread take the GIL: the interpreter's own
        # entries are left out of them (the zip would be one os.access per re-check).
        zipped = f"python{sys.version_info[0]}{sys.version_info[1]}.zip"
        fixed = {
            stdlib,
            os.path.join(stdlib, "lib-dynload"),
            os.path.join(os.path.dirname(stdlib), zipped),
        }
    deps = tuple(
        (folder, folder_sig)
        for folder, folder_sig, has in zip(folders, sigs, holds)
        if has or folder not in fixed
    )
    reasons = []
    if zips:
        more = f" and {len(zips) - 1} more" if len(zips) > 1 else ""
        # Shortened as anonymous records shorten paths (.../app.pyz): a reason is kept in every
        # record, and a home folder's path names its user.
        first = _privacy.shorten(zips[0])
        reasons.append(f"distributions in zip archives on sys.path are not read ({first}{more})")
    if unlisted:
        more = f" and {len(unlisted) - 1} more" if len(unlisted) > 1 else ""
        folder, problem = unlisted[0]
        reasons.append(
            f"cannot list {_privacy.shorten(folder)}{more} on sys.path ({problem}); its"
            " distributions are missing, and it is listed again by the next record"
        )
    return entries, deps, sorted(found.items()), "; ".join(reasons) or None


def _is_zip(path: str) -> bool:
    """Whether the file ``path`` is a zip archive, which import reads (a zipapp, a ``.pex``,
    a zipped egg): its end record (``PK\\5\\6``) is in its last 64 KiB, as :mod:`zipimport`
    looks for it (a zipapp starts with a ``#!`` line, not with ``PK``). Only a regular file is
    read: opened without blocking, so that a FIFO on ``sys.path`` cannot hang the probe."""
    try:
        f, st = open_regular(path)
        with f:
            f.seek(max(st.st_size - (65536 + 22), 0))
            return b"PK\x05\x06" in (f.read(65536 + 22) or b"")
    except (OSError, ValueError):  # NotARegularFile too
        return False


_tango: Tuple[Any, Optional[str]] = (None, None)


def tango_version(rescan: bool = True) -> Optional[str]:
    """The version of the ``ai2-tango`` distribution in the package scan; ``None`` without one.

    :param rescan: re-validate the scan first, as :func:`packages` does (one ``stat`` per
        ``sys.path`` folder). ``False`` reads the latest scan as it is, for a record whose
        ``packages`` field was probed just before (the scan is validated once per record);
        it still scans when there was none yet.
    """
    global _tango
    if rescan or _packages is None:
        packages()
    scan = _packages
    if scan is None:  # sys.path is not a list
        return None
    cached = _tango
    if cached[0] is scan:  # the same scan as last time: a new scan is a new tuple
        return cached[1]
    version = dict(scan[2]).get("ai2-tango")
    _tango = (scan, version)
    return version


# --- git -----------------------------------------------------------------------------------------


def git() -> Optional[GitFacts]:
    """The git checkout around the working directory; ``None`` outside one.

    See :mod:`tango_stepinfo._git` for what is read, the fallbacks and how it is cached.
    """
    _used["git"] = True
    until, epoch = _fresh
    seen = _git_seen
    now = monotonic()
    if seen[0] != epoch or now >= until:
        _recheck("git", now)
        seen = _git_seen
    facts: Optional[GitFacts] = seen[1]
    policy = _privacy.current()
    if policy is not None and facts is not None:
        # (commit, remote, branch, dirty, diff): the remote hidden, the branch scrubbed
        remote = facts[1] if facts[1] is None else policy.hide(facts[1])
        branch = facts[2] if facts[2] is None else policy.scrub(facts[2])
        facts = (facts[0], remote, branch, facts[3], facts[4])
    return facts


# --- re-checking ---------------------------------------------------------------------------------


def _recheck(name: str, called: float) -> None:
    """Make the fact ``name`` (``cwd``, ``packages`` or ``git``) fresh, one thread at a time.

    Called by a probe that found its fact not checked in the current epoch, or the epoch over
    (:data:`STALE_AFTER` after its check began). The thread that gets :data:`_recheck_lock`
    first starts a new epoch and checks every fact asked for since the last check (a record asks
    for all three) in one go; the others sleep on the lock and then find their fact fresh. Each
    system call of a check lets another thread take the GIL: with one checker and the others
    asleep, nobody competes for it, where 16 threads racing to re-check lost a third of their
    throughput (see ``docs/performance.rst``). A fact first asked for within an epoch is checked
    alone, in that epoch.

    ``called`` is when the probe was called: a check that began at most :data:`STALE_AFTER`
    before it answers it, however long the wait for the lock (and then for the GIL) took. Judged
    by the time the lock was got instead, a waiter woken a few ms late (another thread holding
    the GIL for its switch interval) found that check over and made its own: with 16 threads
    the re-checks chained, and records per second fell to 0.7 to 0.9 of one thread's.
    """
    global _fresh
    with _recheck_lock:
        until, epoch = _fresh
        if called < until:
            _CHECKS[name](epoch)  # nothing to do when a thread checked it while this one waited
            return
        start = monotonic()
        epoch += 1  # facts checked from `start` on: valid until start + STALE_AFTER
        _fresh = (0.0, epoch)  # taken, not valid yet (nor ever, if a check is interrupted)
        for fact, used in list(_used.items()):
            if used or fact == name:
                _used[fact] = False
                _CHECKS[fact](epoch)
        # A signal handler's re-check run inside this one started a later epoch: it stays, as
        # going back to this one would let the next check take that epoch's stamps for its own.
        if _fresh[1] == epoch:
            _fresh = (start + STALE_AFTER, epoch)


def _check_cwd(epoch: int) -> None:
    global _cwd_seen
    if _cwd_seen[0] != epoch:
        _cwd_seen = (epoch, _checked_cwd())


def _check_packages(epoch: int) -> None:
    """Re-validate the package scan, or scan again (nothing when ``sys.path`` is not a list)."""
    global _packages, _packages_epoch
    entries = getattr(sys, "path", None)
    if not isinstance(entries, list):
        return
    scan = _packages
    try:
        same = scan is not None and scan[0] == entries
    except Exception:  # an entry's own __eq__ (anything): sys.path changed, the scan copies it
        same = False
    if scan is None or not same:
        _packages = _scan(entries)
    elif _packages_epoch != epoch and not unchanged(scan[1]):  # one stat per folder
        _packages = _scan(entries)  # a folder changed: pip installed or removed something
    _packages_epoch = epoch


def _check_git(epoch: int) -> None:
    """Read git around the working directory as checked in ``epoch``."""
    global _git_seen
    if _git_seen[0] == epoch:
        return
    _check_cwd(epoch)
    _git = _load_git()
    _git_seen = (epoch, None if _git is None else _git.facts(_cwd_seen[1]))


_CHECKS: Dict[str, Callable[[int], None]] = {
    "cwd": _check_cwd,
    "packages": _check_packages,
    "git": _check_git,
}


# --- cache control -------------------------------------------------------------------------------


def clear_cache() -> None:
    """Drop every cached fact, so that the next record probes everything afresh.

    Facts fixed for the process (OS, CPU count, user, host, Python, executable) are probed
    again, the package list is re-scanned, and the git repository is found and read again,
    its dirty check included; ``$TANGO_STEPINFO_JSON`` is read again by the next
    ``to_json_dict()``. ``StepInfo.refresh()`` calls this.
    """
    global _argv, _env_line, _root, _packages, _git_prefetched
    global _fresh, _cwd_seen, _git_seen, _packages_epoch
    from . import _fallbacks

    # not loaded yet (no record encoded): nothing to clear, and nothing to load (out of file
    # descriptors, loading it raised OSError)
    _json_default = sys.modules.get(__name__.rpartition(".")[0] + "._json_default")
    with _lock, _recheck_lock:
        _fresh = (0.0, _fresh[1])  # over: the next probe starts a new epoch
        _cwd_seen = (-1, "")
        _git_seen = (-1, None)
        _packages_epoch = -1
        _used.update(dict.fromkeys(_used, False))
        _fixed.clear()
        _git_prefetched = False
        _fallbacks.clear()
        _privacy.clear()
        if _json_default is not None:
            _json_default.clear()
        _argv = ([], None, "", None)
        _env_line = ("", "", None)
        _root = ("", Path("."))
        _packages = None
        git_module = sys.modules.get(__name__.rpartition(".")[0] + "._git")
        if git_module is not None:
            git_module.clear()
