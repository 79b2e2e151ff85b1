"""Running commands and watching files, for the probes (:mod:`._probe`) and git (:mod:`._git`).

Small helpers both use, in a module of their own so that neither imports the other: logging at
DEBUG, finding and running executables without :mod:`subprocess` (:func:`os.posix_spawn`), and
the ``stat`` signatures behind every cached fact that files can change. Nothing heavy is
imported at module import (:mod:`logging`, :mod:`select`, :mod:`subprocess` on first use).
"""

from __future__ import annotations

import errno
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Callable, List, Mapping, Optional, Sequence, Tuple

if TYPE_CHECKING:
    # Type aliases for the checker only: subscripting typing costs about 0.1 ms at import (3.11,
    # per-statement timing of ``import tango_stepinfo``, for these three).
    Sink = Callable[[bytes], None]
    """Where a child's output goes chunk by chunk, instead of being kept (see :func:`run`)."""

    Sig = Optional[Tuple[int, int, int, int]]
    Deps = Tuple[Tuple[str, Sig], ...]
    """Paths and their :func:`sig` when a cached value was read from them."""

__all__ = [
    "SHORTAGES",
    "collect",
    "debug",
    "kill",
    "load",
    "readable",
    "run",
    "run_subprocess",
    "searchable",
    "sig",
    "spawn",
    "unchanged",
    "which",
]

SHORTAGES = frozenset(
    getattr(errno, name) for name in ("EMFILE", "ENFILE", "ENOMEM") if hasattr(errno, name)
)
"""Errors (``errno``) of opening a file or listing a folder that say the process lacked file
descriptors or memory, not that the file is missing or unreadable: a passing shortage, whose
answer is not kept (the package scan's folder and git's files are read again next time)."""

shortages = 0
"""How many children :func:`spawn` could not start for a passing shortage (no pipe:
:data:`SHORTAGES`; no process: ``EAGAIN``, as under ``RLIMIT_NPROC``): an answer computed
while it grew is not kept."""


def debug(message: str, *args: object) -> None:
    """Log ``message % args`` at DEBUG on the ``tango_stepinfo`` logger.

    :mod:`logging` costs milliseconds to import, so it is loaded on the first fallback only;
    when the process lacks the file descriptors or memory to load it (:data:`SHORTAGES`), the
    line is dropped (the record's ``fallbacks`` still say why).
    """
    try:
        import logging
    except OSError as e:
        if e.errno in SHORTAGES:
            return
        raise
    logging.getLogger("tango_stepinfo").debug(message, *args)


def load(name: str) -> Any:
    """The module ``name`` (absolute: ``"tango_stepinfo._git"``), imported now if it is not yet;
    or, when the process lacks the file descriptors or memory to read its file
    (:data:`SHORTAGES`: every import of a module not loaded yet then fails), the reason as a
    ``str``: the probe that needs it falls back, notes why, and the next record tries again.

    The probe modules load with the first record, not with ``import tango_stepinfo``; without
    this, a process out of file descriptors before its first record could not make one.
    """
    try:
        __import__(name)
    except OSError as e:
        if e.errno not in SHORTAGES:
            raise
        debug("cannot load %s: %s", name, e)
        return f"cannot load {name.rpartition('.')[2]} ({e.strerror or type(e).__name__})"
    return sys.modules[name]


def which(name: str) -> Optional[str]:
    """Return the full path of the executable ``name`` on ``$PATH``, or ``None``."""
    exts = [""]
    if os.name == "nt":  # pragma: no cover - POSIX CI
        exts += os.environ.get("PATHEXT", ".EXE;.BAT;.CMD").lower().split(";")
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        if not folder:
            continue
        for ext in exts:
            candidate = os.path.join(folder, name + ext)
            # os.access first: it says "missing" without raising, where isfile's stat raises and
            # catches FileNotFoundError (0.02 ms less for the first record's two lookups, 3.11).
            if os.access(candidate, os.X_OK) and os.path.isfile(candidate):
                return candidate
    return None


def searchable() -> bool:
    """Whether a program named bare may be left to the C library to look for on ``$PATH`` in
    the child (``spawn(..., search=True)``, :func:`os.posix_spawnp`), as ``execvp`` and
    :mod:`subprocess` do, instead of to :func:`which` first.

    :func:`which` makes an ``access`` call per ``$PATH`` folder (0.2 ms of CPU for ``git``, in
    the ninth of eleven folders here, in a fresh process, 3.11). ``False`` where there is no
    ``posix_spawnp``, when an entry of ``$PATH`` is empty (that means the working directory
    to the C library and to :mod:`subprocess`, where :func:`which` skips it), and when
    ``$PATH`` is unset (the C library then searches its own default, which held the working
    directory first in glibc before 2.24, e.g. CentOS 7's 2.17), so that a checkout holding
    an executable named ``uname`` or ``git`` is never run.
    """
    path = os.environ.get("PATH")
    return hasattr(os, "posix_spawnp") and path is not None and "" not in path.split(os.pathsep)


def run(
    argv: Sequence[str],
    timeout: float,
    env: Optional[Mapping[str, str]] = None,
    sink: Optional[Sink] = None,
) -> Optional[Tuple[int, bytes]]:
    """Run ``argv`` (``argv[0]`` a full path) and return its exit status and standard output.

    Standard input and error are ``/dev/null``. The child is killed after ``timeout`` seconds.
    Uses :func:`os.posix_spawn` where there is one, so that :mod:`subprocess` (milliseconds to
    import) is not needed; :mod:`subprocess` elsewhere.

    :param sink: when given, called with each chunk of the output as it is read, and the output
        returned is ``b""``: output of any size is handled without holding it whole.
    :returns: ``(status, stdout)``; ``None`` when the command could not be started or timed out
        (the reason is logged). The status is negative for a child killed by a signal.
    """
    if hasattr(os, "posix_spawn"):
        child = spawn(argv, env)
        return None if child is None else collect(argv[0], child, timeout, sink)
    return run_subprocess(argv, timeout, env, sink)


def spawn(
    argv: Sequence[str], env: Optional[Mapping[str, str]], search: bool = False
) -> Optional[Tuple[int, int]]:
    """Start ``argv`` with :func:`os.posix_spawn`; ``(pid, fd of its stdout)``, or ``None``.

    With ``search``, ``argv[0]`` is a bare name, looked for on ``$PATH`` by the C library in the
    child (:func:`os.posix_spawnp`, as ``execvp`` and :mod:`subprocess` look for it), so that
    this process makes no :func:`which` lookup; not found there is absence: ``None``, no log.

    ``None`` too when no pipe can be had (``EMFILE``: the process is at its ``RLIMIT_NOFILE``).
    The child leads a process group of its own, so that :func:`kill` stops what it started too
    (a clean filter or hook that ``git`` runs), which would otherwise outlive it. Its standard
    input is ``/dev/null``, so being outside the terminal's foreground group stops nothing.

    Signals are blocked from before the start until the child is handed back (two
    ``sigprocmask`` calls, the child starting with the mask of before): a Python signal
    handler raising (``KeyboardInterrupt``) runs at the end, when the child is stopped and
    reaped before the exception propagates, never between the start and the hand-over,
    where the child would be lost, left running and then unreaped. (Only this thread's signals
    wait: a signal sent to a process whose other threads do not block it reaches one of those,
    and its handler may still run in that window, a few bytecodes wide.)
    """
    global shortages
    try:
        read_end, write_end = os.pipe()  # both non-inheritable: the child keeps only its copy
    except OSError as e:
        shortages += e.errno in SHORTAGES
        debug("could not run %s: %s", argv[0], e)
        return None
    blocked = _block_signals()
    pid = None
    try:
        try:
            devnull = os.open(os.devnull, os.O_RDWR)
            try:
                pid = (os.posix_spawnp if search else os.posix_spawn)(
                    argv[0],
                    list(argv),
                    # os.environb: the variables of os.environ (one dict underneath), as bytes
                    # that need no encoding: 0.03 ms less CPU a child (3.11, 37 variables).
                    getattr(os, "environb", os.environ) if env is None else env,
                    file_actions=[
                        (os.POSIX_SPAWN_DUP2, devnull, 0),
                        (os.POSIX_SPAWN_DUP2, write_end, 1),
                        (os.POSIX_SPAWN_DUP2, devnull, 2),
                    ],
                    setpgroup=0,  # a group of its own: kill() stops what it started too
                    **({} if blocked is None else {"setsigmask": blocked}),
                )
            finally:
                os.close(devnull)
        except (OSError, ValueError) as e:  # ValueError: a NUL byte in an argument
            if isinstance(e, OSError):
                shortages += e.errno in SHORTAGES or e.errno == errno.EAGAIN
            if not (search and isinstance(e, FileNotFoundError)):  # not on $PATH: no log
                debug("could not run %s: %s", argv[0], e)
        finally:
            os.close(write_end)
        if blocked is not None:
            _unblock_signals(blocked)  # a handler of a signal that came meanwhile runs here
    except BaseException:
        os.close(read_end)
        if pid is not None:
            kill(pid)
        raise
    if pid is None:
        os.close(read_end)
        return None
    return pid, read_end


_ALL_SIGNALS: Optional[Any] = None


def _block_signals() -> Optional[Any]:
    """Block every signal in this thread; the mask of before, or ``None`` where signals
    cannot be blocked (then nothing is)."""
    global _ALL_SIGNALS
    # _signal is loaded by the interpreter at startup; signal.py costs 7 ms (it imports enum).
    import _signal  # type: ignore[import-not-found]

    if not hasattr(_signal, "pthread_sigmask"):  # pragma: no cover - Windows
        return None
    if _ALL_SIGNALS is None:
        _ALL_SIGNALS = _signal.valid_signals()
    try:
        return _signal.pthread_sigmask(_signal.SIG_BLOCK, _ALL_SIGNALS)
    except (OSError, ValueError):
        return None


def _unblock_signals(mask: Any) -> None:
    import _signal

    _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)


def readable(fd: int, seconds: float) -> bool:
    """Whether ``fd`` has data or end-of-file to read within ``seconds`` (``0``: right now).

    Uses :func:`select.poll` where there is one: :func:`select.select` refuses descriptors of
    1024 and more, which a process with many open files (and a raised ``RLIMIT_NOFILE``, as
    Docker gives) hands out.

    :raises OSError: or :class:`ValueError` when ``fd`` cannot be waited for.
    """
    import select

    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(max(seconds, 0.0) * 1000.0))
    return bool(select.select([fd], [], [], max(seconds, 0.0))[0])  # pragma: no cover - Windows


def kill(pid: int, grace: float = 0.5) -> None:
    """Stop the child ``pid``, and its process group when it leads one (as :func:`spawn`
    makes it: the children it started, say a filter ``git`` runs, stop with it), and reap it;
    nothing if it is already gone.

    ``SIGTERM`` first, so that a ``git`` holding ``index.lock`` removes it (git does on that
    signal; ``SIGKILL`` would leave it behind and make every later git command in the checkout
    fail); ``SIGKILL`` when the child is still there after ``grace`` seconds. A child that
    outlives ``SIGKILL`` too for ``grace`` seconds (in uninterruptible sleep, as a ``git``
    reading from a hung NFS mount is until the mount answers) is left behind unreaped rather
    than waited for without end.
    """
    import signal

    def send(sig: int) -> None:
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:  # no such group: a child started otherwise, or gone
            os.kill(pid, sig)

    try:
        send(signal.SIGTERM)
        if _reap(pid, time.monotonic() + grace) is not None:
            return
        send(signal.SIGKILL)
        if _reap(pid, time.monotonic() + grace) is None:
            debug("child %s outlived SIGKILL for %s s, and was left behind", pid, grace)
    except OSError:
        pass  # already reaped, or reaped by the system (SIGCHLD ignored)


def collect(
    name: str, child: Tuple[int, int], timeout: float, sink: Optional[Sink] = None
) -> Optional[Tuple[int, bytes]]:
    """Read a child's output to its end and reap it; kill it after ``timeout`` seconds.

    Never raises: when the output cannot be read the child is killed, and ``None`` returned.
    An exception raised meanwhile by a signal handler (``KeyboardInterrupt``) propagates, the
    child killed and reaped first.
    With a ``sink``, each chunk is handed to it instead of being kept (see :func:`run`).

    A child that has already exited (as ``uname -p``, started well before it is collected,
    usually has) is read without waiting: no :func:`readable`, whose :mod:`select` costs 0.2 ms
    to import (3.11, ``-X importtime``, busy 2-core machine). If something else still holds
    the pipe (a grandchild), its output is waited for as a running child's is.

    The ``timeout`` bounds the whole: a grandchild that keeps writing into the pipe after the
    child exited, and a child that closes its output but keeps running, are given up on at the
    deadline as a slow child is (the child is killed and reaped, the pipe closed).
    """
    pid, read_end = child
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        ended = _exited(pid)
        if ended:
            os.set_blocking(read_end, False)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or (not ended and not readable(read_end, left)):
                kill(pid)
                debug("%s took more than %s s and was killed", name, timeout)
                return None
            try:
                chunk = os.read(read_end, 65536)
            except BlockingIOError:  # exited, but a grandchild holds the pipe: wait for it
                ended = False
                os.set_blocking(read_end, True)
                continue
            if not chunk:
                break
            if sink is None:
                chunks.append(chunk)
            else:
                sink(chunk)
    except (OSError, ValueError) as e:
        kill(pid)
        debug("cannot read the output of %s (%s), it was killed", name, e)
        return None
    except BaseException:  # KeyboardInterrupt, a SIGTERM handler's exception: it propagates,
        kill(pid)  # and the child does not outlive the wait for it
        raise
    finally:
        os.close(read_end)
    try:
        status = _reap(pid, deadline)
    except OSError as e:  # ChildProcessError: SIGCHLD is ignored, so nobody gets the status
        debug("cannot get the exit status of %s: %s", name, e)
        return None
    except BaseException:
        kill(pid)
        raise
    if status is None:
        kill(pid)
        debug("%s closed its output but ran for more than %s s, and was killed", name, timeout)
        return None
    code = os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status
    return code, b"".join(chunks)


def _reap(pid: int, deadline: float) -> Optional[int]:
    """Reap the child ``pid``, waiting for it until ``deadline``; its wait status, or ``None``
    when it still runs then.

    A child usually exits right after closing its output, but about one time in four (a
    ``git --version``, busy 2-core machine) it has not yet when the end of the output is read.
    It is then waited for on a pidfd (Linux 5.3 and later), which wakes at its exit; where there
    is none (older kernels, seccomp filters refusing it), by polling every 0.1 to 10 ms.

    :raises OSError: :exc:`ChildProcessError` when the status cannot be had (SIGCHLD ignored).
    """
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        return status
    pidfd = None
    if hasattr(os, "pidfd_open"):
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:  # ENOSYS before Linux 5.3; EPERM under some seccomp filters
            pidfd = None
    try:
        delay = 0.0001
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if pidfd is not None:
                try:
                    readable(pidfd, left)
                except (OSError, ValueError):  # select() refuses fds of 1024 and more: poll
                    os.close(pidfd)
                    pidfd = None
            if pidfd is None:
                time.sleep(min(delay, left))
                delay = min(delay * 2, 0.01)
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _exited(pid: int) -> bool:
    """Whether the child ``pid`` has exited, without reaping it (``waitid`` with ``WNOWAIT``);
    ``False`` when that cannot be told."""
    if not hasattr(os, "waitid") or not hasattr(os, "WNOWAIT"):
        return False  # pragma: no cover - macOS before Python 3.13, Windows
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except OSError:  # ChildProcessError: SIGCHLD is ignored, or it was reaped elsewhere
        return False


def run_subprocess(
    argv: Sequence[str],
    timeout: float,
    env: Optional[Mapping[str, str]],
    sink: Optional[Sink] = None,
) -> Optional[Tuple[int, bytes]]:
    import subprocess

    if sink is not None:
        return _stream_subprocess(argv, timeout, env, sink)
    try:
        done = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        debug("%s took more than %s s and was killed", argv[0], timeout)
        return None
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in an argument
        debug("could not run %s: %s", argv[0], e)
        return None
    return done.returncode, done.stdout


def _stream_subprocess(
    argv: Sequence[str], timeout: float, env: Optional[Mapping[str, str]], sink: Sink
) -> Optional[Tuple[int, bytes]]:
    """:func:`_run_subprocess` handing the output to ``sink`` chunk by chunk."""
    import subprocess

    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in an argument
        debug("could not run %s: %s", argv[0], e)
        return None
    fired: List[bool] = []

    def expire() -> None:
        fired.append(True)
        proc.kill()

    import threading  # lazily: 0.6 ms at import, and only this rare path needs it

    timer = threading.Timer(timeout, expire)
    timer.start()
    try:
        assert proc.stdout is not None
        while True:
            chunk = proc.stdout.read(65536)
            if not chunk:
                break
            sink(chunk)
        code = proc.wait()
    except OSError as e:
        proc.kill()
        proc.wait()
        debug("cannot read the output of %s (%s), it was killed", argv[0], e)
        return None
    finally:
        timer.cancel()
        if proc.stdout is not None:
            proc.stdout.close()
    if fired:
        debug("%s took more than %s s and was killed", argv[0], timeout)
        return None
    return code, b""


def sig(path: str) -> Sig:
    """The ``(mtime_ns, size, inode, links)`` of ``path``; ``None`` when it cannot be stat'ed.

    Git and pip replace files by renaming new ones into place, so a file's inode changes on
    every update even within one tick of the file-system clock; a folder's link count changes
    when a sub-folder (a ``.dist-info``) is added or removed, within one tick too. A path that
    no file can have (a NUL byte, a lone surrogate) is ``None`` as a missing file is.
    """
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino, st.st_nlink


def unchanged(deps: Deps) -> bool:
    """Whether every path in ``deps`` still has the :func:`sig` recorded with it.

    The check behind every cached fact that files can change: one ``stat`` per path. A path
    missing before is asked with :func:`os.access`, which says "still missing" without the cost
    of an exception.
    """
    access, exists = os.access, os.F_OK
    for path, old in deps:
        if old is None:
            try:
                if access(path, exists):
                    return False
            except ValueError:  # a path no file can have: still missing
                pass
        elif sig(path) != old:
            return False
    return True
