"""Running commands and watching files: the helpers the probes and git share."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from tango_stepinfo import _proc

from .conftest import fake_bin, make_repo, no_free_fd, run_python


@pytest.fixture
def debug_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="tango_stepinfo")
    return caplog


def start_tool(tmp_path: Path, script: str) -> _proc.Child:
    """A fake program running the shell ``script``, started with :func:`_proc.spawn`."""
    tool = fake_bin(tmp_path / "bin", "tool", script)
    child = _proc.spawn([str(tool / "tool")], None)
    assert child is not None and child.pid is not None
    return child


def test_run_reports_a_missing_program(debug_log: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    assert _proc.run([str(tmp_path / "missing")], 1.0) is None
    assert "could not run" in debug_log.text


def test_which(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = fake_bin(tmp_path / "bin", "tool", "exit 0\n")
    (bin_dir / "plain").write_text("not executable")
    monkeypatch.setenv("PATH", os.pathsep.join(["", str(tmp_path / "nothing"), str(bin_dir)]))
    assert _proc.which("tool") == str(bin_dir / "tool")
    assert _proc.which("plain") is None
    assert _proc.which("absent") is None


@pytest.mark.skipif(not hasattr(os, "posix_spawnp"), reason="no os.posix_spawnp")
def test_spawn_searching_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, debug_log: pytest.LogCaptureFixture
) -> None:
    """A bare name is looked for on $PATH as which() looks for it: files that are not
    executable are skipped; a name found nowhere is absence, started as None without a log."""
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "tool").write_text("#!/bin/sh\necho wrong\n")  # not executable
    bin_dir = fake_bin(tmp_path / "bin", "tool", "echo found $1\n")
    monkeypatch.setenv(
        "PATH", os.pathsep.join([str(tmp_path / "nothing"), str(plain), str(bin_dir)])
    )
    child = _proc.spawn(["tool", "-p"], None, search=True)
    assert child is not None
    assert _proc.collect("tool", child, 5.0) == (0, b"found -p\n")
    assert _proc.spawn(["absent", "-p"], None, search=True) is None
    assert debug_log.text == ""


def test_unchanged_follows_replacement_creation_and_removal(tmp_path: Path) -> None:
    kept, replaced, created, removed = (str(tmp_path / n) for n in ("kept", "rep", "new", "gone"))
    for path in (kept, replaced, removed):
        Path(path).write_text("x")
    deps = tuple((p, _proc.sig(p)) for p in (kept, replaced, created, removed, "/x\0y"))
    assert deps[2][1] is None and deps[4][1] is None
    assert _proc.unchanged(deps)
    Path(replaced + ".tmp").write_text("y")  # same size, likely the same mtime tick: a new inode
    os.replace(replaced + ".tmp", replaced)
    assert not _proc.unchanged(deps)
    assert _proc.unchanged(tuple((p, _proc.sig(p)) for p, _ in deps))
    Path(created).write_text("")
    assert not _proc.unchanged(deps[2:3])
    os.remove(removed)
    assert not _proc.unchanged(deps[3:4])


def test_run_returns_status_and_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = fake_bin(tmp_path / "bin", "tool", "echo out; echo err >&2; exit 3\n")
    assert _proc.run([str(bin_dir / "tool")], 5.0) == (3, b"out\n")


def test_the_probes_and_git_do_not_import_each_other() -> None:
    import ast

    src = Path(_proc.__file__).parent
    for name, other in (("_git.py", "_probe"), ("_proc.py", "_probe"), ("_proc.py", "_git")):
        tree = ast.parse((src / name).read_text("utf-8"))
        imported = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
        } | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert other not in imported, (name, other)


WAIT_EXITED = """
def wait_exited(child):
    for _ in range(500):  # until it has exited (not reaped: collect gets its status)
        if os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return child
        time.sleep(0.01)
    raise AssertionError("the child did not exit")
"""


def _spawned_and_exited(path: Path) -> _proc.Child:
    child = _proc.spawn([str(path)], None)
    assert child is not None
    found: Dict[str, Any] = {"os": os, "time": time}
    exec(WAIT_EXITED, found)
    return found["wait_exited"](child)  # type: ignore[no-any-return]


def test_collect_reads_an_exited_child_without_select(tmp_path: Path) -> None:
    # In a fresh interpreter: a child that has exited is read without waiting, so select (0.2 ms
    # to import) stays unloaded.
    tool = fake_bin(tmp_path / "bin", "tool", "head -c 60000 /dev/zero | tr '\\0' x; exit 4\n")
    code = (
        "import sys, os, time\n"
        f"sys.path.insert(0, {str(Path(_proc.__file__).parent.parent)!r})\n"
        "from tango_stepinfo import _proc\n"
        f"{WAIT_EXITED}\n"
        f"child = wait_exited(_proc.spawn([{str(tool / 'tool')!r}], None))\n"
        "status, out = _proc.collect('tool', child, 5.0)\n"
        "print(status, len(out), set(out), 'select' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert done.stdout.split() == ["4", "60000", "{120}", "False"]


def test_collect_waits_for_a_grandchild_holding_the_pipe(tmp_path: Path) -> None:
    # The child exits at once; a grandchild it left behind writes later, through the same pipe.
    tool = fake_bin(tmp_path / "bin", "tool", "(sleep 0.3; echo late) &\necho early\n")
    child = _spawned_and_exited(tool / "tool")
    assert _proc.collect("tool", child, 5.0) == (0, b"early\nlate\n")


def test_collect_gives_up_on_a_grandchild_that_keeps_writing(tmp_path: Path) -> None:
    # The child exits at once, leaving a grandchild that writes without end through the pipe:
    # the timeout still holds (it was checked only while the child ran, so this read forever).
    tool = fake_bin(tmp_path / "bin", "tool", "(yes &)\n")
    child = _spawned_and_exited(tool / "tool")
    started = time.monotonic()

    def slow_sink(chunk: bytes) -> None:
        time.sleep(0.002)  # the grandchild refills the pipe meanwhile
        assert time.monotonic() - started < 30, "collect did not give up"

    pid = child.pid
    assert pid is not None
    assert _proc.collect("tool", child, 0.5, slow_sink) is None
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped; the grandchild died of SIGPIPE


def test_collect_gives_up_on_a_child_that_closes_its_output_and_runs_on(
    tmp_path: Path, debug_log: pytest.LogCaptureFixture
) -> None:
    # End of output does not mean exit: the wait for the status is bounded by the timeout too.
    child = start_tool(tmp_path, "echo x86_64\nexec 1>&-\nexec sleep 60\n")
    pid = child.pid
    assert _proc.collect("tool", child, 0.5) is None
    assert "closed its output" in debug_log.text
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # killed and reaped


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "polling"])
def test_collect_waits_for_a_child_that_exits_after_closing_its_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pidfd: bool
) -> None:
    if not pidfd:  # kernels before 5.3, or a seccomp filter refusing pidfd_open

        def refused(pid: int, flags: int = 0) -> int:
            raise OSError(38, "Function not implemented")

        monkeypatch.setattr(os, "pidfd_open", refused, raising=False)
    child = start_tool(tmp_path, "echo out\nexec 1>&-\nsleep 0.2\nexit 5\n")
    assert _proc.collect("tool", child, 5.0) == (5, b"out\n")


def test_kill_leaves_a_child_that_outlives_sigkill_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, debug_log: pytest.LogCaptureFixture
) -> None:
    # A child in uninterruptible sleep (a git reading a hung NFS mount) outlives SIGKILL until
    # the mount answers: kill() waited for it without end, and the record with it.
    import signal

    child = start_tool(tmp_path, "exec sleep 1000\n")
    pid = child.pid
    child.done()  # its pipe closed; the child is this test's to kill
    real_kill = os.kill
    monkeypatch.setattr(os, "kill", lambda pid, sig: None)  # signals do not reach it
    monkeypatch.setattr(os, "killpg", lambda pid, sig: None)

    def hung(signum: int, frame: object) -> None:
        raise AssertionError("kill() waited for a child that does not die")

    before = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    try:
        _proc.kill(pid, grace=0.1)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, before)
        monkeypatch.undo()
    try:
        assert os.waitpid(pid, os.WNOHANG) == (0, 0)  # left behind, still running
        assert "outlived SIGKILL" in debug_log.text
    finally:
        real_kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


@pytest.mark.skipif(not hasattr(os, "posix_spawn"), reason="the posix_spawn path")
def test_run_without_a_free_file_descriptor_is_none(
    tmp_path: Path, debug_log: pytest.LogCaptureFixture
) -> None:
    """``os.pipe()`` failing with ``EMFILE`` is a child that could not be started, not an error."""
    tool = str(fake_bin(tmp_path / "bin", "tool", "echo out\n") / "tool")
    with no_free_fd():
        assert _proc.spawn([tool], None) is None
        assert _proc.run([tool], 5.0) is None
    assert "Too many open files" in debug_log.text
    assert _proc.run([tool], 5.0) == (0, b"out\n")


@pytest.mark.skipif(not hasattr(os, "posix_spawn"), reason="the posix_spawn path")
@pytest.mark.parametrize("closes_output", [False, True], ids=["writing", "output-closed"])
def test_an_exception_while_collecting_stops_the_child(tmp_path: Path, closes_output: bool) -> None:
    """A ``KeyboardInterrupt`` (or a ``SIGTERM`` handler's exception) raised while a child is
    waited for propagates, and the child is killed and reaped, not left running."""
    import signal

    script = "exec >&-; sleep 30\n" if closes_output else "sleep 30\n"
    tool = str(fake_bin(tmp_path / "bin", "tool", script) / "tool")

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    child = _proc.spawn([tool], None)
    assert child is not None and child.pid is not None
    pid = child.pid
    before = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    try:
        with pytest.raises(KeyboardInterrupt):
            _proc.collect("tool", child, 20.0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        with pytest.raises(ChildProcessError):  # reaped: no such child any more
            os.waitpid(pid, os.WNOHANG)
        assert child.out.closed  # its pipe closed
        assert child.pid is None  # done with: dropping it does nothing more
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, before)
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except OSError:
            pass


@pytest.mark.skipif(not hasattr(os, "posix_spawn"), reason="the posix_spawn path")
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts fds in /proc/self/fd")
def test_a_signal_while_a_child_starts_stops_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signal whose handler raises, coming as the child starts (before it is handed back),
    propagates once the child is handed over: the child is killed and reaped, no fd left open,
    and the child started with the signal mask the process had, not the blocked one."""
    import signal

    tool = str(fake_bin(tmp_path / "bin", "tool", "grep SigBlk /proc/self/status; sleep 30\n"))
    started: List[int] = []
    real_spawn = os.posix_spawn

    def spawn_then_signal(*args: Any, **kwargs: Any) -> int:
        pid = real_spawn(*args, **kwargs)
        started.append(pid)
        # As if Ctrl-C came just then, to this thread: a signal sent to the process may be
        # delivered to another thread of it (pytest's), whose handler then runs in the window.
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
        return pid

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "posix_spawn", spawn_then_signal)
    before = signal.signal(signal.SIGUSR1, interrupt)
    fds = len(os.listdir("/proc/self/fd"))
    try:
        with pytest.raises(KeyboardInterrupt):
            _proc.spawn([tool + "/tool"], None)
        assert len(started) == 1
        with pytest.raises(ChildProcessError):  # reaped: no such child any more
            os.waitpid(started[0], os.WNOHANG)
        assert len(os.listdir("/proc/self/fd")) == fds
        assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == set()
    finally:
        signal.signal(signal.SIGUSR1, before)
        for pid in started:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
    monkeypatch.setattr(os, "posix_spawn", real_spawn)
    child = _proc.spawn([tool + "/tool"], None)
    assert child is not None
    assert child.out.readline() == b"SigBlk:\t0000000000000000\n"
    child.stop()


def test_a_timeout_stops_what_the_child_started_too(tmp_path: Path) -> None:
    # git killed after its timeout left a clean filter it ran going (reparented to init).
    pid_file = tmp_path / "grandchild"
    child = start_tool(tmp_path, f'sleep 60 &\necho $! > "{pid_file}"\nexec sleep 60\n')
    while not pid_file.exists() or not pid_file.read_text().strip():
        time.sleep(0.01)  # the child wrote its grandchild's pid (bounded: the test's timeout)
    grandchild = int(pid_file.read_text())
    assert _proc.collect("tool", child, 0.5) is None
    for _ in range(500):  # once signalled, it goes; reparented, init reaps it
        state = Path(f"/proc/{grandchild}/stat")
        if not state.exists() or state.read_text().split(")")[-1].split()[0] == "Z":
            break
        time.sleep(0.01)
    else:
        os.kill(grandchild, 9)
        raise AssertionError("the grandchild outlived the child's timeout")


@pytest.mark.skipif(not hasattr(os, "posix_spawnp"), reason="posix_spawnp is POSIX")
@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/usr/bin:/bin", True),
        (":/usr/bin", False),
        ("/usr/bin:", False),
        ("/a::/b", False),
        (".:/usr/bin", False),
        ("/usr/bin:bin", False),
        ("/usr/bin:../tools", False),
    ],
)
def test_searchable_refuses_a_path_entry_that_is_not_absolute(
    monkeypatch: pytest.MonkeyPatch, path: str, expected: bool
) -> None:
    """An empty, ``.`` or relative $PATH entry is a folder of the working directory to the C
    library's search; so was the default search path of glibc before 2.24 when $PATH is
    unset: which() is used then."""
    monkeypatch.setenv("PATH", path)
    assert _proc.searchable() is expected
    monkeypatch.delenv("PATH")
    assert _proc.searchable() is False


SIGNALS_ANYWHERE = """
import gc, os, random, signal, time, _signal
from tango_stepinfo import PlatformMetadata, StepInfo, _git, _probe
class Interrupt(BaseException):  # as KeyboardInterrupt, or a SIGTERM handler's SystemExit
    pass
armed, rate = False, 0.0
def handler(signum, frame):
    global armed
    if armed and random.random() < rate:
        armed = False  # one a record, and never in this script's own lines
        raise Interrupt
signal.signal(signal.SIGALRM, handler)
if THREAD:  # an idle thread, not blocking signals: the kernel may hand it the signal, and the
    import threading  # handler then runs in the main thread even where that blocks signals
    threading.Thread(target=threading.Event().wait, daemon=True).start()
StepInfo("w", "W", set(), True)  # imported, so that the signals come while records are made
_git.clear()
_probe.clear_cache()
fds = set(os.listdir("/proc/self/fd"))
random.seed(SEED)
interrupted, blocked = 0, []
for i in range(RECORDS):
    _git.clear()  # each a first record: uname and git started, files read again
    _probe.clear_cache()
    rate = random.choice([0.02, 0.1, 0.5])  # early in the record, or late, waiting for children
    signal.setitimer(signal.ITIMER_REAL, random.uniform(5e-5, 4e-4), 3e-4)
    try:
        armed = True
        StepInfo("a", "A", set(), True)
        armed = False
    except Interrupt:
        interrupted += 1
    signal.setitimer(signal.ITIMER_REAL, 0)
    blocked += _signal.pthread_sigmask(_signal.SIG_BLOCK, ())
_git.clear()
gc.collect()  # what frames of the tracebacks held (in a cycle) is gone with them
time.sleep(0.2)
PlatformMetadata()  # reaps what was dropped (SIGTERM) in the last records, once it has ended
try:
    children = os.waitpid(-1, os.WNOHANG)
except ChildProcessError:
    children = "none"
left = sorted(set(os.listdir("/proc/self/fd")) - fds)
print(interrupted > RECORDS // 10, "blocked", len(blocked), "children", children, "fds", len(left),
      *(os.readlink("/proc/self/fd/" + fd) for fd in left if os.path.exists("/proc/self/fd/" + fd)))
"""


@pytest.mark.skipif(not hasattr(os, "posix_spawn"), reason="the posix_spawn path")
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts fds in /proc/self/fd")
@pytest.mark.skipif(shutil.which("git") is None, reason="the dirty check's git child")
@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("thread", [False, True], ids=["one-thread", "idle-thread"])
def test_a_signal_handler_raising_anywhere_in_a_record_leaves_nothing_behind(
    tmp_path: Path, seed: int, thread: bool
) -> None:
    """A handler that raises (``KeyboardInterrupt``) at any moment of a first record, here
    timer signals every 0.3 ms through 150 records (300 with an idle thread), some interrupted
    early, some late: once each exception is handled, no descriptor is left open (a pipe
    between ``os.pipe()`` and the ``try`` that closes it, a file between ``os.open`` and its
    ``try``), no child left unreaped, and the thread's signal mask is the one it had (never
    all blocked).

    Before the fix this failed every run (3.11): pipes and files left open, and in a longer
    run (300 records) every signal left blocked for good, Ctrl-C ignored from then on.

    With an idle thread that does not block signals, the handler may run inside the few
    bytecodes where the main thread blocks them (documented): a descriptor or a child may be
    left then, but the mask is always restored and no descriptor is closed twice (that raised
    EBADF out of the record, or closed another thread's file); it failed one run in two before
    (3.11, 3.13)."""
    repo = make_repo(tmp_path / "repo")
    (repo / "file.txt").write_text("changed\n")  # the dirty check runs git diff each time
    records = "300" if thread else "150"  # (the idle thread takes the signal one time in a few)
    code = SIGNALS_ANYWHERE.replace("SEED", str(seed)).replace("RECORDS", records)
    code = code.replace("THREAD", str(thread))
    done = run_python(code, cwd=repo, timeout=300, GIT_CEILING_DIRECTORIES=str(tmp_path))
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    printed = done.stdout.decode().split()
    assert printed[:3] == ["True", "blocked", "0"], done.stderr.decode()[-2000:]
    if not thread:
        assert printed[3:] == ["children", "none", "fds", "0"], done.stderr.decode()[-2000:]
    assert b"Exception ignored" not in done.stderr  # none raised in a finalizer either


def exited(pid: int, seconds: float = 5.0) -> bool:
    """Whether the child ``pid`` has exited, reaped or not, waiting ``seconds`` at most."""
    for _ in range(int(seconds * 100)):
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:  # reaped
            return True
        time.sleep(0.01)
    return False


@pytest.mark.skipif(not hasattr(os, "posix_spawn"), reason="the posix_spawn path")
@pytest.mark.parametrize("ignores_sigterm", [False, True])
def test_a_child_dropped_before_it_is_collected_is_stopped_and_its_pipe_closed(
    tmp_path: Path, ignores_sigterm: bool
) -> None:
    """What a handler's exception between spawn() and collect() leaves: the Child, dropped. Its
    finalizer waits for nothing (an exception raised in it would be lost): SIGTERM, then the
    next spawn reaps it, or, 0.5 s after SIGTERM, sends SIGKILL to one that ignores it, and a
    later one reaps it."""
    ready = tmp_path / "ready"
    script = ("trap '' TERM\n" if ignores_sigterm else "") + f'touch "{ready}"\nexec sleep 60\n'
    tool = fake_bin(tmp_path / "bin", "tool", script)
    true = [shutil.which("true") or "/bin/true"]
    child = _proc.spawn([str(tool / "tool")], None)
    assert child is not None and child.pid is not None
    pid, fd = child.pid, child.out.fileno()
    for _ in range(500):  # until it ignores SIGTERM, if it does (bounded: 5 s)
        if ready.exists():
            break
        time.sleep(0.01)
    assert ready.exists()
    del child
    with pytest.raises(OSError):  # closed (nothing in this test opened another file since)
        os.fstat(fd)
    assert exited(pid, 0.6 if ignores_sigterm else 5.0) is not ignores_sigterm
    assert _proc.run(true, 5.0) == (0, b"")  # reaps it, or (0.5 s after SIGTERM) kills it
    if ignores_sigterm:
        assert exited(pid)
        assert _proc.run(true, 5.0) == (0, b"")
    with pytest.raises(ChildProcessError):  # reaped
        os.waitpid(pid, os.WNOHANG)
    assert pid not in _proc._dropped


@pytest.mark.skipif(not hasattr(os, "posix_spawn"), reason="the posix_spawn path")
def test_collect_of_a_child_collected_before_is_none(tmp_path: Path) -> None:
    child = _proc.spawn(["/bin/sh", "-c", "echo x"], None)
    assert child is not None
    assert _proc.collect("sh", child, 5.0) == (0, b"x\n")
    assert _proc.collect("sh", child, 5.0) is None


@pytest.mark.skipif(not hasattr(os, "posix_spawn"), reason="the posix_spawn path")
def test_a_dropped_child_reaped_by_someone_else_is_not_signalled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Once reaped elsewhere (os.waitpid(-1) in the caller), its pid may name another process.
    child = start_tool(tmp_path, "exit 0\n")
    assert os.waitpid(child.pid, 0)[0] == child.pid
    sent: List[Tuple[int, int]] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append((pid, sig)))
    monkeypatch.setattr(os, "killpg", lambda pid, sig: sent.append((pid, sig)))
    del child
    assert sent == []


@pytest.mark.skipif(not hasattr(os, "posix_spawn"), reason="the posix_spawn path")
def test_a_child_done_with_runs_on_and_its_pipe_is_closed(tmp_path: Path) -> None:
    # A forked process's copy of its parent's child: not its own to stop.
    import signal

    child = start_tool(tmp_path, "exec sleep 60\n")
    pid = child.pid
    try:
        child.done()
        assert child.out.closed
        del child
        assert os.waitpid(pid, os.WNOHANG) == (0, 0)  # still running
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_open_file_without_blocking_opens_a_fifo_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with _proc.open_file(str(fifo), nonblocking=True) as f:  # no writer: would block for good
        assert not f.closed
    assert f.closed


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts fds in /proc/self/fd")
def test_open_file_of_a_folder_raises_and_leaves_no_descriptor(tmp_path: Path) -> None:
    # os.open() opens a folder read-only; the file object then refuses it and must close it.
    fds = len(os.listdir("/proc/self/fd"))
    for nonblocking in (False, True):
        with pytest.raises(IsADirectoryError):
            _proc.open_file(str(tmp_path), nonblocking=nonblocking)
    assert len(os.listdir("/proc/self/fd")) == fds


def test_a_dropped_child_removed_meanwhile_is_not_removed_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Forgotten meanwhile (by a fork's hook, or the reaping of another thread): the walk over
    # the dropped children must not fail removing it (a KeyError out of a probe).
    _proc._dropped[os.getpid()] = 0.0  # not a child: "reaped elsewhere" (the dict itself:
    real_waitpid = os.waitpid  # _probe holds it by name)

    def other_thread_first(pid: int, options: int) -> Tuple[int, int]:
        _proc._dropped.clear()  # the other thread reaped and removed it meanwhile
        return real_waitpid(pid, options)

    monkeypatch.setattr(os, "waitpid", other_thread_first)
    try:
        _proc._reap_dropped()
        assert _proc._dropped == {}
    finally:
        _proc._dropped.clear()


@pytest.mark.skipif(not hasattr(os, "posix_spawn"), reason="the posix_spawn path")
def test_a_dropped_child_is_reaped_by_the_next_record_once_it_has_ended(tmp_path: Path) -> None:
    # A process that starts no more children after a hand-over was interrupted: the next
    # record (any probe of a fixed fact) reaps the dropped child, no zombie left until exit.
    from tango_stepinfo import PlatformMetadata

    PlatformMetadata()  # the fixed facts probed: this record starts no child
    child = start_tool(tmp_path, "exec sleep 60\n")
    pid = child.pid
    del child  # SIGTERM
    assert exited(pid)
    assert os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None  # zombie
    PlatformMetadata()
    with pytest.raises(ChildProcessError):  # reaped
        os.waitpid(pid, os.WNOHANG)


@pytest.mark.skipif(not hasattr(os, "posix_spawn"), reason="the posix_spawn path")
def test_a_dropped_child_has_time_to_clean_up_before_sigkill(tmp_path: Path) -> None:
    """A record made right after a child was dropped (Ctrl-C during a record, then another
    record) does not send SIGKILL on the heels of SIGTERM: git removes its index.lock on
    SIGTERM, and a SIGKILL pending with it wins (it did every time, 20 of 20)."""
    from tango_stepinfo import PlatformMetadata

    PlatformMetadata()  # the fixed facts probed: the record below starts no child
    lock = tmp_path / "index.lock"
    script = (
        f"trap 'rm -f \"{lock}\"; exit 143' TERM\n"
        f': > "{lock}"\n'  # (after the trap: once the lock is there, SIGTERM removes it)
        "exec 1>&-\n"
        "while :; do :; done\n"
    )
    child = start_tool(tmp_path, script)
    pid = child.pid
    for _ in range(500):  # until the trap is set (bounded: 5 s)
        if lock.exists():
            break
        time.sleep(0.01)
    assert lock.exists()
    del child  # SIGTERM
    PlatformMetadata()  # at once
    assert exited(pid)
    assert not lock.exists()  # its trap ran: not killed before it could
    PlatformMetadata()
    with pytest.raises(ChildProcessError):  # reaped
        os.waitpid(pid, os.WNOHANG)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs and /dev/null (POSIX)")
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts fds in /proc/self/fd")
def test_open_regular_names_what_is_not_a_regular_file_and_leaves_no_descriptor(
    tmp_path: Path,
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # no writer: an open that blocks would wait for good
    regular = tmp_path / "regular"
    regular.write_bytes(b"12345")
    fds = len(os.listdir("/proc/self/fd"))
    kinds = [(fifo, "a FIFO"), (tmp_path, "a directory"), ("/dev/null", "a character device")]
    for path, kind in kinds:
        with pytest.raises(_proc.NotARegularFile) as refused:
            _proc.open_regular(str(path))
        assert refused.value.kind == kind
    assert len(os.listdir("/proc/self/fd")) == fds
    f, st = _proc.open_regular(str(regular))
    with f:
        assert st.st_size == 5 and f.read() == b"12345"
    with pytest.raises(FileNotFoundError):
        _proc.open_regular(str(tmp_path / "missing"))


def test_a_child_half_made_when_a_handler_raised_is_dropped_quietly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A handler raising inside _Owned.__init__ (a signal another thread took, run between its
    # two assignments) left an object without ``out``: its finalizer printed AttributeError
    # ("Exception ignored in ... __del__"; the idle-thread stress test, 3.13).
    unraisable: List[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    half = _proc._Owned.__new__(_proc._Owned)
    half.pid = None
    del half
    assert unraisable == []
