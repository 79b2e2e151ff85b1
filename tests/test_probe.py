"""The probes behind the metadata defaults: values, every fallback made to happen, the cache."""

from __future__ import annotations

import getpass
import hashlib
import importlib.metadata
import json
import logging
import os
import pickle
import platform
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Tuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tango_stepinfo
from tango_stepinfo import (
    EnvironmentMetadata,
    PlatformMetadata,
    StepInfo,
    TangoMetadata,
    __version__,
    _fallbacks,
    _probe,
    redact,
)

from .conftest import (
    exit_code_of_forked,
    fake_bin,
    git,
    import_fails,
    make_repo,
    no_free_fd,
    run_python,
    run_signalled,
)

# importlib.metadata loads parts of itself (and email) lazily; load them now, while sys.path is
# still whole, since some tests below replace it.
PYTEST_VERSION = importlib.metadata.version("pytest")

LINUX_GLIBC = sys.platform == "linux" and bool(os.confstr("CS_GNU_LIBC_VERSION") or "")


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    tango_stepinfo.clear_cache()
    yield
    tango_stepinfo.clear_cache()


@pytest.fixture
def debug_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="tango_stepinfo")
    return caplog


class _Raising:
    """What a sys.path entry's methods do here: raise."""

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("__eq__")

    def __hash__(self) -> int:
        raise RuntimeError("__hash__")

    def __bool__(self) -> bool:
        raise RuntimeError("__bool__")

    def __fspath__(self) -> str:
        raise RuntimeError("__fspath__")

    def __str__(self) -> str:
        raise RuntimeError("__str__")


class _RaisingStr(str):
    """A str subclass whose own methods raise: import reads it as the plain string it holds."""

    __eq__ = _Raising.__eq__  # type: ignore[assignment]
    __hash__ = _Raising.__hash__  # type: ignore[assignment]
    __bool__ = _Raising.__bool__
    __fspath__ = _Raising.__fspath__
    __str__ = _Raising.__str__

    def lower(self) -> str:  # type: ignore[override]
        raise RuntimeError("lower")


class _RaisingList(list):  # type: ignore[type-arg]
    """A sys.path replaced by a list subclass whose comparisons and iteration raise."""

    __eq__ = _Raising.__eq__  # type: ignore[assignment]
    __ne__ = _Raising.__eq__  # type: ignore[assignment]
    __hash__ = None  # type: ignore[assignment]

    def __iter__(self) -> Iterator[object]:
        raise RuntimeError("__iter__")


@pytest.fixture
def outside_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in an empty folder outside any repository, so no git status runs."""
    where = tmp_path / "work"
    where.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.chdir(where)
    return where


def raising(error: BaseException) -> Callable[..., object]:
    def fail(*args: object, **kwargs: object) -> object:
        raise error

    return fail


def output(done: subprocess.CompletedProcess[bytes]) -> str:
    """What a fresh interpreter (:func:`run_python`) printed, once it exited with 0."""
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode().strip()


# --- import ----------------------------------------------------------------------------------


def test_import_loads_no_heavy_module() -> None:
    code = (
        "import sys, tango_stepinfo\n"
        "heavy = ['subprocess', 'importlib.metadata', 'email', 'socket', 'logging', 'threading']\n"
        "print(' '.join(m for m in heavy if m in sys.modules))"
    )
    assert output(run_python(code)) == ""


@pytest.mark.skipif(not LINUX_GLIBC, reason="the import-free paths are Linux/glibc ones")
@pytest.mark.parametrize("in_repo", [False, True], ids=["outside-git", "in-a-git-repo"])
def test_probing_on_linux_loads_no_heavy_module(tmp_path: Path, in_repo: bool) -> None:
    where = tmp_path / "work"
    where.mkdir()
    if in_repo:
        git = shutil.which("git")
        if git is None:
            pytest.skip("the git CLI makes the test repository")
        subprocess.run([git, "init", "-q"], cwd=where, check=True)
    code = (
        "import sys, tango_stepinfo\n"
        "info = tango_stepinfo.StepInfo('a', 'A', set(), True)\n"
        "assert (info.environment.git is not None) == " + repr(in_repo) + "\n"
        "heavy = ['subprocess', 'importlib.metadata', 'email', 'socket', 'platform', 'logging',\n"
        "         'getpass']\n"
        "print(' '.join(m for m in heavy if m in sys.modules))"
    )
    assert output(run_python(code, cwd=where, GIT_CEILING_DIRECTORIES=str(tmp_path))) == ""


# --- operating system ----------------------------------------------------------------------------


def test_operating_system_is_platform_platform() -> None:
    assert _probe.operating_system() == platform.platform()


@pytest.mark.skipif(not LINUX_GLIBC, reason="the uname -p path is the Linux/glibc one")
@pytest.mark.parametrize("processor", ["unknown", "x86_64", "Weird CPU (tm) 3.0GHz", None])
def test_operating_system_matches_platform_with_any_uname(tmp_path: Path, processor: str) -> None:
    """With a fake ``uname`` (or none) on a one-entry PATH, both agree in fresh processes."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if processor is not None:
        fake_bin(bin_dir, "uname", f"echo '{processor}'\n")
    env = {"PATH": str(bin_dir), "GIT_CEILING_DIRECTORIES": str(tmp_path)}
    ours = output(
        run_python("from tango_stepinfo import _probe; print(_probe.operating_system())", **env)
    )
    theirs = output(run_python("import platform; print(platform.platform())", **env))
    assert ours == theirs
    if processor == "Weird CPU (tm) 3.0GHz":
        assert "Weird_CPU_-tm-_3.0GHz" in ours


def test_operating_system_falls_back_to_platform(
    monkeypatch: pytest.MonkeyPatch, debug_log: pytest.LogCaptureFixture
) -> None:
    expected = platform.platform()
    monkeypatch.setattr(os, "confstr", raising(ValueError("unrecognized configuration name")))
    assert _probe.operating_system() == expected
    if sys.platform == "linux":
        assert "asking platform.platform()" in debug_log.text


def test_operating_system_unknown_when_everything_fails(
    monkeypatch: pytest.MonkeyPatch, debug_log: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(os, "uname", raising(OSError("no uname")), raising=False)
    monkeypatch.setattr(platform, "platform", raising(OSError("no platform")))
    assert _probe.operating_system() == "unknown"
    assert "platform.platform() failed" in debug_log.text


# --- cpu count -----------------------------------------------------------------------------------


def test_cpu_count(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _probe.cpu_count() == os.cpu_count()
    tango_stepinfo.clear_cache()
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert _probe.cpu_count() is None
    assert PlatformMetadata().cpu_count is None


# --- user ----------------------------------------------------------------------------------------

LOGIN_VARS = ("LOGNAME", "USER", "LNAME", "USERNAME")


def no_user_name(monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    """No login variable, and ``pwd.getpwuid`` raising ``error`` (a uid without passwd entry)."""
    for var in LOGIN_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(pwd, "getpwuid", raising(error))


def test_user_is_getpass_getuser() -> None:
    assert _probe.user() == getpass.getuser()


@pytest.mark.parametrize(
    "present", [(), ("USERNAME",), ("LNAME", "USERNAME"), ("USER", "LNAME"), LOGIN_VARS]
)
def test_user_reads_what_getpass_reads_in_its_order(
    monkeypatch: pytest.MonkeyPatch, present: Tuple[str, ...]
) -> None:
    for var in LOGIN_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOGNAME", "")  # empty counts as unset, as in getpass
    for var in present:
        monkeypatch.setenv(var, f"name-from-{var.lower()}")
    assert _probe._user() == getpass.getuser()


def test_user_without_passwd_entry_or_login_variables(
    monkeypatch: pytest.MonkeyPatch, debug_log: pytest.LogCaptureFixture
) -> None:
    """What ``docker run -u 1234`` gives: KeyError before 3.13, OSError from 3.13 on."""
    for var in LOGIN_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(pwd, "getpwuid", raising(KeyError("getpwuid(): uid not found: 1234")))
    with pytest.raises((KeyError, OSError)):
        getpass.getuser()
    assert _probe.user() == str(os.getuid())
    assert PlatformMetadata().user == str(os.getuid())
    assert "no login variable and no passwd entry" in debug_log.text


def test_user_without_pwd_module(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in LOGIN_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setitem(sys.modules, "pwd", None)  # import pwd raises ImportError
    assert _probe.user() == str(os.getuid())


def test_user_unknown_without_uids(monkeypatch: pytest.MonkeyPatch) -> None:
    no_user_name(monkeypatch, KeyError("no user"))
    monkeypatch.delattr(os, "getuid")
    assert _probe.user() == "unknown"


def test_user_from_login_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGNAME", "someone")
    assert _probe.user() == "someone"


# --- host ----------------------------------------------------------------------------------------


def test_host_is_socket_gethostname() -> None:
    assert _probe.host() == socket.gethostname()


def test_host_falls_back_to_socket(
    monkeypatch: pytest.MonkeyPatch, debug_log: pytest.LogCaptureFixture
) -> None:
    expected = socket.gethostname()
    monkeypatch.setattr(os, "uname", raising(OSError("uname failed")), raising=False)
    assert _probe.host() == expected
    if hasattr(os, "uname"):
        assert "os.uname() failed" in debug_log.text


def test_host_falls_back_to_platform_node(
    monkeypatch: pytest.MonkeyPatch, debug_log: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(os, "uname", raising(OSError("uname failed")), raising=False)
    monkeypatch.setattr(socket, "gethostname", raising(OSError("no host name")))
    monkeypatch.setattr(platform, "node", lambda: "from-platform")
    assert _probe.host() == "from-platform"
    assert "socket.gethostname() failed" in debug_log.text


def test_host_unknown_when_everything_fails(
    monkeypatch: pytest.MonkeyPatch, debug_log: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(os, "uname", raising(OSError("uname failed")), raising=False)
    monkeypatch.setattr(socket, "gethostname", raising(OSError("no host name")))
    monkeypatch.setattr(platform, "node", raising(OSError("no node")))
    assert _probe.host() == "unknown"
    assert "platform.node() failed" in debug_log.text


# --- python and executable -----------------------------------------------------------------------


def test_python_is_platform_python_version() -> None:
    assert _probe.python() == platform.python_version()


@pytest.mark.parametrize(
    ("version", "info", "expected"),
    [
        ("3.13.0rc1 (main, Oct  1 2024) [GCC 12]", (3, 13, 0, "candidate", 1), "3.13.0rc1"),
        ("3.12 (default) [GCC]", (3, 12, 0, "final", 0), "3.12.0"),
        ("3.9.18+ (heads/3.9:abc, Jan 1 2024) [Clang]", (3, 9, 18, "final", 0), "3.9.18+"),
    ],
)
def test_python_version_parsing(
    monkeypatch: pytest.MonkeyPatch, version: str, info: Tuple[object, ...], expected: str
) -> None:
    monkeypatch.setattr(sys, "version", version)
    monkeypatch.setattr(sys, "version_info", info)
    assert _probe.python() == expected


@pytest.mark.parametrize("version", ["garbage", "", None, b"3.11.7", "2.7.18 (default)"])
def test_python_version_of_a_replaced_sys_version_is_sys_version_info(
    monkeypatch: pytest.MonkeyPatch, version: object
) -> None:
    # Found by the probes' red team: a sys.version replaced by the program ("garbage") was
    # recorded as the Python version; platform.python_version() raises there.
    monkeypatch.setattr(sys, "version", version)
    assert _probe.python() == ".".join(str(v) for v in sys.version_info[:3])
    assert environment_reasons()["python"].startswith("sys.version does not start with")


@pytest.mark.parametrize("exe", [b"/usr/bin/python3", 3, _Raising()], ids=["bytes", "int", "obj"])
@pytest.mark.skipif(not os.path.exists("/proc/self/exe"), reason="needs /proc")
def test_executable_not_a_str_falls_back_to_proc(
    monkeypatch: pytest.MonkeyPatch, exe: object
) -> None:
    # Found by the probes' red team: Path(sys.executable) raised TypeError out of StepInfo().
    monkeypatch.setattr(sys, "executable", exe)
    info = StepInfo("a", "A", set(), True)
    assert info.environment.executable == Path(os.readlink("/proc/self/exe"))
    assert (info.environment.fallbacks or {})["executable"] == (
        "sys.executable is not a str; recorded the target of /proc/self/exe"
    )


def test_executable() -> None:
    assert _probe.executable() == Path(sys.executable)


@pytest.mark.skipif(not os.path.exists("/proc/self/exe"), reason="needs /proc")
def test_executable_empty_falls_back_to_proc(
    monkeypatch: pytest.MonkeyPatch, debug_log: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sys, "executable", "")
    assert _probe.executable() == Path(os.readlink("/proc/self/exe"))
    assert "sys.executable is empty" in debug_log.text


def test_executable_last_resort(
    monkeypatch: pytest.MonkeyPatch, debug_log: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sys, "executable", None)
    monkeypatch.setattr(os, "readlink", raising(OSError("no /proc")))
    assert _probe.executable() == Path("python")
    assert "recording 'python'" in debug_log.text


# --- command -------------------------------------------------------------------------------------


def test_command_is_redacted_shell_quoted_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["run.py", "two words", "--remote=https://user:tok@host/x.git", "it's"]
    monkeypatch.setattr(sys, "argv", argv)
    assert _probe.command() == redact.redact_command(argv)
    assert "tok@" not in _probe.command()
    assert "'two words'" in _probe.command()


def test_command_follows_argv_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["a.py"])
    assert _probe.command() == "a.py"
    sys.argv.append("--flag")  # changed in place
    assert _probe.command() == "a.py --flag"
    monkeypatch.setattr(sys, "argv", ["b.py"])
    assert _probe.command() == "b.py"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [([], ""), (None, ""), ("missing", ""), (("t.py", "x"), "t.py x"), (["p.py", 3], "p.py 3")],
)
def test_command_with_odd_argv(
    monkeypatch: pytest.MonkeyPatch,
    debug_log: pytest.LogCaptureFixture,
    argv: object,
    expected: str,
) -> None:
    if argv == "missing":
        monkeypatch.delattr(sys, "argv")
    else:
        monkeypatch.setattr(sys, "argv", argv)
    assert _probe.command() == expected
    assert EnvironmentMetadata().command == expected
    if argv in (None, "missing"):
        assert "sys.argv is missing" in debug_log.text


def test_command_with_bytes_in_argv_is_decoded_as_python_decodes_argv(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Was str(b"x"), "b'x'": a command nobody typed.
    monkeypatch.setattr(sys, "argv", [b"run\xff.py", bytearray(b"--token"), b"s3cret"])
    assert _probe.command() == "'run\udcff.py' --token '***'"
    assert "command" not in environment_reasons()
    # An error handler that can fail (Windows decodes with surrogatepass): str() and a reason.
    monkeypatch.setattr(sys, "getfilesystemencodeerrors", lambda: "strict")
    monkeypatch.setattr(sys, "argv", [b"run\xff.py"])
    assert _probe.command() == "'b'\"'\"'run\\xff.py'\"'\"''"
    assert environment_reasons()["command"].startswith("sys.argv holds items that are not str")


def test_command_with_argv_items_whose_methods_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    # Found by the probes' red team: an item whose __str__ raised, and a list subclass whose
    # __eq__ raised, came out of command() and StepInfo(); a str subclass whose methods raise
    # gave "" (redaction gave up on it) with no reason.
    monkeypatch.setattr(sys, "argv", [_RaisingStr("a.py"), _RaisingStr("--password=x")])
    assert _probe.command() == "a.py '--password=***'"
    monkeypatch.setattr(sys, "argv", ["a.py", _Raising(), 3])
    reason = "sys.argv holds items that are not str or decodable bytes; recorded them with str()"
    for _ in range(2):  # the second from the cache, with its reason
        assert _probe.command() == "a.py '<_Raising>' 3"
        assert environment_reasons()["command"] == reason
    sys.argv[1] = _Raising()  # another object in the same place: compared with the one seen
    assert _probe.command() == "a.py '<_Raising>' 3"
    monkeypatch.setattr(sys, "argv", _RaisingList(["a.py", "x"]))
    assert _probe.command() == "a.py x"
    assert "command" not in environment_reasons()
    list.insert(sys.argv, 1, "-v")
    assert _probe.command() == "a.py -v x"
    monkeypatch.setattr(sys, "orig_argv", [_Raising(), "-m", "a"], raising=False)
    assert _probe.command() == "a.py -v x"


def test_command_from_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["worker.py", "--internal-flag"])
    line = "python train.py --api-key sk-123 'HF_TOKEN=hf_9' --data 'my file.txt'"
    monkeypatch.setenv("TANGO_STEPINFO_COMMAND", line)
    expected = "python train.py --api-key '***' 'HF_TOKEN=***' --data 'my file.txt'"
    assert _probe.command() == expected
    assert EnvironmentMetadata().command == expected
    monkeypatch.setenv("TANGO_STEPINFO_COMMAND", "python eval.py")  # followed when it changes
    assert _probe.command() == "python eval.py"
    monkeypatch.setenv("TANGO_STEPINFO_COMMAND", "")  # empty: as if unset
    assert _probe.command() == "worker.py --internal-flag"
    monkeypatch.setenv("TANGO_STEPINFO_COMMAND", "python eval.py")
    assert _probe.command() == "python eval.py"
    monkeypatch.delenv("TANGO_STEPINFO_COMMAND")
    assert _probe.command() == "worker.py --internal-flag"


def test_a_redacted_command_handed_down_is_recorded_as_it_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argv = ["train.py", "--api-key", "sk-1", "HF_TOKEN=x", "https://u:p@h/r", "a b", "it's"]
    monkeypatch.setattr(sys, "argv", argv)
    client_side = _probe.command()
    monkeypatch.setenv("TANGO_STEPINFO_COMMAND", client_side)
    assert _probe.command() == client_side  # redacting twice changes nothing


def test_command_from_the_variable_is_requoted_as_any_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TANGO_STEPINFO_COMMAND", 'run.py "two words"  --x=1 https://u:p@h/r')
    assert _probe.command() == redact.redact_command(
        ["run.py", "two words", "--x=1", "https://h/r"]
    )


def test_a_command_variable_shlex_cannot_split_is_redacted_as_text(
    monkeypatch: pytest.MonkeyPatch, debug_log: pytest.LogCaptureFixture
) -> None:
    line = "run.py --password=hunter2 'unclosed https://u:tok@host/x"
    monkeypatch.setenv("TANGO_STEPINFO_COMMAND", line)
    assert _probe.command() == redact.redact_text(line)
    assert "hunter2" not in _probe.command() and "tok@" not in _probe.command()
    assert _probe.command() == "run.py --password=*** 'unclosed https://host/x"
    assert "TANGO_STEPINFO_COMMAND cannot be split" in debug_log.text
    reasons = EnvironmentMetadata().fallbacks or {}
    assert reasons["command"] == (
        "TANGO_STEPINFO_COMMAND is not a valid shell line; redacted it as text"
    )
    monkeypatch.setenv("TANGO_STEPINFO_COMMAND", "run.py --lr 1")
    assert "command" not in (EnvironmentMetadata().fallbacks or {})


PY_M_CASES = [
    # (sys.orig_argv, sys.argv, recorded)
    (
        ["python3", "-m", "pkg.train", "--lr", "1"],
        ["/src/pkg/train.py", "--lr", "1"],
        "python3 -m pkg.train --lr 1",
    ),
    (["python", "-mpkg", "x"], ["/src/pkg/__main__.py", "x"], "python -mpkg x"),
    (["python", "-Bm", "pkg"], ["/src/pkg/__main__.py"], "python -Bm pkg"),
    (
        ["py", "-X", "dev", "-W", "error", "-m", "pkg", "--token", "t"],
        ["/src/pkg/__main__.pyc", "--token", "t"],
        "py -X dev -W error -m pkg --token '***'",
    ),
    (["python", "-m", "pkg"], ["-m"], "python -m pkg"),  # while the module is being found
    # not python -m: sys.argv as it is
    (["python", "train.py", "-m", "x"], ["train.py", "-m", "x"], "train.py -m x"),
    (["python", "-c", "pass", "a"], ["-c", "a"], "-c a"),
    (["python", "-m", "pkg", "a"], ["/src/pkg/__main__.py", "b"], "/src/pkg/__main__.py b"),
    (["python", "-m", "pkg"], ["/src/other.py"], "/src/other.py"),  # changed by the program
    (["python", "-m", "pkg", "-m", "slow"], ["/src/pkg.py"], "/src/pkg.py"),
    (["python", "--check-hash-based-pycs", "m", "a"], ["x/m.py", "a"], "x/m.py a"),
    (["python", "-m"], ["-m"], "-m"),
]


@pytest.mark.parametrize(("orig", "argv", "expected"), PY_M_CASES)
def test_command_under_python_m_is_what_was_typed(
    monkeypatch: pytest.MonkeyPatch, orig: List[str], argv: List[str], expected: str
) -> None:
    monkeypatch.setattr(sys, "orig_argv", orig, raising=False)
    monkeypatch.setattr(sys, "argv", argv)
    assert _probe.command() == expected


def test_command_follows_orig_argv_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["/src/pkg/__main__.py"])
    monkeypatch.setattr(sys, "orig_argv", ["python", "-m", "pkg"], raising=False)
    assert _probe.command() == "python -m pkg"
    monkeypatch.setattr(sys, "orig_argv", ["python", "/src/pkg/__main__.py"])
    assert _probe.command() == "/src/pkg/__main__.py"


def test_command_without_orig_argv_is_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(sys, "orig_argv", raising=False)  # Python 3.9
    monkeypatch.setattr(sys, "argv", ["/src/pkg/__main__.py", "x"])
    assert _probe.command() == "/src/pkg/__main__.py x"


def test_command_of_a_real_python_m_process(tmp_path: Path) -> None:
    package = tmp_path / "engine"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(
        "from tango_stepinfo import EnvironmentMetadata\nprint(EnvironmentMetadata().command)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANGO_STEPINFO_")}
    argv = [sys.executable, "-B", "-m", "engine", "run", "--api-key", "sk-1"]
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    if sys.version_info >= (3, 10):
        assert done.stdout == redact.redact_command(argv) + "\n"
        assert done.stdout.endswith(" -B -m engine run --api-key '***'\n")
    else:
        assert done.stdout == f"{package / '__main__.py'} run --api-key '***'\n"
    env["TANGO_STEPINFO_COMMAND"] = "tango run exp.jsonnet"
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert done.stdout == "tango run exp.jsonnet\n"


# --- root ----------------------------------------------------------------------------------------


def test_root_is_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert _probe.root() == Path(os.getcwd())
    sub = tmp_path / "sub"
    sub.mkdir()
    monkeypatch.chdir(sub)
    assert _probe.root() == Path(os.getcwd())  # followed without clearing the cache


def test_changes_show_up_after_the_staleness_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outside_git: Path, probe_clock: List[float]
) -> None:
    now = probe_clock
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    tango_stepinfo.clear_cache()
    first = StepInfo("a", "A", set(), True)
    sub = tmp_path / "sub"
    sub.mkdir()
    monkeypatch.chdir(sub)
    dist_info(site, "Brand_New-1.2.3.dist-info", "Brand_New", "1.2.3")
    now[0] += 0.0009  # within the bound: the last check is reused
    within = StepInfo("b", "B", set(), True)
    assert within.environment.root == first.environment.root
    assert within.environment.packages == first.environment.packages
    assert within.environment.packages is not first.environment.packages  # still a fresh list
    now[0] += 0.0002  # past it: checked again
    after = StepInfo("c", "C", set(), True)
    assert after.environment.root == Path(os.getcwd()) == sub.resolve()
    assert after.environment.packages is not None
    assert ("brand-new", "1.2.3") in after.environment.packages
    monkeypatch.chdir(tmp_path)
    tango_stepinfo.clear_cache()  # exact: no bound after clearing
    assert StepInfo("d", "D", set(), True).environment.root == Path(os.getcwd())


@pytest.mark.parametrize("late", [False, True])
def test_one_thread_rechecks_and_a_waiting_thread_gets_its_result(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    outside_git: Path,
    late: bool,
    probe_clock: List[float],
) -> None:
    """``late``: the waiting thread gets the lock well past the bound of the check it waited
    for, which began within the bound of its call: the bound is judged from when the probe was
    called, not from when its thread got the lock (else a thread woken late, others holding the
    GIL, checks again, and with 16 threads the re-checks chain)."""
    now = probe_clock
    assert _probe.root() == outside_git.resolve()
    now[0] += 0.002  # past the bound: the next probe re-checks
    entered, go = threading.Event(), threading.Event()
    calls: List[int] = []
    real_getcwd = os.getcwd

    def paused_getcwd() -> str:  # the first re-checker pauses in its system call
        calls.append(threading.get_ident())
        entered.set()
        go.wait(30)
        return real_getcwd()

    monkeypatch.setattr(os, "getcwd", paused_getcwd)
    seen: Dict[str, Path] = {}
    first = threading.Thread(target=lambda: seen.update(first=_probe.root()))
    first.start()
    assert entered.wait(30)
    if late:
        now[0] += 0.0005  # the second probe is called half the bound after the check began
    second = threading.Thread(target=lambda: seen.update(second=_probe.root()))
    second.start()
    try:
        for _ in range(3000):  # until the second thread sleeps on the re-check lock
            frame = sys._current_frames().get(second.ident or 0)
            if frame is not None and frame.f_code.co_name == "_recheck":
                break
            time.sleep(0.001)
        else:
            pytest.fail("the second thread never waited for the re-check")
        sub = outside_git / "sub"
        sub.mkdir()
        monkeypatch.chdir(sub)  # after the second thread asked: its record must still see it
        if late:
            now[0] += 0.002  # it gets the lock well past the bound of that check
    finally:
        go.set()
    first.join(30)
    second.join(30)
    assert calls == [first.ident]  # one re-check; the waiting thread used its result
    assert seen == {"first": sub.resolve(), "second": sub.resolve()}


def test_an_interrupted_recheck_is_checked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outside_git: Path, probe_clock: List[float]
) -> None:
    now = probe_clock
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    assert _probe.root() == outside_git.resolve() and _probe.packages() is not None
    now[0] += 0.002
    sub = outside_git / "sub"
    sub.mkdir()
    monkeypatch.chdir(sub)
    with monkeypatch.context() as m:  # Ctrl-C after the working directory, in the package check
        m.setattr(os, "stat", raising(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            _probe.root()
    monkeypatch.chdir(outside_git)
    assert _probe.root() == outside_git.resolve()  # not the half-done check's answer


def test_a_signal_handler_making_a_record_during_a_recheck_does_not_hang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outside_git: Path, probe_clock: List[float]
) -> None:
    """A handler runs in the thread it interrupts: one that makes a record while that thread is
    inside a re-check (holding the re-check lock) must not wait for the lock forever."""
    now = probe_clock
    assert _probe.root() == outside_git.resolve()
    now[0] += 0.002  # past the bound: the next probe re-checks
    real_getcwd = os.getcwd
    handled: List[StepInfo] = []
    interrupted: List[bool] = []

    def interrupted_getcwd() -> str:  # as if a signal arrived in the re-check's system call
        if not interrupted:
            interrupted.append(True)
            handled.append(StepInfo("h", "H", set(), True))  # what the handler does
        return real_getcwd()

    monkeypatch.setattr(os, "getcwd", interrupted_getcwd)
    outer: List[Path] = []
    worker = threading.Thread(target=lambda: outer.append(_probe.root()), daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "the re-check deadlocked on its own lock"
    assert outer == [outside_git.resolve()]
    assert [r.environment.root for r in handled] == [outside_git.resolve()]


def test_a_recheck_interrupted_by_a_handler_leaves_no_fact_fresh_for_a_later_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outside_git: Path, probe_clock: List[float]
) -> None:
    """The handler's re-check (nested in its thread's) starts a later epoch than the outer one;
    when the outer one ends, the facts the handler checked must not pass for checked in the
    epoch a later re-check starts: a repository made and entered later is seen."""
    now = probe_clock
    assert _probe.root() == outside_git.resolve()
    now[0] += 0.002
    real_getcwd = os.getcwd
    interrupted: List[bool] = []

    def interrupted_getcwd() -> str:  # as if a signal arrived in the re-check's system call
        if not interrupted:
            interrupted.append(True)
            StepInfo("h", "H", set(), True)  # what the handler does: reads git (none here)
        return real_getcwd()

    monkeypatch.setattr(os, "getcwd", interrupted_getcwd)
    assert _probe.root() == outside_git.resolve()
    assert interrupted
    git = shutil.which("git")
    if git is None:
        pytest.skip("the git CLI makes the test repository")
    repo = outside_git / "repo"
    repo.mkdir()
    subprocess.run([git, "init", "-q"], cwd=repo, check=True)
    monkeypatch.chdir(repo)
    now[0] += 0.002  # past the bound: the next probe re-checks everything
    assert _probe.root() == repo.resolve()
    assert _probe.git() is not None, "git facts from an earlier check passed for fresh ones"


SIGNAL_DURING_FIRST_RECORD = """
import signal
from tango_stepinfo import StepInfo
handled = []
def handler(signum, frame):  # a SIGTERM handler writing a step's last record, say
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # the handler's own uname signals again
    handled.append(StepInfo("h", "H", set(), True).platform.operating_system)
signal.signal(signal.SIGUSR1, handler)
signal.alarm(20)  # a deadlock ends the process instead of the test run
info = StepInfo("a", "A", set(), True)  # the first record probes the fixed facts, under a lock
print(len(handled), handled == [info.platform.operating_system])
"""


@pytest.mark.skipif(not hasattr(os, "posix_spawn"), reason="the signal comes from a child")
def test_a_signal_handler_making_a_record_during_the_first_record_does_not_hang(
    outside_git: Path, tmp_path: Path
) -> None:
    """A handler runs in the thread it interrupts: one that makes a record while that thread
    probes the facts fixed for the process (holding their lock, while ``uname -p`` runs) must
    not wait for the lock forever."""
    uname = shutil.which("uname")
    if uname is None:
        pytest.skip("the fake uname runs the real one")
    done = run_signalled(SIGNAL_DURING_FIRST_RECORD, tmp_path / "bin", "uname", uname)
    assert done.returncode == 0, "the handler's record deadlocked on the lock of the fixed facts"
    assert done.stdout.decode().split() == ["1", "True"]


INTERRUPT_DURING_FIRST_RECORD = """
import os, platform, signal
from tango_stepinfo import StepInfo
def handler(signum, frame):  # Ctrl-C, or a SIGTERM handler that raises
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    raise KeyboardInterrupt
signal.signal(signal.SIGUSR1, handler)
signal.alarm(20)  # a deadlock ends the process instead of the test run
fds = set(os.listdir("/proc/self/fd"))
try:
    StepInfo("a", "A", set(), True)
    print("not interrupted")
except KeyboardInterrupt:
    try:
        left = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        left = "none"
    opened = [f"/proc/self/fd/{n}" for n in sorted(set(os.listdir("/proc/self/fd")) - fds)]
    print("children", left, "fds", len(opened), *map(os.readlink, filter(os.path.exists, opened)))
    info = StepInfo("b", "B", set(), True)
    print(info.platform.operating_system == platform.platform(), info.platform.fallbacks)
"""


@pytest.mark.skipif(not hasattr(os, "posix_spawn"), reason="the signal comes from a child")
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts fds in /proc/self/fd")
def test_an_interrupted_first_record_leaves_no_child_and_the_next_is_right(
    outside_git: Path, tmp_path: Path
) -> None:
    """A ``KeyboardInterrupt`` raised while the first record probes the fixed facts (here sent
    by ``uname -p`` as it starts, so that it comes while the other facts are probed or while
    ``uname`` is waited for) propagates; ``uname`` is not left behind, running or unreaped,
    nor its pipe open; the next record probes the fixed facts afresh."""
    uname = shutil.which("uname")
    if uname is None:
        pytest.skip("the fake uname runs the real one")
    done = run_signalled(
        INTERRUPT_DURING_FIRST_RECORD, tmp_path / "bin", "uname", uname, cwd=outside_git
    )
    assert done.returncode == 0
    assert done.stdout.decode().split() == ["children", "none", "fds", "0", "True", "None"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_child_forked_during_a_recheck_can_recheck(outside_git: Path) -> None:
    """The re-check lock, held by a thread of the parent at the fork, is a new one in the child."""
    _probe.root()
    holding, done = threading.Event(), threading.Event()

    def recheck_in_progress() -> None:  # another thread, re-checking at the moment of the fork
        with _probe._recheck_lock:  # (reentrant: held by this thread, it would not block it)
            holding.set()
            done.wait(30)

    other = threading.Thread(target=recheck_in_progress)
    other.start()
    try:
        assert holding.wait(30)
        code = exit_code_of_forked(lambda: _probe.root() == outside_git.resolve())
    finally:
        done.set()
        other.join(30)
    assert code == 0


def removed_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    with pytest.raises(OSError):
        os.getcwd()
    return gone


@pytest.mark.skipif(not os.path.exists("/proc/self/cwd"), reason="needs /proc")
def test_root_of_a_removed_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, debug_log: pytest.LogCaptureFixture
) -> None:
    gone = removed_cwd(tmp_path, monkeypatch)
    assert _probe.root() == gone
    info = StepInfo("a", "A", set(), True)  # nothing raises, git included
    assert info.environment.root == gone
    assert "os.getcwd() failed" in debug_log.text


def test_root_of_a_removed_directory_without_proc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, debug_log: pytest.LogCaptureFixture
) -> None:
    removed_cwd(tmp_path, monkeypatch)
    monkeypatch.setattr(os, "readlink", raising(OSError("no /proc")))
    monkeypatch.setenv("PWD", "/somewhere/else")
    assert _probe.root() == Path("/somewhere/else")
    monkeypatch.setenv("PWD", "relative")
    assert _probe.root() == Path(".")
    assert "recording '.'" in debug_log.text


# --- packages ------------------------------------------------------------------------------------


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def importlib_packages(path: List[str]) -> List[Tuple[str, str]]:
    """What importlib.metadata sees on ``path``, first of each name winning."""
    found: Dict[str, str] = {}
    for folder in path:
        # The standard library's finder, asked directly: the importlib_metadata backport, once
        # imported (dask imports it), replaces it on sys.meta_path by its own, which reads broken
        # entries differently.
        context = importlib.metadata.DistributionFinder.Context(path=[folder])
        for dist in importlib.metadata.MetadataPathFinder.find_distributions(context):
            names = dist.metadata.get_all("Name") or []
            if names and names[0]:
                found.setdefault(normalise(names[0]), dist.version)
    return sorted(found.items())


def test_packages_match_importlib_metadata() -> None:
    ours = _probe.packages()
    assert ours == importlib_packages(sys.path)
    assert ours is not None and ("pytest", PYTEST_VERSION) in ours


def dist_info(folder: Path, dirname: str, name: str, version: str) -> Path:
    path = folder / dirname
    path.mkdir(parents=True)
    (path / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nx\n"
    )
    return path


def test_a_new_distribution_shows_up_in_the_next_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outside_git: Path
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    first = StepInfo("a", "A", set(), True).environment.packages
    assert first is not None and not any(name == "brand-new" for name, _ in first)
    dist_info(site, "Brand_New-1.2.3.dist-info", "Brand_New", "1.2.3")
    second = StepInfo("b", "B", set(), True).environment.packages
    assert second is not None and ("brand-new", "1.2.3") in second
    shutil.rmtree(site / "Brand_New-1.2.3.dist-info")
    third = StepInfo("c", "C", set(), True).environment.packages
    assert third == first


def test_standard_library_folders_without_distributions_are_not_rechecked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outside_git: Path
) -> None:
    # A stand-in standard library (os.__file__'s folder), its lib-dynload and the missing
    # pythonXY.zip beside it, on sys.path.
    stdlib = tmp_path / "lib" / "python3"
    (stdlib / "lib-dynload").mkdir(parents=True)
    zipped = tmp_path / "lib" / f"python{sys.version_info[0]}{sys.version_info[1]}.zip"
    monkeypatch.setattr(os, "__file__", str(stdlib / "os.py"))
    monkeypatch.syspath_prepend(str(zipped))
    monkeypatch.syspath_prepend(str(stdlib / "lib-dynload"))
    monkeypatch.syspath_prepend(str(stdlib))
    tango_stepinfo.clear_cache()
    before = StepInfo("a", "A", set(), True).environment.packages
    assert before is not None
    # Installers never write there; a record made after such a write does not stat them again...
    dist_info(stdlib, "Odd-1.0.dist-info", "Odd", "1.0")
    dist_info(zipped, "Zipped-1.0.dist-info", "Zipped", "1.0")  # a folder where the zip was not
    time.sleep(2 * _probe.STALE_AFTER)  # past the staleness bound: re-checked, not reused
    assert StepInfo("b", "B", set(), True).environment.packages == before
    # ... until the cache is dropped.
    tango_stepinfo.clear_cache()
    after = StepInfo("c", "C", set(), True).environment.packages
    assert after is not None and ("odd", "1.0") in after and ("zipped", "1.0") in after
    # A standard library folder that holds distributions is checked for every record.
    dist_info(stdlib, "Later-2.0.dist-info", "Later", "2.0")
    latest = StepInfo("d", "D", set(), True).environment.packages
    assert latest is not None and ("later", "2.0") in latest


def test_packages_layouts_and_broken_entries(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    debug_log: pytest.LogCaptureFixture,
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    dist_info(site, "Good.Name-1.0.dist-info", "Good.Name", "1.0")
    dist_info(site, "odd-name-2.0.dist-info", "odd-name", "2.0")  # not wheel style: read METADATA
    dist_info(site, "nover.dist-info", "NoVer", "3.0")
    egg_dir = site / "eggy.egg-info"
    egg_dir.mkdir()
    (egg_dir / "PKG-INFO").write_text("Metadata-Version: 1.0\nName: Eggy\nVersion: 0.5\n")
    (site / "Legacy-0.1-py3.9.egg-info").write_text(
        "Metadata-Version: 1.0\nName: legacy\nVersion: 0.1\n"
    )
    (site / "nometa-1.0.dist-info").mkdir()
    empty = site / "emptymeta-1.0.dist-info"
    empty.mkdir()
    (empty / "METADATA").write_text("")
    unreadable = dist_info(site, "locked-1.0.dist-info", "locked", "1.0")
    noname = site / "noname.egg-info"
    noname.mkdir()
    (noname / "PKG-INFO").write_text("Metadata-Version: 1.0\nVersion: 1\n")
    egg = tmp_path / "Unzipped-4.0-py3.9.egg"
    (egg / "EGG-INFO").mkdir(parents=True)
    (egg / "EGG-INFO" / "PKG-INFO").write_text(
        "Metadata-Version: 1.0\nName: unzipped\nVersion: 4.0\n"
    )
    archive = tmp_path / "lib.zip"
    archive.write_bytes(b"PK\x05\x06" + b"\0" * 18)

    real_stat = os.stat

    def stat(path: object, *args: object, **kwargs: object) -> os.stat_result:
        if str(path).startswith(str(unreadable)):
            raise PermissionError(13, "Permission denied", str(path))
        return real_stat(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "stat", stat)
    monkeypatch.setattr(sys, "path", [str(site), str(egg), str(archive), str(tmp_path / "none")])
    assert _probe.packages() == [
        ("eggy", "0.5"),
        ("good-name", "1.0"),
        ("legacy", "0.1"),
        ("nover", "3.0"),
        ("odd-name", "2.0"),
        ("unzipped", "4.0"),
    ]
    monkeypatch.setattr(os, "stat", real_stat)
    valid = [str(site), str(egg)]
    expected = importlib_packages(valid)
    shutil.rmtree(unreadable)
    assert _probe.packages() == [p for p in expected if p[0] != "locked"]
    for text in ("nometa-1.0.dist-info", "emptymeta-1.0.dist-info", "locked-1.0.dist-info"):
        assert text in debug_log.text
    assert "no Name or Version" in debug_log.text
    assert "zip files are not read" in debug_log.text


def test_a_sys_path_folder_created_later_is_scanned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    later = tmp_path / "later"
    monkeypatch.setattr(sys, "path", [str(tmp_path / "missing.zip"), str(later)])
    assert _probe.packages() == []
    dist_info(later, "late-1.0.dist-info", "late", "1.0")
    assert _probe.packages() == [("late", "1.0")]


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_NOFILE is POSIX")
def test_a_folder_not_listed_for_want_of_file_descriptors_is_noted_and_listed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``EMFILE`` listing a ``sys.path`` folder (a process that leaked its files) is no
    absence: the distributions missing are noted, and the next record lists the folder again
    though it did not change."""
    folder = tmp_path / "site"
    dist_info(folder, "here-1.0.dist-info", "here", "1.0")
    monkeypatch.setattr(sys, "path", [str(folder)])
    _probe.clear_cache()
    with no_free_fd():
        assert _probe.packages() == []
        reason = _fallbacks.collect(["packages"])
    assert reason is not None
    assert "Too many open files" in reason["packages"], reason
    assert _probe.packages() == [("here", "1.0")]
    assert _fallbacks.collect(["packages"]) is None


_SOURCE = str(Path(tango_stepinfo.__file__).parents[1])
"""The folder the package under test is imported from, for the interpreters tests start."""

_OUT_OF_FDS = """
import json, os, resource
import tango_stepinfo

def record():
    return tango_stepinfo.StepInfo(
        unique_id="s", step_class_name="S", dependencies=set(), cacheable=True
    )

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 4096), hard))
taken = []
while True:
    try:
        taken.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        break
try:
    first = record()
finally:
    for fd in taken:
        os.close(fd)
later = record()
print(json.dumps({
    name: {
        "fallbacks": {**(r.platform.fallbacks or {}), **(r.environment.fallbacks or {})},
        "cpu_model": r.platform.cpu_model,
        "command": r.environment.command,
        "git": r.environment.git is not None,
        "variables": r.environment.variables,
        "user": r.platform.user,
        "host": r.platform.host,
        "privacy": r.environment.privacy,
    }
    for name, r in (("first", first), ("later", later))
}))
"""


def test_first_record_out_of_file_descriptors(tmp_path: Path) -> None:
    """A process out of file descriptors before its first record cannot load the probe modules
    (each import opens a file): the record is made anyway, what those modules probe is None with
    the shortage as its reason, the command '' (never unredacted); the next record, with
    descriptors back, probes them again and has them all, its reasons gone."""
    make_repo(tmp_path)
    done = run_python(
        _OUT_OF_FDS,
        cwd=tmp_path,
        PYTHONPATH=_SOURCE,
        TANGO_STEPINFO_VARIABLES="HOME",
        HOME=str(tmp_path),
    )
    assert done.returncode == 0, done.stderr.decode()
    out = json.loads(done.stdout)
    first, later = out["first"], out["later"]
    reasons = first["fallbacks"]
    for key in ("cpu_model", "cpu_usable", "memory", "container", "job", "git", "variables"):
        assert "Too many open files" in reasons[key], (key, reasons)
    assert reasons["command"].startswith("cannot load redact (Too many open files)"), reasons
    assert first["command"] == "" and first["git"] is False and first["variables"] is None
    assert first["cpu_model"] is None
    assert not any("Too many open files" in r for r in later["fallbacks"].values()), later
    assert later["command"] and later["git"] is True
    assert later["variables"] == {"HOME": str(tmp_path)}


def test_first_anonymous_record_out_of_file_descriptors(tmp_path: Path) -> None:
    """Out of file descriptors, the rules of anonymous records cannot load either (they raised
    OSError out of StepInfo()): the record is made, every hidden value and free text is
    'anonymous', never the value itself, and the reason is noted under 'privacy'; the next
    record loads the rules, and that reason is gone."""
    import pwd
    import socket

    done = run_python(
        _OUT_OF_FDS,
        cwd=tmp_path,
        PYTHONPATH=_SOURCE,
        TANGO_STEPINFO_PRIVACY="anonymous",
        TANGO_STEPINFO_PRIVACY_KEY="",
        HOME=str(tmp_path),
    )
    assert done.returncode == 0, done.stderr.decode()
    out = json.loads(done.stdout)
    first, later = out["first"], out["later"]
    assert first["fallbacks"]["privacy"].startswith(
        "the rules of anonymous records could not load (Too many open files)"
    ), first["fallbacks"]
    assert first["privacy"] == later["privacy"] == "anonymous"
    assert first["user"] == first["host"] == later["user"] == later["host"] == "anonymous"
    from tango_stepinfo._hiding import canonical

    # the names worth hiding (not 'root', which anonymous records keep: everyone has it)
    names = canonical([socket.gethostname(), pwd.getpwuid(os.getuid()).pw_name])
    assert not any(name in done.stdout.decode().lower() for name in names), names
    assert "privacy" not in later["fallbacks"]
    assert first["command"] == "" and later["command"] == "-c"  # python -c: sys.argv == ['-c']


def test_first_on_sys_path_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    dist_info(first, "dup-2.0.dist-info", "dup", "2.0")
    dist_info(second, "dup-1.0.dist-info", "dup", "1.0")
    dist_info(second, "only_here-1.0.dist-info", "only_here", "1.0")
    monkeypatch.setattr(sys, "path", [str(first), str(second)])
    assert _probe.packages() == [("dup", "2.0"), ("only-here", "1.0")]
    monkeypatch.setattr(sys, "path", [str(second), str(first)])
    assert _probe.packages() == [("dup", "1.0"), ("only-here", "1.0")]


def test_empty_sys_path_entry_is_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist_info(tmp_path, "here-1.0.dist-info", "here", "1.0")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [""])
    assert _probe.packages() == [("here", "1.0")]


def test_packages_none_when_sys_path_is_not_a_list(
    monkeypatch: pytest.MonkeyPatch, debug_log: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sys, "path", None)
    assert _probe.packages() is None
    assert "sys.path is not a list" in debug_log.text


@pytest.mark.parametrize("kind", ["object", "str-subclass", "empty-str-subclass"])
def test_sys_path_entries_whose_methods_raise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outside_git: Path, kind: str
) -> None:
    # Found by the probes' red team: sys.path compared with the scanned copy called an entry's
    # __eq__ (when another object took its place), and the scan called a str subclass's
    # __bool__ and __hash__; what they raised came out of packages() and StepInfo().
    folder = tmp_path / "site"
    dist_info(folder, "here-1.0.dist-info", "here", "1.0")
    dist_info(outside_git, "cwd-2.0.dist-info", "cwd", "2.0")

    def entry() -> object:
        if kind == "object":
            return _Raising()
        return _RaisingStr(str(folder) if kind == "str-subclass" else "")

    expected = [("here", "1.0")] if kind == "str-subclass" else []
    expected += [("cwd", "2.0")] if kind == "empty-str-subclass" else []
    monkeypatch.setattr(sys, "path", [entry(), str(tmp_path / "missing")])
    assert _probe.packages() == expected
    sys.path[0] = entry()  # another object, in the same place: compared with the one scanned
    assert StepInfo("a", "A", set(), True).environment.packages == expected
    sys.path[1] = str(tmp_path)  # changed behind it: still seen
    dist_info(tmp_path, "later-3.0.dist-info", "later", "3.0")
    assert _probe.packages() == sorted([*expected, ("later", "3.0")])


def test_sys_path_a_list_subclass_whose_methods_raise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist_info(tmp_path, "here-1.0.dist-info", "here", "1.0")
    monkeypatch.setattr(sys, "path", _RaisingList([str(tmp_path)]))
    assert _probe.packages() == [("here", "1.0")]
    sys.path.insert(0, str(tmp_path / "missing"))
    assert _probe.packages() == [("here", "1.0")]


def test_a_zip_archive_on_sys_path_is_a_noted_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found by the probes' red team: the distributions of a zipapp (or .pex, zipped egg) on
    # sys.path are importable but not in the list, and nothing said so but a DEBUG line.
    import zipfile

    archive = tmp_path / "app.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("zipped-1.0.dist-info/METADATA", "Name: zipped\nVersion: 1.0\n")
    app = tmp_path / "app.pyz"  # a zipapp: a #! line, then the archive
    app.write_bytes(b"#!/usr/bin/env python3\n" + archive.read_bytes())
    (tmp_path / "plain.txt").write_text("not an archive\n")  # import ignores it: nothing missed
    dist_info(tmp_path / "site", "here-1.0.dist-info", "here", "1.0")
    folders = [str(tmp_path / "plain.txt"), str(tmp_path / "site")]
    monkeypatch.setattr(sys, "path", folders)
    assert _probe.packages() == [("here", "1.0")]
    assert "packages" not in environment_reasons()
    monkeypatch.setattr(sys, "path", [str(app), *folders, str(archive)])
    assert importlib_packages([str(app)]) == [("zipped", "1.0")]  # what import sees
    assert _probe.packages() == [("here", "1.0")]
    expected = "distributions in zip archives on sys.path are not read (.../app.pyz and 1 more)"
    for _ in range(2):  # the second from the cache, with its reason
        assert environment_reasons()["packages"] == expected
    sys.path.remove(str(app))
    sys.path.remove(str(archive))
    assert "packages" not in environment_reasons()
    if hasattr(os, "mkfifo"):  # not an archive, and not waited on: opening it could block

        def hung(signum: int, frame: object) -> None:
            raise AssertionError("opening a FIFO on sys.path blocked")

        os.mkfifo(tmp_path / "fifo")
        sys.path.append(str(tmp_path / "fifo"))
        before = signal.signal(signal.SIGALRM, hung)
        signal.alarm(30)
        try:
            assert _probe.packages() == [("here", "1.0")]
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, before)
        assert "packages" not in environment_reasons()


def test_each_record_gets_its_own_packages(outside_git: Path) -> None:
    one = StepInfo("a", "A", set(), True)
    two = StepInfo("b", "B", set(), True)
    assert one.environment.packages is not None and two.environment.packages is not None
    assert one.environment.packages is not two.environment.packages
    before = list(two.environment.packages)
    one.environment.packages.append(("mine", "1"))
    one.environment.packages.clear()
    assert two.environment.packages == before
    assert StepInfo("c", "C", set(), True).environment.packages == before


# --- tango ---------------------------------------------------------------------------------------


def fake_tango(folder: Path, version: str = "1.3.2") -> Path:
    """An installed ai2-tango as pip leaves it: a ``.dist-info`` folder (the code is not needed)."""
    dist = folder / f"ai2_tango-{version}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: ai2-tango\nVersion: {version}\n")
    return dist


def test_tango_version_is_ours_without_ai2_tango() -> None:
    assert "ai2-tango" not in dict(_probe.packages() or [])
    assert _probe.tango_version() is None
    tango = TangoMetadata()
    assert (tango.version, tango.library) == (__version__, f"tango_stepinfo {__version__}")
    env = EnvironmentMetadata()
    assert env.tango == tango


def test_tango_version_is_the_installed_ai2_tango(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist = fake_tango(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert TangoMetadata() == TangoMetadata("1.3.2", f"tango_stepinfo {__version__}")
    env = EnvironmentMetadata()
    assert env.tango == TangoMetadata("1.3.2")
    assert ("ai2-tango", "1.3.2") in (env.packages or [])
    info = StepInfo("u", "C", set(), True)
    assert info.environment.tango is not None and info.environment.tango.version == "1.3.2"
    shutil.rmtree(dist)  # uninstalled while the process runs: seen by the next record
    assert TangoMetadata().version == __version__
    assert EnvironmentMetadata().tango == TangoMetadata(__version__)


def test_the_tango_of_a_record_reads_the_scan_its_packages_just_validated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    EnvironmentMetadata()
    checks: List[int] = []
    real = _probe.unchanged

    def counted(deps: _probe.Deps) -> bool:
        checks.append(1)
        return real(deps)

    monkeypatch.setattr(_probe, "unchanged", counted)
    EnvironmentMetadata()
    assert len(checks) == 1  # by the packages field; the tango field reads the scan it validated
    TangoMetadata()  # alone, it validates the scan itself
    assert len(checks) == 2


def test_tango_version_without_a_usable_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", None)
    assert _probe.tango_version() is None
    assert _probe.tango_version(rescan=False) is None
    assert TangoMetadata().version == __version__


def test_the_library_field_is_ours_and_only_in_our_json(tmp_path: Path) -> None:
    tango = TangoMetadata("1.3.2")
    assert tango.library == f"tango_stepinfo {__version__}"
    assert tango.to_json_dict() == {"library": tango.library, "version": "1.3.2"}
    assert tango.to_json_dict(tango_compat=True) == {"version": "1.3.2"}
    assert TangoMetadata.from_json_dict({"version": "1.3.2"}) == TangoMetadata("1.3.2", None)
    assert pickle.loads(pickle.dumps(tango)) == tango


# --- the cache -----------------------------------------------------------------------------------


def counting(monkeypatch: pytest.MonkeyPatch, owner: object, attr: str, calls: List[str]) -> None:
    real = getattr(owner, attr)

    def wrapper(*args: object, **kwargs: object) -> object:
        calls.append(attr)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, attr, wrapper)


def test_fixed_facts_are_probed_once_by_16_racing_threads(
    monkeypatch: pytest.MonkeyPatch, outside_git: Path
) -> None:
    calls: List[str] = []
    counting(monkeypatch, os, "cpu_count", calls)
    for var in LOGIN_VARS:
        monkeypatch.delenv(var, raising=False)
    counting(monkeypatch, pwd, "getpwuid", calls)
    if hasattr(os, "uname"):
        counting(monkeypatch, os, "uname", calls)  # operating_system and host, once each
    barrier = threading.Barrier(16)
    results: List[object] = []

    def work() -> None:
        barrier.wait()
        results.append(PlatformMetadata())
        results.append(EnvironmentMetadata().python)

    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 32
    assert sorted(calls) == sorted(
        ["cpu_count", "getpwuid"] + (["uname", "uname"] if hasattr(os, "uname") else [])
    )
    assert len({repr(r) for r in results if isinstance(r, PlatformMetadata)}) == 1


def test_later_records_do_not_reprobe_and_clear_cache_does(
    monkeypatch: pytest.MonkeyPatch, outside_git: Path
) -> None:
    calls: List[str] = []
    counting(monkeypatch, os, "cpu_count", calls)
    for var in LOGIN_VARS:
        monkeypatch.delenv(var, raising=False)
    counting(monkeypatch, pwd, "getpwuid", calls)
    for _ in range(3):
        StepInfo("a", "A", set(), True)
    assert calls == ["cpu_count", "getpwuid"]
    tango_stepinfo.clear_cache()
    StepInfo("a", "A", set(), True)
    assert calls == ["cpu_count", "getpwuid"] * 2


def test_refresh_reprobes(monkeypatch: pytest.MonkeyPatch, outside_git: Path) -> None:
    info = StepInfo("a", "A", set(), True)
    monkeypatch.setattr(os, "cpu_count", lambda: 12345)
    assert StepInfo("b", "B", set(), True).platform.cpu_count != 12345  # cached
    info.refresh()
    assert info.platform.cpu_count == 12345


def test_git_probe_of_a_step_info_outside_a_repo(outside_git: Path) -> None:
    assert _probe.git() is None


# --- hostile processes -----------------------------------------------------------------------


def make_dirty_repo(path: Path) -> Tuple[str, Dict[str, str]]:
    """A repository with one commit and a changed tracked file, made with the git CLI.

    :returns: the commit, and the environment that keeps the user's git config out.
    """
    git = shutil.which("git")
    if git is None:
        pytest.skip("the git CLI makes the test repository")
    empty = path.parent / "empty-gitconfig"
    empty.write_text("")
    env = dict(os.environ, GIT_CONFIG_GLOBAL=str(empty), GIT_CONFIG_NOSYSTEM="1")
    for role in ("AUTHOR", "COMMITTER"):
        env[f"GIT_{role}_NAME"] = "Test"
        env[f"GIT_{role}_EMAIL"] = "test@example.com"
    path.mkdir()
    for args in (["init", "-q", "-b", "main"], ["add", "f.txt"], ["commit", "-q", "-m", "one"]):
        (path / "f.txt").write_text("one\n")
        subprocess.run([git, *args], cwd=path, env=env, check=True)
    (path / "f.txt").write_text("changed\n")
    done = subprocess.run([git, "rev-parse", "HEAD"], cwd=path, env=env, check=True, stdout=-1)
    return done.stdout.decode().strip(), env


FILE_DESCRIPTORS_PAST_1024 = """
import json, os, resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
import tango_stepinfo

def lowest_free_fd():
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)
    return fd

before = lowest_free_fd()
assert before >= 1024, before  # every pipe the probes open is past select()'s limit
tango_stepinfo.clear_cache()
one = tango_stepinfo.StepInfo("a", "A", set(), True)
two = tango_stepinfo.StepInfo("b", "B", set(), True)
try:
    zombie = os.waitpid(-1, os.WNOHANG)
except ChildProcessError:
    zombie = None
print(json.dumps({
    "os": [one.platform.operating_system, two.platform.operating_system],
    "git": [one.environment.git.to_json_dict(), two.environment.git.to_json_dict()],
    "leaked": lowest_free_fd() - before,
    "zombie": zombie,
}))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_NOFILE and fds are POSIX")
@pytest.mark.parametrize("has_poll", [True, False], ids=["poll", "select-only"])
def test_probes_with_file_descriptors_past_1024(tmp_path: Path, has_poll: bool) -> None:
    """A process holding 1100 files (Docker raises RLIMIT_NOFILE): pipes get fds >= 1024.

    ``select.select`` refuses those. With ``select.poll`` the probes run both children
    (``uname -p`` and ``git status``) as usual; on a platform with ``select`` only, waiting
    fails, and each child is killed, reaped and its pipe closed, ``dirty`` recorded as unknown.
    """
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"the hard RLIMIT_NOFILE is {hard}, below 2048: no fd can reach 1024 here")
    commit, env = make_dirty_repo(tmp_path / "repo")
    env["GIT_CEILING_DIRECTORIES"] = str(tmp_path)
    setup = f"import os; os.chdir({str(tmp_path / 'repo')!r})\n"
    if not has_poll:
        setup += "import logging, select; del select.poll; logging.basicConfig(level='DEBUG')\n"
        # git still runs when the record waits for it, however busy the machine: an exited
        # child is read without waiting, and then select() is never asked.
        slow = fake_bin(tmp_path / "bin", "git", f'sleep 1\nexec "{shutil.which("git")}" "$@"\n')
        env["PATH"] = f"{slow}{os.pathsep}{env['PATH']}"
    done = subprocess.run(
        [sys.executable, "-c", setup + FILE_DESCRIPTORS_PAST_1024],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    diff = subprocess.run(
        [
            str(shutil.which("git")),
            *("diff", "--binary", "--no-color", "--no-ext-diff", "--no-textconv"),
            *("--no-renames", "--src-prefix=a/", "--dst-prefix=b/", "HEAD"),
        ],
        cwd=tmp_path / "repo",
        env=env,
        check=True,
        stdout=subprocess.PIPE,
    ).stdout
    expected_git = {
        "commit": commit,
        "remote": None,
        "branch": "main",
        "dirty": has_poll or None,
        "diff": hashlib.sha256(diff).hexdigest() if has_poll else None,
    }
    assert json.loads(done.stdout) == {
        "os": [platform.platform()] * 2,
        "git": [expected_git] * 2,
        "leaked": 0,
        "zombie": None,
    }
    if not has_poll:
        assert "filedescriptor out of range in select()" in done.stderr
        assert "it was killed" in done.stderr


@pytest.mark.parametrize("bad", ["/x\0y", "/x\ud800y"], ids=["nul-byte", "lone-surrogate"])
def test_a_sys_path_entry_no_file_can_have_is_skipped(
    monkeypatch: pytest.MonkeyPatch, outside_git: Path, bad: str
) -> None:
    """``sys.path.append("/x\\0y")``: os.stat and os.listdir raise ValueError for it."""
    expected = _probe.packages()
    tango_stepinfo.clear_cache()
    with pytest.raises(ValueError):
        os.stat(bad)
    monkeypatch.setattr(sys, "path", [*sys.path, bad])
    first = StepInfo("a", "A", set(), True)  # scans sys.path
    second = StepInfo("b", "B", set(), True)  # re-validates it with one stat per entry
    assert first.environment.packages == second.environment.packages == expected
    assert first.platform.operating_system == platform.platform()


@pytest.mark.parametrize(
    ("name", "normalized"),
    [("Foo.Bar_baz--x", "foo-bar-baz-x"), ("zope.interface", "zope-interface"), ("A", "a")],
)
def test_normalize_name_is_pep_503(name: str, normalized: str) -> None:
    assert _probe.normalize_name(name) == normalized


@given(st.text(alphabet=st.sampled_from("aZ09-_.İß\u212a"), max_size=12) | st.text(max_size=12))
def test_normalize_name_is_the_pep_503_regex(name: str) -> None:
    assert _probe.normalize_name(name) == re.sub(r"[-_.]+", "-", name).lower()


def test_distribution_names_are_lowered_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Names lowered in one call, joined by NUL: a name that lowers to more characters (İ), odd
    # cases of the suffix and an unzipped egg's EGG-INFO are still matched to their own entry.
    dist_info(tmp_path, "\u0130x-1.0.DIST-INFO", "\u0130x", "1.0")
    dist_info(tmp_path, "Upper-2.0.Dist-Info", "Upper", "2.0")
    (tmp_path / "module_info").mkdir()  # ends like "-info" only when its "_" is overlooked
    (tmp_path / "not-a-dist-info").write_text("x")  # "-info", but neither suffix: not counted
    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    assert _probe.packages() == [("i\u0307x", "1.0"), ("upper", "2.0")]


@pytest.mark.skipif(not hasattr(signal, "SIGCHLD"), reason="SIGCHLD is POSIX")
def test_probes_when_sigchld_is_ignored(tmp_path: Path) -> None:
    """With SIGCHLD ignored the system reaps children itself: waitpid() finds no child."""
    commit, env = make_dirty_repo(tmp_path / "repo")
    env["GIT_CEILING_DIRECTORIES"] = str(tmp_path)
    code = (
        f"import os, signal; os.chdir({str(tmp_path / 'repo')!r})\n"
        "signal.signal(signal.SIGCHLD, signal.SIG_IGN)\n"
        "import tango_stepinfo\n"
        "info = tango_stepinfo.StepInfo('a', 'A', set(), True)\n"
        "print(info.environment.git.commit, info.environment.git.dirty)\n"
    )
    assert output(run_python(code, **env)).split() == [commit, "None"]


# --- when git status starts ------------------------------------------------------------------


@pytest.fixture
def logging_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in a real repository whose ``git`` (alone on PATH) notes each call in a file."""
    make_dirty_repo(tmp_path / "repo")
    calls = tmp_path / "git-calls"
    bin_dir = fake_bin(tmp_path / "bin", "git", f'echo "$@" >> "{calls}"\n')
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.chdir(tmp_path / "repo")
    tango_stepinfo.clear_cache()
    return calls


def test_platform_metadata_alone_never_starts_git(logging_git: Path) -> None:
    PlatformMetadata()
    PlatformMetadata()
    assert not logging_git.exists()
    EnvironmentMetadata()
    assert "status" in logging_git.read_text()


def test_a_step_info_starts_git_status_before_probing_its_platform(
    logging_git: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tango_stepinfo import _git

    started = []
    real = _probe._linux_parts

    def first_platform_probe() -> object:
        started.append(_git._pending is not None or logging_git.exists())
        return real()

    monkeypatch.setattr(_probe, "_linux_parts", first_platform_probe)
    info = StepInfo("a", "A", set(), True)
    assert started == [True]  # running while the platform is probed, as before the split
    assert info.environment.git is not None and info.environment.git.dirty is False


# --- fallback reasons: every fallback, its one-line reason in the record -----------------------


def platform_reasons() -> Dict[str, str]:
    return PlatformMetadata().fallbacks or {}


def environment_reasons() -> Dict[str, str]:
    return EnvironmentMetadata().fallbacks or {}


def test_no_fallback_no_reasons(outside_git: Path) -> None:
    info = StepInfo("a", "A", set(), True)
    assert info.platform.fallbacks is None or "user" not in info.platform.fallbacks
    assert info.environment.fallbacks is None


def test_reason_user_without_passwd_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in LOGIN_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(pwd, "getpwuid", raising(KeyError("getpwuid(): uid not found: 1234")))
    assert platform_reasons()["user"] == (
        f"no passwd entry and no login variable for uid {os.getuid()}; recorded the uid"
    )


def test_reason_user_unknown_without_uids(monkeypatch: pytest.MonkeyPatch) -> None:
    no_user_name(monkeypatch, KeyError("no user"))
    monkeypatch.delattr(os, "getuid")
    assert (
        platform_reasons()["user"] == "no user name and no uids on this system; recorded 'unknown'"
    )


def test_reason_host_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "uname", raising(OSError("uname failed")), raising=False)
    monkeypatch.setattr(socket, "gethostname", raising(OSError("no host name")))
    monkeypatch.setattr(platform, "node", raising(OSError("no node")))
    assert platform_reasons()["host"] == (
        "no way of asking the host name worked; recorded 'unknown'"
    )


def test_reason_operating_system_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "uname", raising(OSError("no uname")), raising=False)
    monkeypatch.setattr(platform, "platform", raising(OSError("no platform")))
    reasons = platform_reasons()
    assert reasons["operating_system"] == "platform.platform() failed; recorded 'unknown'"


def test_reason_cpu_count_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert platform_reasons()["cpu_count"] == "os.cpu_count() could not tell; recorded None"


@pytest.mark.skipif(not os.path.exists("/proc/self/exe"), reason="needs /proc")
def test_reason_executable_from_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", "")
    assert environment_reasons()["executable"] == (
        "sys.executable is empty; recorded the target of /proc/self/exe"
    )


def test_reason_executable_last_resort(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", None)
    monkeypatch.setattr(os, "readlink", raising(OSError("no /proc")))
    assert environment_reasons()["executable"] == (
        "sys.executable is empty and /proc/self/exe unreadable; recorded 'python'"
    )


def test_reason_command_follows_each_record(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(sys, "argv")
    assert environment_reasons()["command"] == "sys.argv is missing or not a list; recorded ''"
    monkeypatch.setattr(sys, "argv", ["train.py"], raising=False)
    assert "command" not in environment_reasons()  # checked again for every record


def test_reason_packages_follows_each_record(monkeypatch: pytest.MonkeyPatch) -> None:
    path = list(sys.path)
    monkeypatch.setattr(sys, "path", None)
    assert environment_reasons()["packages"] == "sys.path is not a list; recorded None"
    monkeypatch.setattr(sys, "path", path)
    assert "packages" not in environment_reasons()


@pytest.mark.skipif(not os.path.exists("/proc/self/cwd"), reason="needs /proc")
def test_reason_root_of_a_removed_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    gone = removed_cwd(tmp_path, monkeypatch)
    env = EnvironmentMetadata()
    assert env.root == gone
    assert env.fallbacks == {
        "root": "the working directory was deleted; recorded its former path from /proc/self/cwd"
    }
    monkeypatch.chdir(tmp_path)
    assert EnvironmentMetadata().fallbacks is None  # the reason went with the fallback


def test_reason_root_from_pwd_then_dot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    removed_cwd(tmp_path, monkeypatch)
    monkeypatch.setattr(os, "readlink", raising(OSError("no /proc")))
    monkeypatch.setenv("PWD", "/somewhere/else")
    assert environment_reasons()["root"] == "the working directory was deleted; used $PWD"
    monkeypatch.setenv("PWD", "relative")
    assert environment_reasons()["root"] == (
        "the working directory was deleted and $PWD is not absolute; recorded '.'"
    )


def test_reasons_are_one_line_and_name_no_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    no_user_name(monkeypatch, KeyError("secret-ish detail"))
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    monkeypatch.delattr(sys, "argv")
    reasons = {**platform_reasons(), **environment_reasons()}
    assert {"user", "cpu_count", "command"} <= set(reasons)
    for reason in reasons.values():
        assert "\n" not in reason and "Traceback" not in reason and "secret-ish" not in reason


@pytest.mark.parametrize("entry", ["", ".", "tools"])
def test_a_relative_path_entry_never_runs_a_uname_of_the_working_directory(
    tmp_path: Path, entry: str
) -> None:
    # An empty, "." or relative $PATH entry is a folder of the working directory to the C
    # library's search: a checkout holding an executable named "uname" there must not be run
    # by the first record, whether the C library or which() would look for it.
    marker = tmp_path / "ran"
    fake_bin(tmp_path / entry, "uname", f'touch "{marker}"\necho planted\n')
    real = Path(shutil.which("uname") or "/bin/uname").parent
    env = dict(os.environ, PATH=f"{entry}:{real}", TANGO_STEPINFO_GIT_DIRTY="0")
    done = subprocess.run(
        [sys.executable, "-c", "import tango_stepinfo as t; print(t.PlatformMetadata())"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        check=True,
        timeout=60,
    )
    assert b"operating_system=" in done.stdout
    assert b"planted" not in done.stdout
    assert not marker.exists()


def test_clear_cache_loads_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    # Out of file descriptors, loading the JSON codec's cache module (to clear it) raised
    # OSError out of clear_cache() and StepInfo.refresh(); not loaded, it has nothing to clear.
    import_fails(monkeypatch, "tango_stepinfo._json_default")
    tango_stepinfo.clear_cache()
    assert "tango_stepinfo._json_default" not in sys.modules


_NAMES_OUT_OF_FDS = """
import json, os, resource, tango_stepinfo

def record():
    return tango_stepinfo.StepInfo("s", "S", set(), True).to_json_dict()

first = record()
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 4096), hard))
taken = []
try:
    while True:
        taken.append(os.open(os.devnull, os.O_RDONLY))
except OSError:
    pass
try:
    tango_stepinfo.clear_cache()  # the names to hide are read again, out of descriptors
    short = record()
finally:
    for fd in taken:
        os.close(fd)
later = [record(), record()]
print(json.dumps([first, short, *later]))
"""


def test_names_to_hide_read_out_of_file_descriptors_are_not_kept(tmp_path: Path) -> None:
    """Out of file descriptors, the names to hide (the git remote's owner, from the git config;
    the passwd name) could not all be read, and the Policy kept the short list: every later
    record named them. Now a record made then hides its texts whole, and keeps nothing."""
    repo = make_repo(tmp_path / "repo", branch="carol-gh/fix")
    git(repo, "remote", "add", "origin", "git@github.com:carol-gh/x.git")
    done = run_python(
        _NAMES_OUT_OF_FDS,
        "--entity",
        "carol-gh",
        cwd=repo,
        PYTHONPATH=_SOURCE,
        TANGO_STEPINFO_PRIVACY="anonymous",
        TANGO_STEPINFO_PRIVACY_KEY="",
        HOME=str(tmp_path),
    )
    assert done.returncode == 0, done.stderr.decode()
    assert b"carol-gh" not in done.stdout
    first, short, *later = json.loads(done.stdout)
    assert first["environment"]["command"] == "-c --entity anonymous"
    assert short["environment"]["command"] in ("", "anonymous")  # hidden whole
    for record in later:  # names read again: the command is the full record's, not 'anonymous'
        assert record["environment"]["command"] == "-c --entity anonymous"
