"""Shared fixtures."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import pwd
import resource
import shutil
import socket
import subprocess
import sys
import time
import typing
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

import tango_stepinfo

DATA = Path(__file__).parent / "data"
TANGO_DATA = DATA / "tango_1_3_2"


def since_none(cls: type) -> Dict[str, None]:
    """``None`` for every field of ``cls`` added by this library since a version (keyword
    arguments that make a record without probing the fields newer than Tango's)."""
    return {f.name: None for f in dataclasses.fields(cls) if "since" in f.metadata}


def _record_class(tp: Any) -> Optional[type]:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    inner = args[0] if typing.get_origin(tp) is typing.Union and len(args) == 1 else tp
    return inner if dataclasses.is_dataclass(inner) and isinstance(inner, type) else None


def with_since_none(cls: type, data: Dict[str, Any]) -> Dict[str, Any]:
    """A record's JSON dict with ``None`` for each field added since a version that it lacks,
    in nested records too: what a record read from an older file gives back."""
    hints = typing.get_type_hints(cls)
    out = dict(data)
    for f in dataclasses.fields(cls):
        if "since" in f.metadata:
            out.setdefault(f.name, None)
        inner = _record_class(hints[f.name])
        if inner is not None and isinstance(out.get(f.name), dict):
            out[f.name] = with_since_none(inner, out[f.name])
    return out


GIT = shutil.which("git")
"""The real git CLI, which makes the test repositories (``None``: tests that need it skip)."""


def git(cwd: Path, *args: str) -> str:
    """Run the real git CLI and return its stripped output."""
    done = subprocess.run([str(GIT), *args], cwd=cwd, check=True, capture_output=True)
    return done.stdout.decode().strip()


def backdate(path: Path, seconds: float = 10.0) -> None:
    """Set the ``mtime`` of ``path`` ``seconds`` in the past (negative: in the future)."""
    when = time.time() - seconds
    os.utime(path, (when, when))


def make_repo(path: Path, *, commit: bool = True, branch: str = "main") -> Path:
    """A repository with one committed file, older than its index: never racily clean, so no
    test depends on whether a second boundary passed since the commit (see
    :func:`test_git.test_a_racily_clean_index_is_refreshed_once`)."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", branch)
    if commit:
        (path / "file.txt").write_text("one\n")
        backdate(path / "file.txt")
        git(path, "add", "file.txt")
        git(path, "commit", "-q", "-m", "first")
    return path


def run_python(
    code: str, *args: str, cwd: Optional[Path] = None, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[bytes]:
    """Run ``code`` with ``args`` in a fresh interpreter (``python -c``), in ``cwd``, with the
    environment changed by ``env``; its output and errors captured, its exit status left to
    the caller."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        check=False,
        cwd=cwd,
        env=dict(os.environ, **env),
        capture_output=True,
        timeout=timeout,
    )


def fake_bin(folder: Path, name: str, script: str) -> Path:
    """A one-entry PATH folder holding a fake executable ``name`` running ``script`` (sh)."""
    folder.mkdir(exist_ok=True)
    exe = folder / name
    exe.write_text("#!/bin/sh\n" + script)
    exe.chmod(0o755)
    return folder


def run_signalled(
    code: str, folder: Path, program: str, real: str, cwd: Optional[Path] = None
) -> subprocess.CompletedProcess[bytes]:
    """Run ``code`` in a fresh interpreter whose ``program`` (on a one-entry PATH) sends SIGUSR1
    to its parent and then runs ``real``: a signal that comes while the child runs. ``code``
    sets an alarm, so that a deadlock ends the process instead of the test run."""
    script = f'kill -USR1 "$PPID"\nexec "{real}" "$@"\n'
    return run_python(code, cwd=cwd, PATH=str(fake_bin(folder, program, script)))


@contextlib.contextmanager
def no_free_fd(spare: int = 0) -> Iterator[None]:
    """Every file descriptor below a lowered soft ``RLIMIT_NOFILE`` taken but ``spare``: opening
    more fails with ``EMFILE``, as in a process that leaked its files (one spare: files can be
    read one at a time, but no pipe had). Restored on leaving."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    taken = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 4096), hard))
    try:
        while True:
            try:
                taken.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                break
        for _ in range(spare):
            os.close(taken.pop())
        yield
    finally:
        for fd in taken:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def import_fails(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """Importing ``module`` (absolute: ``"tango_stepinfo._hiding"``, ``"traceback"``) fails
    with ``EMFILE`` until the test ends, as in a process out of file descriptors: the module is
    dropped from ``sys.modules`` (and from its package), and ``import`` refuses it by either
    name (``from ._hiding import Policy``, ``from . import _json_default``)."""
    import builtins
    import errno

    package, _, leaf = module.rpartition(".")
    real_import = builtins.__import__

    def short_of_files(name: str, *args: Any, **kwargs: Any) -> Any:
        fromlist = args[2] if len(args) > 2 else kwargs.get("fromlist")
        if name in (module, leaf) or leaf in (fromlist or ()):
            raise OSError(errno.EMFILE, "Too many open files")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, module, raising=False)
    if package and package in sys.modules:
        monkeypatch.delattr(sys.modules[package], leaf, raising=False)
    monkeypatch.setattr(builtins, "__import__", short_of_files)


def exit_code_of_forked(check: Callable[[], bool]) -> int:
    """Fork (other threads may be running, as in the tests that use this), run ``check`` in the
    child under a 30 s alarm, and return the child's exit code: 0 when it answered true, 1 when
    false, 2 when it raised, ``-SIGALRM`` when it deadlocked."""
    import signal
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 2
        try:
            signal.alarm(30)
            code = 0 if check() else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.fixture(autouse=True)
def exact_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see every chdir, install and commit at once: the 1 ms staleness bound is off
    (``tests/test_probe.py`` tests the bound itself with it on)."""
    from tango_stepinfo import _probe

    monkeypatch.setattr(_probe, "STALE_AFTER", 0.0)


@pytest.fixture
def probe_clock(monkeypatch: pytest.MonkeyPatch) -> List[float]:
    """A clock the probes' staleness bound reads (``[now]``, in seconds; move it by hand), with
    the bound at 1 ms as shipped (``exact_probes`` sets it to 0)."""
    from tango_stepinfo import _probe

    now = [1000.0]
    monkeypatch.setattr(_probe, "STALE_AFTER", 0.001)
    monkeypatch.setattr(_probe, "monotonic", lambda: now[0])
    return now


@pytest.fixture(autouse=True)
def no_settings_from_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start without the settings a developer's shell may hold (and see them re-read)."""
    for name in ("TANGO_STEPINFO_COMMAND", "TANGO_STEPINFO_JSON"):
        monkeypatch.delenv(name, raising=False)
    from tango_stepinfo import _json_default

    _json_default.clear()


@pytest.fixture
def probe_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[List[str]]:
    """Count calls to the stdlib functions the probes read, with every cached fact dropped.

    Yields the list of names called; a test that must not probe asserts it stays empty.
    """
    tango_stepinfo.clear_cache()
    calls: List[str] = []
    targets: Dict[str, tuple] = {
        "os.getcwd": (os, "getcwd"),
        "os.cpu_count": (os, "cpu_count"),
        "os.uname": (os, "uname"),
        "pwd.getpwuid": (pwd, "getpwuid"),
        "platform.platform": (platform, "platform"),
        "socket.gethostname": (socket, "gethostname"),
    }

    def counting(name: str, real: Callable[..., object]) -> Callable[..., object]:
        def wrapper(*args: object, **kwargs: object) -> object:
            calls.append(name)
            return real(*args, **kwargs)

        return wrapper

    for name, (owner, attr) in targets.items():
        monkeypatch.setattr(owner, attr, counting(name, getattr(owner, attr)))
    yield calls
    tango_stepinfo.clear_cache()
