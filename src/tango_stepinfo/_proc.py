"""Running commands and watching files, for the probes (:mod:`._probe`) and git (:mod:`._git`).

Small helpers both use, in a module of their own so that neither imports the other: logging at
DEBUG, finding and running executables without :mod:`subprocess` (:func:`os.posix_spawn`), and
the ``stat`` signatures behind every cached fact that files can change. Nothing heavy is
imported at module import (:mod:`logging`, :mod:`select`, :mod:`subprocess` on first use).
"""

from __future__ import annotations

# _signal is loaded by the interpreter at startup (signal.py would cost 7 ms: it imports enum);
# bound here, not where used: an import fails at interpreter exit, where a finalizer may run.
import _signal  # type: ignore[import-not-found]
import _thread
import contextlib
import errno
import io
import os
import stat
import sys
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

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
    "Child",
    "NotARegularFile",
    "collect",
    "debug",
    "kill",
    "load",
    "open_file",
    "open_regular",
    "owned",
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
    """Return the full path of the executable ``name`` on ``$PATH``, or ``None``.

    Only absolute folders of ``$PATH`` are looked in: an empty entry, ``.`` or any relative
    one names a folder of the working directory, and a checkout holding an executable named
    ``uname`` or ``git`` (untracked, from a clone or an archive) must never be run by a record
    made there. (A shell or :mod:`subprocess` would look there: a ``$PATH`` so set is taken to
    be a mistake, not a wish to run what the current folder holds.)
    """
    exts = [""]
    if os.name == "nt":  # pragma: no cover - POSIX CI
        exts += os.environ.get("PATHEXT", ".EXE;.BAT;.CMD").lower().split(";")
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        if not os.path.isabs(folder):
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
    ``posix_spawnp``, when an entry of ``$PATH`` is not absolute (empty, ``.``, ``bin``: a
    folder of the working directory to the C library and to :mod:`subprocess`, where
    :func:`which` skips it), and when ``$PATH`` is unset (the C library then searches its own
    default, which held the working directory first in glibc before 2.24, e.g. CentOS 7's
    2.17), so that a checkout holding an executable named ``uname`` or ``git`` is never run.
    """
    path = os.environ.get("PATH")
    return (
        hasattr(os, "posix_spawnp")
        and path is not None
        and all(map(os.path.isabs, path.split(os.pathsep)))
    )


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
) -> Optional[Child]:
    """Start ``argv`` with :func:`os.posix_spawn`; the :class:`Child`, or ``None``.

    With ``search``, ``argv[0]`` is a bare name, looked for on ``$PATH`` by the C library in the
    child (:func:`os.posix_spawnp`, as ``execvp`` and :mod:`subprocess` look for it), so that
    this process makes no :func:`which` lookup; not found there is absence: ``None``, no log.

    ``None`` too when no pipe can be had (``EMFILE``: the process is at its ``RLIMIT_NOFILE``).
    The child leads a process group of its own, so that :func:`kill` stops what it started too
    (a clean filter or hook that ``git`` runs), which would otherwise outlive it. Its standard
    input is ``/dev/null``, so being outside the terminal's foreground group stops nothing.

    Signals are blocked from before the pipe is made until the :class:`Child` owns it and the
    child (three ``pthread_sigmask`` calls, the child starting with the mask of before): a
    Python signal handler raising (``KeyboardInterrupt``) runs before anything is made, or at
    the end, when the child is stopped and reaped before the exception propagates; never
    between, where the pipe or the child would be lost, left open, running and then unreaped.
    From then on the :class:`Child` owns them, wherever a handler raises. (Only this thread's
    signals wait: a signal sent to a process whose other threads do not block it reaches one
    of those, and its handler may still run in that window, a few bytecodes wide: the pipe or
    the child may then be left behind, never a descriptor closed twice, and the mask is
    restored all the same.)
    """
    global shortages
    if _dropped:
        _reap_dropped()
    before = _signal_mask()
    read_end = write_end = -1
    pid = child = None
    try:
        if _sigmask is not None and before is not None:
            _sigmask(_signal.SIG_SETMASK, _all_signals())  # a handler pending from before: here
        try:
            read_end, write_end = os.pipe()  # both non-inheritable: the child keeps its copy only
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
                    **({} if before is None else {"setsigmask": before}),
                )
            finally:
                os.close(devnull)
        except (OSError, ValueError) as e:  # ValueError: a NUL byte in an argument
            if isinstance(e, OSError):
                shortages += e.errno in SHORTAGES or e.errno == errno.EAGAIN
            if not (search and isinstance(e, FileNotFoundError)):  # not on $PATH: no log
                debug("could not run %s: %s", argv[0], e)
        finally:
            if write_end >= 0:
                os.close(write_end)
        # From here the read end is closed by its file object or by hand here, never both: a
        # handler raising just as the file object is made (for a signal another thread took)
        # would have the number closed twice, the second time maybe another thread's file.
        fd, read_end = read_end, -1
        if pid is None:
            if fd >= 0:
                os.close(fd)
        else:
            child = _Owned(pid, io.FileIO(fd, "rb"))
    except BaseException:
        if read_end >= 0:
            os.close(read_end)
        if child is None and pid is not None and _unreaped(pid):
            kill(pid)
        raise
    finally:
        if _sigmask is not None and before is not None:
            try:  # the C function itself: a Python one would check for pending handlers first
                _sigmask(_signal.SIG_SETMASK, before)  # a signal that came meanwhile: here
            except BaseException:  # (3.9 may check before the call too: again, then raise)
                _sigmask(_signal.SIG_SETMASK, before)
                if child is not None:
                    child.stop()  # now, not when the traceback holding it goes
                raise
    return child


class Child:
    """A child started by :func:`spawn`: its ``pid``, and ``out``, the read end of its standard
    output as a file object (unbuffered; read it with :func:`os.read` on its ``fileno()``).

    The child is owned by this object until it is done with (:func:`collect` reaped it,
    :meth:`stop`, :meth:`done`): dropped before, its group gets ``SIGTERM`` and the pipe is
    closed, and the next child started or record made reaps it (``SIGKILL`` if it is still
    there 0.5 s later), so that a signal handler's exception raised while it is handed from one
    function to the next (where no ``try`` can hold it) leaves no child running nor unreaped
    past the next record. Only a child of this process still waiting to be reaped is
    signalled, never a pid this process reaped already (which may by then name another
    process; a ``waitpid(-1)`` of the caller's, in another thread at that moment, is the one
    race left).

    Only a child not done with has a finalizer (it is a :class:`_Owned` until then): Python
    runs pending signal handlers in a finalizer's code too, and a handler's exception raised
    there is printed and lost. A child done with is dropped without running any Python code.
    """

    __slots__ = ("out", "pid")

    def __init__(self, pid: int, out: io.FileIO) -> None:
        self.pid: Optional[int] = pid
        self.out = out

    def stop(self) -> None:
        """Stop the child (:func:`kill`: its group too) and reap it, unless it was reaped
        already; close the pipe."""
        pid = self.pid
        if pid is not None and _unreaped(pid):
            kill(pid)
        self.done()  # only once stopped: interrupted before, the next stop() tries again

    def done(self) -> None:
        """Forget the child (reaped, or not this process's to stop: a forked process's copy of
        its parent's child) and close the pipe; dropping it then does nothing more."""
        self.pid = None
        self.out.close()
        self.__class__ = Child  # no finalizer any more (same slots: an allowed change)


class _Owned(Child):
    """A :class:`Child` not done with: dropped, it is stopped (see :class:`Child`)."""

    __slots__ = ()

    def __del__(self) -> None:
        # Short, and waiting for nothing: Python runs pending handlers in a finalizer too, and
        # an exception raised there is printed and lost. SIGTERM to its group (git removes its
        # index.lock on it); reaped later (_reap_dropped: the next record or spawn). Never
        # done() here: changing the class of an object being finalized is unsafe. Modules may
        # be torn down at interpreter exit: then the pipe is closed, nothing more.
        try:
            pid = self.pid
            if pid is not None and _unreaped(pid):
                _dropped[pid] = time.monotonic() + 0.5  # SIGKILL from then on, as kill() does
                _signal_group(pid, _signal.SIGTERM)
        except Exception:  # (not contextlib.suppress: at exit, the names here may be None)
            pass
        finally:
            # unset when a handler raised inside __init__ (a signal another thread took): the
            # file object, dropped with the call, closes the pipe, and spawn() stops the child
            out = getattr(self, "out", None)
            if out is not None:
                out.close()


_dropped: Dict[int, float] = {}
"""Children signalled by :meth:`_Owned.__del__`, to be reaped by :func:`_reap_dropped`: pid,
and when ``SIGKILL`` is due if it is still there (0.5 s after ``SIGTERM``, as :func:`kill`)."""

_reaping = _thread.allocate_lock()


def _reap_dropped() -> None:
    """Reap the dropped children that have exited since (``WNOHANG``); one still there when its
    ``SIGKILL`` is due gets it, and is reaped by a later call. Does nothing while another
    thread does it: two at once could signal a pid the other just reaped, maybe another
    process's by then."""
    if not _reaping.acquire(blocking=False):
        return
    try:
        for pid, kill_after in list(_dropped.items()):
            try:
                done = os.waitpid(pid, os.WNOHANG)[0]
            except ChildProcessError:  # reaped elsewhere
                done = pid
            if done:
                _dropped.pop(pid, None)
            elif time.monotonic() >= kill_after:
                try:
                    _signal_group(pid, _signal.SIGKILL)
                except OSError:  # EPERM: not ours to signal any more (a setuid program)
                    _dropped.pop(pid, None)
    finally:
        _reaping.release()


def _forget_dropped() -> None:
    global _reaping
    _dropped.clear()  # a forked process's: its parent's children
    _reaping = _thread.allocate_lock()  # (held by another thread at the fork: held for good)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_dropped)


def _signal_group(pid: int, sig: int) -> None:
    """Send ``sig`` to the process group ``pid`` leads, or to ``pid`` alone when it leads
    none; nothing when it is gone."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:  # no such group: a child started otherwise, or gone
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _unreaped(pid: int) -> bool:
    """Whether ``pid`` is a child of this process not reaped yet, running or exited (``waitid``
    with ``WNOWAIT``, which reaps nothing); ``False`` where that cannot be told."""
    if not hasattr(os, "waitid") or not hasattr(os, "WNOWAIT"):
        return False  # pragma: no cover - macOS before Python 3.13, Windows
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except OSError:  # ChildProcessError: not a child of this process (any more)
        return False
    return True


_ALL_SIGNALS: Optional[Any] = None

_sigmask: Optional[Callable[[int, Any], Any]] = getattr(_signal, "pthread_sigmask", None)
"""``signal.pthread_sigmask`` (``None`` on Windows), called as it is where a mask is restored:
calling a Python function first would give a pending handler its chance to raise before."""


def _signal_mask() -> Optional[Any]:
    """This thread's signal mask, read and left as it is; ``None`` where signals cannot be
    blocked (Windows), or the mask cannot be read.

    Read apart from blocking: a signal whose Python handler was pending from before raises
    right after the call that blocks (as after any call); the mask of before must then be known
    already, or the thread would be left with every signal blocked.
    """
    if _sigmask is None:  # pragma: no cover - Windows
        return None
    try:
        return _sigmask(_signal.SIG_BLOCK, ())
    except (OSError, ValueError):
        return None


def _all_signals() -> Any:
    global _ALL_SIGNALS
    if _ALL_SIGNALS is None:
        _ALL_SIGNALS = _signal.valid_signals()
    return _ALL_SIGNALS


def owned(name: str, opener: Callable[[str, int], int]) -> io.FileIO:
    """``io.FileIO(name, "rb", opener=opener)``, with this thread's signals blocked: the
    descriptor ``opener`` returns is owned by the file object from the start, which closes it
    (``with``, or when it is dropped).

    A descriptor held as an ``int`` is lost when a signal handler raises (``KeyboardInterrupt``)
    between the call that returns it and the ``try`` that would close it: Python runs pending
    handlers right after calls. The file object takes the descriptor from ``opener`` in C, and
    the few bytecodes of ``opener`` run with this thread's signals blocked (three
    ``pthread_sigmask`` calls, 4 us): a handler raises before, or once the object owns the
    descriptor. (A signal another thread takes, one that does not block it, may still trip the
    handler inside ``opener``: that descriptor is then left open, never closed twice.)

    :raises OSError: or :class:`ValueError`, as ``opener`` or :class:`io.FileIO` raise them (a
        folder: :class:`IsADirectoryError`, its descriptor closed).
    """
    before = _signal_mask()
    if _sigmask is None or before is None:  # pragma: no cover - Windows: no masks
        return io.FileIO(name, "rb", opener=opener)
    try:
        _sigmask(_signal.SIG_SETMASK, _all_signals())  # a handler pending from before: here
        return io.FileIO(name, "rb", opener=opener)
    finally:
        try:  # the C function itself: see _sigmask
            _sigmask(_signal.SIG_SETMASK, before)  # a signal that came meanwhile: here
        except BaseException:
            _sigmask(_signal.SIG_SETMASK, before)
            raise


def _open_nonblocking(path: str, flags: int) -> int:
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))


def open_file(path: str, nonblocking: bool = False) -> io.FileIO:
    """``path`` opened for reading, as a file object that owns its descriptor from the start
    (no signal handler's exception can lose it).

    With ``nonblocking``, opened with ``O_NONBLOCK`` (see :func:`owned`): a FIFO (or a
    terminal) opens at once, without waiting for a writer; a caller reading a file that may be
    one checks its :func:`os.fstat` first. Without, opened as :class:`io.FileIO` opens.

    :raises OSError: when it cannot be opened (a folder: :class:`IsADirectoryError`);
        :class:`ValueError` for a NUL byte in ``path``.
    """
    if not nonblocking:
        return io.FileIO(path, "rb")
    return owned(path, _open_nonblocking)


class NotARegularFile(OSError):
    """Raised by :func:`open_regular` for what is not a regular file; ``kind`` names it (``"a
    directory"``, ``"a FIFO"`` ...), ``None`` for a kind without a name here."""

    def __init__(self, path: str, kind: Optional[str]) -> None:
        super().__init__(f"{path}: not a regular file ({kind or 'of an unknown kind'})")
        self.kind = kind


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def open_regular(path: str) -> Tuple[io.FileIO, os.stat_result]:
    """The regular file ``path`` opened for reading (:func:`open_file` without blocking), and
    its :func:`os.fstat`: what is read is what was checked, even behind a symbolic link.

    The one place that tells a regular file from the other kinds a path may name: a FIFO would
    wait for a writer, a device (``/dev/zero``) never end, a folder holds no text.

    :raises NotARegularFile: for any other kind (a folder too, which the file object refuses
        before it can be checked); other :class:`OSError` when it cannot be opened or checked;
        :class:`ValueError` for a NUL byte in ``path``.
    """
    try:
        f = open_file(path, nonblocking=True)
    except IsADirectoryError:
        raise NotARegularFile(path, "a directory") from None
    try:
        st = os.fstat(f.fileno())
    except BaseException:
        f.close()
        raise
    if not stat.S_ISREG(st.st_mode):
        f.close()
        raise NotARegularFile(path, next((k for test, k in _KINDS if test(st.st_mode)), None))
    return f, st


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
    try:
        _signal_group(pid, _signal.SIGTERM)
        if _reap(pid, time.monotonic() + grace) is not None:
            return
        _signal_group(pid, _signal.SIGKILL)
        if _reap(pid, time.monotonic() + grace) is None:
            debug("child %s outlived SIGKILL for %s s, and was left behind", pid, grace)
    except OSError:
        pass  # already reaped, or reaped by the system (SIGCHLD ignored)


def collect(  # noqa: PLR0915 - one read loop, each way out stopping the child
    name: str, child: Child, timeout: float, sink: Optional[Sink] = None
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

    The ``child`` is done with when this returns or raises: reaped, or stopped and reaped (its
    ``pid`` is then ``None``), its pipe closed.
    """
    pid = child.pid
    if pid is None:  # collected before
        return None
    read_end = child.out.fileno()
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        ended = _exited(pid)
        if ended:
            os.set_blocking(read_end, False)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or (not ended and not readable(read_end, left)):
                child.stop()
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
        child.stop()
        debug("cannot read the output of %s (%s), it was killed", name, e)
        return None
    except BaseException:  # KeyboardInterrupt, a SIGTERM handler's exception: it propagates,
        child.stop()  # and the child does not outlive the wait for it
        raise
    finally:
        child.out.close()
    try:
        status = _reap(pid, deadline)
    except OSError as e:  # ChildProcessError: SIGCHLD is ignored, so nobody gets the status
        child.done()
        debug("cannot get the exit status of %s: %s", name, e)
        return None
    except BaseException:
        child.stop()
        raise
    if status is None:
        child.stop()
        debug("%s closed its output but ran for more than %s s, and was killed", name, timeout)
        return None
    child.done()
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
        try:  # owned by a file object at once (see owned): a handler raising cannot leak it
            pidfd = owned(f"<pidfd of {pid}>", lambda _name, _flags: os.pidfd_open(pid))
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
                    readable(pidfd.fileno(), left)
                except (OSError, ValueError):  # select() refuses fds of 1024 and more: poll
                    pidfd.close()
                    pidfd = None
            if pidfd is None:
                time.sleep(min(delay, left))
                delay = min(delay * 2, 0.01)
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
    finally:
        if pidfd is not None:
            pidfd.close()


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
