"""The command line, run for real in a subprocess: output and exit status of every command."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import os
import pickle
import platform
import re
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
from contextlib import closing
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from tango_stepinfo import (
    EnvironmentMetadata,
    GitMetadata,
    PlatformMetadata,
    StepInfo,
    TangoMetadata,
    _cli,
)
from tango_stepinfo._show import capture_summary, human_duration

from .conftest import TANGO_DATA
from .strategies import full_record

TANGO_JSON = TANGO_DATA / "json"
TANGO_PICKLE = TANGO_DATA / "pickle"
UTC = dt.timezone.utc
COMMANDS = ["show", "check", "diff", "ls", "migrate", "tango-alias", "schema"]


def run(
    *args: str,
    tz: str = "UTC",
    stdin: Optional[str] = None,
    cwd: Optional[Path] = None,
    env: Optional[Dict[str, str]] = None,
    program: Optional[List[str]] = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real program with ``args`` and the time zone ``tz``."""
    environ = {**os.environ, "TZ": tz, "PYTHONIOENCODING": "utf-8", **(env or {})}
    return subprocess.run(
        [*(program or [sys.executable, "-m", "tango_stepinfo"]), *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        input=stdin,
        cwd=cwd,
        env=environ,
        timeout=120,
        check=False,
    )


def write(path: Path, value: Any) -> str:
    """Write ``value`` as JSON (a record as its JSON dict) and return the path as a string."""
    if isinstance(value, StepInfo):
        value = value.to_json_dict()
    elif isinstance(value, list):
        value = [v.to_json_dict() if isinstance(v, StepInfo) else v for v in value]
    path.write_text(json.dumps(value, indent=2), encoding="utf-8")
    return str(path)


def fails_cleanly(result: subprocess.CompletedProcess[str], status: int = 2) -> str:
    """Assert a one-line error on stderr, no traceback, nothing on stdout; return the line."""
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tango-stepinfo: ")
    return lines[0]


def other_environment() -> StepInfo:
    """``full_record()`` after an upgrade on another machine (the facts not named here kept)."""
    record = full_record(n_packages=4)
    record.platform = dataclasses.replace(
        record.platform,
        operating_system="Linux-6.1.0-x86_64-with-glibc2.36",
        cpu_count=8,
        host="laptop",
    )
    env = record.environment
    record.environment = dataclasses.replace(
        env,
        python="3.11.7",
        executable=Path("/usr/bin/python3"),
        packages=[
            ("package-00", "1.0.0"),
            ("Package_01", "2.0.0"),  # same project as package-01, another version
            ("package-03", "1.3.0"),
            ("zlib-ng", "0.4.1"),
        ],
        git=GitMetadata(
            commit="0123456789abcdef0123456789abcdef01234567",
            remote=env.git.remote if env.git else None,
            branch="main",
            dirty=True,
        ),
        tango=TangoMetadata("1.3.2"),
    )
    return record


def squeezed(text: str) -> str:
    """``text`` with the padding after each ``label:`` removed: the width of the label column
    follows the longest label, which grows with the record's fields."""
    return re.sub(r"^( *[^:\n]+:) +", r"\1 ", text, flags=re.M)


# --- capture (no command) ----------------------------------------------------------------------


def test_capture_summary_describes_this_machine(tmp_path: Path) -> None:
    result = run(cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    rows = {}
    for line in result.stdout.splitlines():
        label, sep, value = line.partition(":")
        if sep and not line.startswith(" "):
            rows[label] = value.strip()
    assert rows["OS"] == platform.platform()
    assert rows["CPUs"] == str(os.cpu_count())
    assert rows["Python"] == platform.python_version()
    assert rows["executable"] == sys.executable
    assert rows["root"] == str(tmp_path.resolve())
    assert "tango_stepinfo" in rows["command"]
    assert rows["host"] == PlatformMetadata().host
    assert rows["user"] == PlatformMetadata().user
    packages = EnvironmentMetadata().packages
    assert packages is not None
    assert rows["packages"] == str(len(packages))
    # The first few packages follow, one a line, under the values.
    lines = result.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("packages:"))
    width = len(lines[at]) - len(rows["packages"])
    for (name, version), line in zip(packages[:5], lines[at + 1 :]):
        assert line == " " * width + f"{name} {version}"


def test_capture_summary_is_aligned(tmp_path: Path) -> None:
    out = run(cwd=tmp_path).stdout
    columns = set()
    for line in out.splitlines():
        rest = line.lstrip() if line.startswith(" ") else line.partition(":")[2].lstrip()
        columns.add(len(line) - len(rest))
    assert len(columns) == 1, out
    assert len(out.splitlines()) > 10


def test_capture_summary_shows_git(tmp_path: Path) -> None:
    git = GitMetadata("3f9c2d1e", "https://example.com/x.git", "main", True)
    env = full_record().environment
    env.git = git
    out = capture_summary(full_record().platform, env)
    assert squeezed("git commit: 3f9c2d1e\n") in squeezed(out)
    assert squeezed("git branch: main\n") in squeezed(out)
    assert squeezed("git dirty:  yes\n") in squeezed(out)
    assert squeezed("git remote: https://example.com/x.git\n") in squeezed(out)
    env.git = GitMetadata(None, None, None, None)
    out = capture_summary(full_record().platform, env)
    assert squeezed("git commit: (no commits)\n") in squeezed(out)
    assert squeezed("git branch: (detached)\n") in squeezed(out)
    assert squeezed("git dirty:  unknown\n") in squeezed(out)
    env.git = None
    assert squeezed("git:        not a git repository\n") in squeezed(
        capture_summary(full_record().platform, env)
    )


def test_capture_summary_in_a_git_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The program prints what the git probe finds in the directory it runs in.
    git = [
        "git",
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.com",
        "-c",
        "init.defaultBranch=main",
    ]
    subprocess.run([*git, "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f").write_text("x")
    subprocess.run([*git, "-C", str(tmp_path), "add", "f"], check=True)
    subprocess.run([*git, "-C", str(tmp_path), "commit", "-qm", "one"], check=True)
    monkeypatch.chdir(tmp_path)
    expected = capture_summary(PlatformMetadata(), EnvironmentMetadata())
    out = run(cwd=tmp_path).stdout
    git_lines = [line for line in out.splitlines() if line.startswith("git")]
    assert git_lines == [line for line in expected.splitlines() if line.startswith("git")]


def test_capture_summary_without_packages() -> None:
    env = full_record().environment
    env.packages = None
    assert squeezed("packages:   unknown\n") in squeezed(
        capture_summary(full_record().platform, env)
    )
    env.packages = [("a", "1")]
    out = capture_summary(full_record().platform, env)
    lines = out.splitlines()
    assert squeezed(lines[-2]) == "packages: 1"
    assert lines[-1].strip() == "a 1" and not lines[-1].startswith("a")
    assert "more" not in out


def test_capture_json_is_platform_and_environment(tmp_path: Path) -> None:
    result = run("--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert sorted(doc) == ["environment", "platform"]
    platform_ = PlatformMetadata.from_json_dict(doc["platform"])
    environment = EnvironmentMetadata.from_json_dict(doc["environment"])
    assert platform_.cpu_count == os.cpu_count()
    assert environment.python == platform.python_version()
    assert environment.executable == Path(sys.executable)
    assert environment.root == tmp_path.resolve()
    assert environment.packages == EnvironmentMetadata().packages
    assert doc["environment"] == environment.to_json_dict()  # our format, lossless


def test_json_before_a_command_is_a_usage_error(tmp_path: Path) -> None:
    result = run("--json", "show", write(tmp_path / "r.json", full_record()))
    assert result.returncode == 2
    assert "--json goes after the command" in result.stderr
    assert result.stdout == ""


# --- show --------------------------------------------------------------------------------------

FAILED_SHOWN = """\
TrainStep-abc123
  name:       train
  class:      TrainStep
  state:      failed
  started:    2024-03-10 06:59:58+00:00
  ended:      2024-03-10 07:00:01+00:00
  duration:   3.0s
  error:      ValueError: bad learning rate
  host:       gpu-node-07
  git commit: 3f9c2d1e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e
"""


def test_show_tango_failed_record() -> None:
    result = run("show", str(TANGO_JSON / "failed.json"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == FAILED_SHOWN
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("case", "state", "started", "ended", "duration"),
    [
        ("incomplete", "incomplete", "-", "-", "-"),
        ("running", "running", "2024-03-10 06:59:58+00:00", "-", "-"),
        (
            "completed",
            "completed",
            "2024-03-10 06:59:58+00:00",
            "2024-03-10 07:42:03+00:00",
            "42m 05s",
        ),
        ("failed", "failed", "2024-03-10 06:59:58+00:00", "2024-03-10 07:00:01+00:00", "3.0s"),
        ("uncacheable", "uncacheable", "-", "-", "-"),
    ],
)
def test_show_every_tango_state(
    case: str, state: str, started: str, ended: str, duration: str
) -> None:
    result = run("show", str(TANGO_JSON / f"{case}.json"))
    assert result.returncode == 0, result.stderr
    assert f"\n  state:      {state}\n" in result.stdout
    assert f"\n  started:    {started}\n" in result.stdout
    assert f"\n  ended:      {ended}\n" in result.stdout
    assert f"\n  duration:   {duration}\n" in result.stdout


def test_show_every_tango_fixture() -> None:
    files = sorted(str(p) for p in TANGO_JSON.glob("*.json"))
    assert len(files) >= 5
    result = run("show", *files)
    assert result.returncode == 0, result.stderr
    for name in files:
        assert f"==> {name} <==\n" in result.stdout
    assert result.stdout.count("\n  state:") == len(files)


def test_show_unicode_record() -> None:
    result = run("show", str(TANGO_JSON / "unicode.json"))
    assert result.returncode == 0, result.stderr
    record = StepInfo.from_json_dict(json.loads((TANGO_JSON / "unicode.json").read_text("utf-8")))
    assert f"  name:       {record.step_name}\n" in result.stdout
    assert f"  host:       {record.platform.host}\n" in result.stdout
    assert record.error is not None
    assert f"  error:      {record.error.splitlines()[-1]}\n" in result.stdout


def test_show_uses_the_local_time_zone(tmp_path: Path) -> None:
    # A POSIX TZ string needs no time zone database: XYZ is 5:30 ahead of UTC.
    result = run("show", str(TANGO_JSON / "failed.json"), tz="XYZ-5:30")
    assert "  started:    2024-03-10 12:29:58+05:30\n" in result.stdout
    assert "  ended:      2024-03-10 12:30:01+05:30\n" in result.stdout
    assert "  duration:   3.0s\n" in result.stdout


def test_show_our_json_with_microseconds_and_dirty_git(tmp_path: Path) -> None:
    record = full_record()
    assert record.environment.git is not None
    record.environment.git.dirty = True
    record.error = "Traceback (most recent call last):\n  File x\nKeyError: 'lr'\n\n   \n"
    result = run("show", write(tmp_path / "r.json", record))
    assert result.returncode == 0, result.stderr
    assert squeezed("  started:    2024-03-10 06:59:58+00:00\n") in squeezed(result.stdout)
    assert squeezed("  duration:   42m 05s\n") in squeezed(result.stdout)
    assert squeezed("  error:      KeyError: 'lr'\n") in squeezed(result.stdout)
    assert squeezed(
        "  git commit: 3f9c2d1e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e\n  git dirty:  yes\n"
    ) in squeezed(result.stdout)


def test_show_a_list_of_records(tmp_path: Path) -> None:
    a = full_record()
    b = full_record()
    b.unique_id = "EvalStep-def456"
    b.step_name = None
    b.environment.git = None
    result = run("show", write(tmp_path / "both.json", [a, b]))
    assert result.returncode == 0, result.stderr
    blocks = result.stdout.split("\n\n")
    assert [block.splitlines()[0] for block in blocks] == ["TrainStep-abc123", "EvalStep-def456"]
    assert squeezed("  name:     -\n") in squeezed(blocks[1])
    assert squeezed("  git:      not a git repository\n") in squeezed(blocks[1])
    assert "==>" not in result.stdout  # one file: no file headers


def test_show_an_empty_list_prints_nothing(tmp_path: Path) -> None:
    result = run("show", write(tmp_path / "none.json", []))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def test_show_invalid_state_prints_the_reason(tmp_path: Path) -> None:
    record = full_record()
    record.start_time = None
    result = run("show", write(tmp_path / "r.json", record))
    assert result.returncode == 0, result.stderr
    assert squeezed(
        "  state:      StepInfo 'TrainStep-abc123' is in an invalid state: end_time is set but "
        "start_time is not\n"
    ) in squeezed(result.stdout)
    assert squeezed("  started:    -\n") in squeezed(result.stdout)
    assert squeezed("  duration:   -\n") in squeezed(result.stdout)


def test_show_escapes_control_characters(tmp_path: Path) -> None:
    record = full_record()
    record.unique_id = "\x1b[2Jevil\x07"
    record.error = "boom\x1b]0;title\x07"
    result = run("show", write(tmp_path / "r.json", record))
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout
    assert "\x07" not in result.stdout
    assert result.stdout.startswith("\\x1b[2Jevil\\x07\n")
    assert squeezed("  error:      boom\\x1b]0;title\\x07\n") in squeezed(result.stdout)


def test_show_escapes_bidirectional_overrides(tmp_path: Path) -> None:
    bidi = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    record = full_record()
    record.unique_id = f"step\u202etxt.exe{bidi}"
    record.error = f"boom\u2066{bidi}\u2069"
    result = run("show", write(tmp_path / "r.json", record))
    assert result.returncode == 0, result.stderr
    assert not any(char in result.stdout for char in bidi)
    assert result.stdout.startswith("step\\u202etxt.exe\\u061c\\u200e")
    assert "boom\\u2066\\u061c" in result.stdout
    result = run("show", "x.json", f"--bogus\u202e{bidi}")
    assert result.returncode == 2
    assert not any(char in result.stderr for char in bidi)
    assert "--bogus\\u202e" in result.stderr


def test_show_json_prints_our_format(tmp_path: Path) -> None:
    result = run(
        "show", "--json", str(TANGO_JSON / "failed.json"), str(TANGO_JSON / "running.json")
    )
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)
    expected = [
        StepInfo.from_json_dict(json.loads((TANGO_JSON / name).read_text("utf-8"))).to_json_dict()
        for name in ("failed.json", "running.json")
    ]
    assert records == expected
    assert records[0]["start_time"] == "2024-03-10T06:59:58.000000+00:00"
    # What show --json prints, show reads back to the same text.
    out = tmp_path / "ours.json"
    out.write_text(result.stdout, encoding="utf-8")
    again = run("show", str(out))
    direct = run("show", str(TANGO_JSON / "failed.json"), str(TANGO_JSON / "running.json"))
    assert again.stdout == "\n\n".join(
        block.split("\n", 1)[1] for block in direct.stdout.split("\n\n")
    )


def test_show_reads_standard_input() -> None:
    text = (TANGO_JSON / "failed.json").read_text("utf-8")
    result = run("show", "-", stdin=text)
    assert result.returncode == 0, result.stderr
    assert result.stdout == FAILED_SHOWN


@pytest.mark.skipif(shutil.which("sh") is None, reason="sh makes the redirections")
@pytest.mark.parametrize("command", ["show", "check"])
@pytest.mark.parametrize(
    ("redirect", "problem"),
    [("<&-", "standard input is closed"), ("0>stdin-w", "cannot read: Bad file descriptor")],
    ids=["closed", "write-only"],
)
def test_standard_input_that_cannot_be_read(
    tmp_path: Path, command: str, redirect: str, problem: str
) -> None:
    """``<&-`` starts Python with ``sys.stdin`` None; ``0>file`` makes reading it fail (EBADF)."""
    script = f'exec "$0" -m tango_stepinfo "$@" {redirect}'
    result = run(
        command, "-", program=[str(shutil.which("sh")), "-c", script, sys.executable], cwd=tmp_path
    )
    if command == "show":
        assert fails_cleanly(result) == f"tango-stepinfo: -: {problem}"
    else:  # check reports each file on standard output
        assert (result.returncode, result.stdout, result.stderr) == (2, f"-: {problem}\n", "")


def test_show_stops_quietly_when_the_reader_goes_away(tmp_path: Path) -> None:
    many = tmp_path / "many.json"
    write(many, [full_record(n_packages=1)] * 3000)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tango_stepinfo", "show", str(many)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "TZ": "UTC"},
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the program writes: its first write fails
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 1
    assert stderr == ""


# --- human durations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (dt.timedelta(0), "0.0s"),
        (dt.timedelta(milliseconds=99), "0.0s"),
        (dt.timedelta(seconds=3, milliseconds=250), "3.2s"),
        (dt.timedelta(seconds=59, microseconds=999_999), "59.9s"),
        (dt.timedelta(seconds=60), "1m 00s"),
        (dt.timedelta(minutes=42, seconds=5, microseconds=530_865), "42m 05s"),
        (dt.timedelta(hours=1, minutes=2, seconds=3), "1h 02m 03s"),
        (dt.timedelta(days=2, hours=3), "2d 03h 00m 00s"),
        (dt.timedelta(seconds=-3, milliseconds=-200), "-3.2s"),
        (dt.timedelta(minutes=-90), "-1h 30m 00s"),
    ],
)
def test_human_duration(delta: dt.timedelta, text: str) -> None:
    assert human_duration(delta) == text


# --- check -------------------------------------------------------------------------------------


def test_check_all_good() -> None:
    files = sorted(str(p) for p in TANGO_JSON.glob("*.json"))
    result = run("check", *files)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "".join(f"{name}: OK\n" for name in files)


def test_check_reports_each_bad_file_with_its_field(tmp_path: Path) -> None:
    good = write(tmp_path / "good.json", full_record())
    data = full_record().to_json_dict()
    data["environment"]["git"]["commit"] = 5
    bad = write(tmp_path / "bad.json", data)
    no_cacheable = full_record().to_json_dict()
    del no_cacheable["cacheable"]
    many = write(tmp_path / "many.json", [full_record(), full_record(), no_cacheable])
    result = run("check", good, bad, many)
    assert result.returncode == 1
    assert result.stdout == (
        f"{good}: OK\n"
        f"{bad}: not a record: environment.git.commit: expected a string or null, got 5\n"
        f"{many}: not a record: [2].cacheable: required field is missing\n"
    )


def test_check_counts_records_in_a_list(tmp_path: Path) -> None:
    many = write(tmp_path / "many.json", [full_record(), full_record()])
    assert run("check", many).stdout == f"{many}: OK (2 records)\n"


def test_check_unreadable_file_is_status_2(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.json", {"unique_id": 5})
    missing = str(tmp_path / "missing.json")
    result = run("check", bad, missing)
    assert result.returncode == 2
    assert result.stdout.splitlines()[1] == f"{missing}: cannot read: No such file or directory"


def test_check_strict(tmp_path: Path) -> None:
    clean = write(tmp_path / "clean.json", full_record())
    dirty_record = full_record()
    assert dirty_record.environment.git is not None
    dirty_record.environment.git.dirty = True
    dirty = write(tmp_path / "dirty.json", dirty_record)
    no_git_record = full_record()
    no_git_record.environment.git = None
    no_git = write(tmp_path / "no-git.json", no_git_record)
    fell_back = full_record()
    fell_back.platform.fallbacks = {
        "user": "no passwd entry and no login variable for uid 1234; recorded the uid"
    }
    fell_back.environment.fallbacks = {
        "root": "the working directory was deleted; used $PWD",
        "git.dirty": "git status timed out after 2 s",
    }
    fallbacks = write(tmp_path / "fallbacks.json", fell_back)
    many = write(tmp_path / "many.json", [full_record(), dirty_record])
    result = run("check", "--strict", clean, dirty, no_git, fallbacks, many)
    assert result.returncode == 1
    assert result.stdout == (
        f"{clean}: OK\n"
        f"{dirty}: environment.git.dirty: the working tree had uncommitted changes\n"
        f"{no_git}: environment.git: no git repository was recorded\n"
        f"{fallbacks}: platform.user: no passwd entry and no login variable for uid 1234; "
        "recorded the uid\n"
        f"{fallbacks}: environment.git.dirty: git status timed out after 2 s\n"
        f"{fallbacks}: environment.root: the working directory was deleted; used $PWD\n"
        f"{many}: [1].environment.git.dirty: the working tree had uncommitted changes\n"
    )
    # Without --strict the same files are all records.
    assert run("check", clean, dirty, no_git, fallbacks, many).returncode == 0
    assert run("check", "--strict", clean).returncode == 0


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_show_missing_file(tmp_path: Path, json_flag: List[str]) -> None:
    missing = tmp_path / "nope.json"
    line = fails_cleanly(run("show", *json_flag, str(missing)))
    assert line == f"tango-stepinfo: {missing}: cannot read: No such file or directory"


def test_diff_missing_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    result = run("diff", str(a), str(b))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"tango-stepinfo: {a}: cannot read: No such file or directory\n"
        f"tango-stepinfo: {b}: cannot read: No such file or directory\n"
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "not JSON: the file is empty"),
        (b"  \n", "not JSON: the file is empty"),
        (b'{"unique_id": ', "not JSON: Expecting value at line 1 column 15"),
        (b"hello world", "not JSON: Expecting value at line 1 column 1"),
        (b"\xff\xfe\xfa", "not JSON: not utf-16"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON: nested too deeply"),
        (b"5", "not a record: expected an object or a list, got 5"),
        (b'"record"', "not a record: expected an object or a list, got 'record'"),
        (b'{"cacheable": true}', "not a record: unique_id: required field is missing"),
        (b"[5]", "not a record: [0]: expected an object, got 5"),
    ],
    ids=lambda v: v[:20].decode("latin-1") if isinstance(v, bytes) else None,
)
def test_bad_input_is_one_line_on_stderr(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    line = fails_cleanly(run("show", str(path)))
    assert line.startswith(f"tango-stepinfo: {path}: {problem}")


def test_wrong_field_names_its_path(tmp_path: Path) -> None:
    data = full_record().to_json_dict()
    data["environment"]["packages"][3] = ["numpy"]
    path = write(tmp_path / "bad.json", data)
    line = fails_cleanly(run("show", path))
    assert line == (
        f"tango-stepinfo: {path}: not a record: environment.packages[3]: "
        "expected a list of 2 items, got 1"
    )


def test_a_directory_without_records_is_an_error(tmp_path: Path) -> None:
    line = fails_cleanly(run("show", str(tmp_path)))
    assert line == (
        f"tango-stepinfo: {tmp_path}: not a store: no stepinfo.sqlite and no .json files in the"
        " folder"
    )


def test_show_reports_every_bad_file_and_prints_nothing(tmp_path: Path) -> None:
    good = write(tmp_path / "good.json", full_record())
    result = run("show", str(tmp_path / "a"), good, str(tmp_path / "b"))
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 2
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [["nope"], ["show"], ["diff", "a"], ["check"], ["schema", "x"], ["show", "--bogus", "f"]],
)
def test_usage_errors_are_status_2(args: List[str]) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "usage: tango-stepinfo" in result.stderr
    assert "Traceback" not in result.stderr


# --- diff --------------------------------------------------------------------------------------

DIFF_SHOWN = """\
--- {a}
+++ {b}
Python
  version:    3.10.12 -> 3.11.7
  executable: /opt/conda/bin/python -> /usr/bin/python3
Packages: 1 added, 1 removed, 2 changed
  + zlib-ng     0.4.1
  - package-02  1.2.0
  ~ Package_01  1.1.0 -> 2.0.0
  ~ package-03  1.3.0, 1.3.1 -> 1.3.0
Git
  commit: 3f9c2d1e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e -> 0123456789abcdef0123456789abcdef01234567
  dirty:  no -> yes
Platform
  OS:   Linux-5.15.0-x86_64-with-glibc2.35 -> Linux-6.1.0-x86_64-with-glibc2.36
  CPUs: 32 -> 8
  host: gpu-7 -> laptop
"""


def two_environments(tmp_path: Path) -> List[str]:
    a = full_record(n_packages=4)
    assert a.environment.packages is not None
    a.environment.packages.append(("package-03", "1.3.1"))  # installed twice
    return [write(tmp_path / "a.json", a), write(tmp_path / "b.json", other_environment())]


def test_diff_lists_what_changed(tmp_path: Path) -> None:
    a, b = two_environments(tmp_path)
    result = run("diff", a, b)
    assert result.returncode == 1, result.stderr
    assert result.stderr == ""
    assert result.stdout == DIFF_SHOWN.format(a=a, b=b)


def test_diff_json(tmp_path: Path) -> None:
    a, b = two_environments(tmp_path)
    result = run("diff", "--json", a, b)
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout) == {
        "a": a,
        "b": b,
        "differences": {
            "python": {
                "python": {"a": "3.10.12", "b": "3.11.7"},
                "executable": {"a": "/opt/conda/bin/python", "b": "/usr/bin/python3"},
            },
            "packages": {
                "added": {"zlib-ng": "0.4.1"},
                "removed": {"package-02": "1.2.0"},
                "changed": {
                    "Package_01": {"a": "1.1.0", "b": "2.0.0"},
                    "package-03": {"a": "1.3.0, 1.3.1", "b": "1.3.0"},
                },
            },
            "git": {
                "commit": {
                    "a": "3f9c2d1e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e",
                    "b": "0123456789abcdef0123456789abcdef01234567",
                },
                "dirty": {"a": False, "b": True},
            },
            "platform": {
                "operating_system": {
                    "a": "Linux-5.15.0-x86_64-with-glibc2.35",
                    "b": "Linux-6.1.0-x86_64-with-glibc2.36",
                },
                "cpu_count": {"a": 32, "b": 8},
                "host": {"a": "gpu-7", "b": "laptop"},
            },
        },
    }


def test_diff_same_environment_is_status_0(tmp_path: Path) -> None:
    a = full_record()
    b = full_record()
    b.unique_id = "Other-1"  # the step differs, the environment does not
    b.start_time = None
    b.end_time = None
    paths = [write(tmp_path / "a.json", a), write(tmp_path / "b.json", b)]
    result = run("diff", *paths)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "No differences in platform or environment.\n"
    result = run("diff", "--json", *paths)
    assert result.returncode == 0
    assert json.loads(result.stdout)["differences"] == {}


def test_diff_each_field(tmp_path: Path) -> None:
    a = full_record()
    b = full_record()
    b.platform.user = "someone"
    b.environment.command = "tango run other.jsonnet"
    b.environment.root = Path("/elsewhere")
    assert b.environment.git is not None
    b.environment.git.branch = "fix"
    b.environment.git.remote = None
    paths = [write(tmp_path / "a.json", a), write(tmp_path / "b.json", b)]
    result = run("diff", *paths)
    assert result.returncode == 1
    assert result.stdout.split("\n", 2)[2] == (
        "Git\n"
        "  remote: https://github.com/example/project.git -> (none)\n"
        "  branch: main -> fix\n"
        "Platform\n"
        "  user: researcher -> someone\n"
        "Command\n"
        "  command: tango run experiment.jsonnet -w /data/ws -> tango run other.jsonnet\n"
        "  root:    /home/researcher/project -> /elsewhere\n"
    )


def test_diff_tango_record_against_ours_ignores_what_tango_does_not_record(
    tmp_path: Path,
) -> None:
    # Tango's files have no git branch or dirty flag: that is not a difference.
    ours = StepInfo.from_json_dict(json.loads((TANGO_JSON / "completed.json").read_text("utf-8")))
    assert ours.environment.git is not None
    ours.environment.git.branch = "main"
    ours.environment.git.dirty = False
    path = write(tmp_path / "ours.json", ours)
    result = run("diff", str(TANGO_JSON / "completed.json"), path)
    assert result.returncode == 0, result.stdout
    result = run("diff", str(TANGO_JSON / "completed.json"), str(TANGO_JSON / "git_null.json"))
    assert result.returncode == 1
    assert (
        "Git\n  commit: 3f9c2d1e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e -> not a git repository\n"
        in result.stdout
    )
    assert "remote: https://github.com/example/project.git -> not a git repository" in result.stdout


def test_diff_packages_not_recorded(tmp_path: Path) -> None:
    result = run("diff", str(TANGO_JSON / "completed.json"), str(TANGO_JSON / "packages_null.json"))
    assert result.returncode == 1
    assert result.stdout.endswith("Packages\n  not recorded in B\n")
    result = run(
        "diff", "--json", str(TANGO_JSON / "packages_null.json"), str(TANGO_JSON / "completed.json")
    )
    assert json.loads(result.stdout)["differences"] == {
        "packages": {"recorded": {"a": False, "b": True}}
    }


def test_diff_against_a_capture(tmp_path: Path) -> None:
    # What `tango-stepinfo --json` prints on one machine compares with a record from another.
    capture = run("--json", cwd=tmp_path)
    here = tmp_path / "here.json"
    here.write_text(capture.stdout, encoding="utf-8")
    result = run("diff", str(here), str(here))
    assert result.returncode == 0, result.stderr
    result = run("diff", str(TANGO_JSON / "completed.json"), str(here))
    assert result.returncode == 1, result.stderr
    assert f"  version:    3.10.12 -> {platform.python_version()}\n" in result.stdout
    assert f"  executable: /opt/conda/bin/python -> {sys.executable}\n" in result.stdout


def test_diff_of_a_bad_capture_names_the_field(tmp_path: Path) -> None:
    capture = json.loads(run("--json").stdout)
    capture["platform"]["cpu_count"] = "many"
    path = write(tmp_path / "here.json", capture)
    line = fails_cleanly(run("diff", path, str(TANGO_JSON / "failed.json")))
    assert line == (
        f"tango-stepinfo: {path}: not a record: platform.cpu_count: "
        "expected an integer or null, got 'many'"
    )
    del capture["platform"]
    path = write(tmp_path / "here.json", capture)
    result = run("diff", path, str(TANGO_JSON / "failed.json"))
    assert (
        result.stderr
        == f"tango-stepinfo: {path}: not a record: platform: required field is missing\n"
    )


def test_diff_needs_one_record_per_file(tmp_path: Path) -> None:
    both = write(tmp_path / "both.json", [full_record(), full_record()])
    line = fails_cleanly(run("diff", both, str(TANGO_JSON / "failed.json")))
    assert line == (
        f"tango-stepinfo: {both}: holds 2 records; diff compares exactly one each (see --step)"
    )


# --- schema ------------------------------------------------------------------------------------


def test_schema_command_prints_the_schema() -> None:
    from jsonschema import Draft202012Validator

    from tango_stepinfo._schema import schema

    result = run("schema")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed == schema()
    Draft202012Validator.check_schema(printed)
    validator = Draft202012Validator(printed)
    for path in TANGO_JSON.glob("*.json"):
        validator.validate(json.loads(path.read_text("utf-8")))


# --- help, version, entry point ----------------------------------------------------------------


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)])
def test_help_shows_an_example(command: List[str]) -> None:
    result = run(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: tango-stepinfo {' '.join(command)}".rstrip())
    examples = result.stdout.split("examples:\n", 1)[1]
    assert f"  tango-stepinfo {' '.join(command)}".rstrip() in examples


def test_help_does_not_depend_on_the_terminal_width() -> None:
    narrow = run("diff", "--help", env={"COLUMNS": "30"}).stdout
    wide = run("diff", "--help", env={"COLUMNS": "300"}).stdout
    assert narrow == wide
    assert max(len(line) for line in narrow.splitlines()) <= 88


def test_version() -> None:
    from tango_stepinfo import __version__

    result = run("--version")
    assert result.returncode == 0
    assert result.stdout == f"tango-stepinfo {__version__}\n"


def test_console_script_is_the_same_program(tmp_path: Path) -> None:
    script = shutil.which("tango-stepinfo", path=sysconfig.get_path("scripts"))
    assert script is not None, "pip install -e . installs the tango-stepinfo script"
    result = run("show", str(TANGO_JSON / "failed.json"), program=[script])
    assert result.returncode == 0, result.stderr
    assert result.stdout == FAILED_SHOWN
    summary = run(program=[script], cwd=tmp_path)
    assert summary.returncode == 0
    assert squeezed(f"\ncommand:    {script}\n") in squeezed(summary.stdout)
    assert run("nope", program=[script]).returncode == 2


def test_main_returns_the_status_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    from tango_stepinfo.__main__ import main

    assert main(["check", str(TANGO_JSON / "failed.json")]) == 0
    assert capsys.readouterr().out == f"{TANGO_JSON / 'failed.json'}: OK\n"
    assert main(["--help"]) == 0
    assert main(["nope"]) == 2


# --- pickles -----------------------------------------------------------------------------------


def test_show_tango_pickles_of_every_protocol() -> None:
    files = sorted(str(p) for p in TANGO_PICKLE.glob("failed.p*.pickle"))
    assert len(files) == 6
    result = run("show", *files)
    assert result.returncode == 0, result.stderr
    blocks = result.stdout.split("\n\n")
    assert len(blocks) == 6
    for block in blocks:
        header, unique_id, body = block.split("\n", 2)
        assert header.startswith("==> ")
        assert unique_id == "TrainStep-abc123"
        body = body.rstrip("\n") + "\n"
        # The pickled times carry microseconds: 06:59:58.123456 to 07:00:01.500000.
        assert body == FAILED_SHOWN.split("\n", 1)[1].replace("3.0s", "3.3s")


def test_check_and_diff_pickles(tmp_path: Path) -> None:
    files = sorted(str(p) for p in TANGO_PICKLE.glob("*.p[0-5].pickle") if "metadata" not in p.name)
    result = run("check", *files)
    assert result.returncode == 0, result.stdout
    assert result.stdout.count(": OK\n") == len(files)
    result = run(
        "diff", str(TANGO_PICKLE / "completed.p0.pickle"), str(TANGO_JSON / "completed.json")
    )
    assert result.returncode == 0, result.stdout


def test_pickle_of_something_else(tmp_path: Path) -> None:
    result = run("check", str(TANGO_PICKLE / "platform_metadata.p5.pickle"))
    assert result.returncode == 1
    assert result.stdout.startswith(
        f"{TANGO_PICKLE / 'platform_metadata.p5.pickle'}: not a record: "
    )
    assert result.stdout.endswith("PlatformMetadata'\n")


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_unsafe_pickle_is_refused_and_not_run(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self) -> Any:
            return (os.mkdir, (str(marker),))

    path = tmp_path / "evil.pickle"
    path.write_bytes(pickle.dumps(Evil(), protocol=protocol))
    line = fails_cleanly(run("show", str(path)))
    assert line.startswith(f"tango-stepinfo: {path}: unsafe pickle: ")
    assert "mkdir" in line
    assert not marker.exists()


def test_corrupt_pickle(tmp_path: Path) -> None:
    data = (TANGO_PICKLE / "failed.p5.pickle").read_bytes()
    path = tmp_path / "cut.pickle"
    path.write_bytes(data[: len(data) // 2])
    line = fails_cleanly(run("show", str(path)))
    assert line.startswith(f"tango-stepinfo: {path}: not a valid pickle")
    path.write_bytes(b"(lp0\nI1\nag.")  # protocol 0, refers to a memo entry that is not there
    line = fails_cleanly(run("show", str(path)))
    assert line.startswith(f"tango-stepinfo: {path}: neither JSON (")


# --- input that is not a record file (issue 10) ------------------------------------------------


def special_files(tmp_path: Path) -> List[Any]:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.json"
    zero.symlink_to("/dev/zero")
    return [(fifo, "a FIFO"), (zero, "a character device")]  # (folders are stores: test_stores)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs and /dev/zero (POSIX)")
@pytest.mark.parametrize("command", ["show", "check", "diff"])
def test_fifos_devices_and_folders_are_refused_without_blocking(
    command: str, tmp_path: Path
) -> None:
    good = write(tmp_path / "good.json", full_record())
    for path, kind in special_files(tmp_path):
        args = [command, str(path)] + ([good] if command == "diff" else [])
        result = run(*args)  # a FIFO without a writer would block forever; the run has a timeout
        expected = f"{path}: not a regular file ({kind})"
        if command == "check":
            assert result.returncode == 2 and result.stdout == expected + "\n", result
            assert result.stderr == ""
        else:
            assert fails_cleanly(result) == f"tango-stepinfo: {expected}"


def test_files_past_the_size_cap_are_refused_unless_raised(tmp_path: Path) -> None:
    path = write(tmp_path / "step.json", full_record())
    size = Path(path).stat().st_size
    line = fails_cleanly(run("show", "--max-size", str(size - 1), path))
    assert line == (
        f"tango-stepinfo: {path}: larger than {size - 1} bytes "
        "(the size cap; --max-size BYTES raises it)"
    )
    assert run("show", "--max-size", str(size), path).returncode == 0
    text = Path(path).read_text()
    result = run("check", "--max-size", "100", "-", stdin=text)
    assert (result.returncode, result.stdout) == (
        2,
        "-: larger than 100 bytes (the size cap; --max-size BYTES raises it)\n",
    )
    assert run("diff", "--max-size", "x", path, path).returncode == 2


LIMITED = [
    sys.executable,
    "-c",
    "import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_AS, (800 << 20, 800 << 20));"
    " sys.argv[0] = 'tango-stepinfo'; runpy.run_module('tango_stepinfo', run_name='__main__')",
]


def test_a_raised_size_cap_is_not_allocated_up_front(tmp_path: Path) -> None:
    # Reading used one read(cap + 1), which allocates the whole cap: with --max-size 2 GB and
    # 800 MiB of address space (ulimit -v, containers), a 3 KB record raised MemoryError.
    path = write(tmp_path / "step.json", full_record())
    big = str(2 * 10**9)
    for args, stdin in (
        (("check", "--max-size", big, path), None),
        (("check", "--max-size", big, "-"), Path(path).read_text()),
    ):
        result = run(*args, stdin=stdin, program=LIMITED)
        assert (result.returncode, result.stderr) == (0, ""), result
        assert result.stdout.endswith(": OK\n")
    # a cap past what an index holds: read(cap + 1) raised OverflowError, with a traceback
    result = run("check", "--max-size", str(10**20), path)
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{path}: OK\n", "")


def test_reading_stops_one_byte_past_the_cap_whatever_the_size_expected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A file that grew after fstat (expected 10 bytes), read in chunks: the cap still holds.
    monkeypatch.setattr(_cli, "_max_size", 200_000)
    assert len(_cli._read_capped(io.BytesIO(b"x" * 500_000), 10)) == 200_001
    assert _cli._read_capped(io.BytesIO(b"x" * 150_000), 10) == b"x" * 150_000
    assert _cli._read_capped(io.StringIO("text"), 0) == "text"  # stdin without a buffer
    assert _cli._read_capped(io.BytesIO(b""), 0) == b""


def test_argparse_messages_never_echo_control_characters() -> None:
    result = run("show", "x.json", "--bogus\x1b]0;pwned\x07", "--\x1b[2J")
    assert result.returncode == 2 and result.stdout == ""
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert "unrecognized arguments: --bogus\\x1b]0;pwned\\x07 --\\x1b[2J" in result.stderr
    assert result.stderr.count("\n") == 2  # usage line and error line, breaks kept
    result = run("\x1b[31mred")
    assert result.returncode == 2 and "\x1b" not in result.stderr
    assert "\\x1b[31mred" in result.stderr


def test_check_survives_the_deep_tuple_attack(tmp_path: Path) -> None:
    from .test_pickling import deep_tuple_key_through_a_list_filled_after_use

    path = tmp_path / "attack.pickle"
    path.write_bytes(deep_tuple_key_through_a_list_filled_after_use(300_000))
    result = run("check", str(path))
    assert result.returncode == 1, result.stderr  # not SIGSEGV (-11)
    assert result.stdout.startswith(f"{path}: not a valid pickle: corrupt pickle at byte")
    assert "Traceback" not in result.stderr


# --- stores: ls, show, check, diff on workspaces and folders; migrate; tango-alias -------------

TANGO_DB = TANGO_DATA / "sqlite" / "stepinfo.sqlite"
TANGO_RERUN_DB = TANGO_DATA / "sqlite" / "stepinfo_rerun.sqlite"


def _expected_ls(path: Path) -> List[List[str]]:
    """What ``ls`` must print for a fixture database, from its expected values."""
    expected = json.loads(
        path.with_name(path.stem.replace("stepinfo", "expected") + ".json").read_text()
    )
    rows = []
    for key, values in expected.items():
        start = values["start_time"] and dt.datetime.fromisoformat(values["start_time"])
        end = values["end_time"] and dt.datetime.fromisoformat(values["end_time"])
        rows.append((start is None, start or dt.datetime.min.replace(tzinfo=UTC), key, values, end))
    out = []
    for no_start, start, key, values, end in sorted(rows, key=lambda r: r[:3]):
        out.append(
            [
                key,
                values["state"],
                "-" if no_start else start.isoformat(timespec="seconds"),
                "-" if end is None else human_duration(end - start),
                values["platform"]["host"],
            ]
        )
    return out


@pytest.mark.parametrize("db", [TANGO_DB, TANGO_RERUN_DB])
def test_ls_lists_a_tango_database_by_start_time(db: Path, tmp_path: Path) -> None:
    shutil.copyfile(db, tmp_path / "stepinfo.sqlite")
    for source in (str(db), str(tmp_path)):
        result = run("ls", source)
        assert result.returncode == 0, result.stderr
        assert [line.split("  ") for line in result.stdout.splitlines()] != []
        got = [[c for c in line.split("  ") if c] for line in result.stdout.splitlines()]
        got = [[c.strip() for c in row] for row in got]
        assert got == _expected_ls(db)


def test_ls_filters_by_state_and_reads_folders_of_json(tmp_path: Path) -> None:
    result = run("ls", "--state", "failed", "--state", "incomplete", str(TANGO_DB))
    states = [line.split()[1] for line in result.stdout.splitlines()]
    assert sorted(states) == ["failed", "incomplete"]
    folder = tmp_path / "records"
    folder.mkdir()
    for name in ("completed", "failed", "running"):
        shutil.copyfile(TANGO_JSON / f"{name}.json", folder / f"{name}.json")
    result = run("ls", str(folder), "--state", "running")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "TrainStep-abc123",
        "running",
        "2024-03-10T06:59:58+00:00",
        "-",
        "gpu-node-07",
    ]


def test_ls_lists_what_it_can_and_reports_the_rest(tmp_path: Path) -> None:
    db = tmp_path / "stepinfo.sqlite"
    shutil.copyfile(TANGO_DB, db)
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("INSERT INTO unnamed VALUES ('Bad-1', x'80')")
    result = run("ls", str(tmp_path), str(TANGO_JSON / "failed.json"))
    assert result.returncode == 2
    assert result.stderr.startswith(f"tango-stepinfo: {db}[Bad-1]: not a valid pickle: ")
    assert result.stderr.count("\n") == 1
    assert result.stdout.startswith(f"==> {tmp_path} <==\n")
    # the store's header and 4 records, the file's header and its record
    assert result.stdout.count("\n") == 1 + 4 + 1 + 1


def test_show_and_check_read_a_workspace_and_a_json_folder(tmp_path: Path) -> None:
    shutil.copyfile(TANGO_DB, tmp_path / "stepinfo.sqlite")
    show = run("show", "--json", str(tmp_path))
    assert show.returncode == 0, show.stderr
    expected = json.loads((TANGO_DATA / "sqlite" / "expected.json").read_text())
    assert sorted(r["unique_id"] for r in json.loads(show.stdout)) == sorted(expected)
    folder = tmp_path / "json"
    folder.mkdir()
    shutil.copyfile(TANGO_JSON / "completed.json", folder / "a.json")
    (folder / "b.json").write_text("{}")
    check = run("check", str(tmp_path), str(folder))
    assert check.returncode == 1
    assert check.stdout.splitlines()[0] == f"{tmp_path}: OK (4 records)"
    assert len(check.stdout.splitlines()) == 2
    assert check.stdout.splitlines()[1].startswith(f"{folder / 'b.json'}: not a record: ")


def test_diff_picks_a_record_of_a_store_by_step_name_or_id() -> None:
    result = run("diff", "--step", "explode", str(TANGO_DB), str(TANGO_RERUN_DB))
    assert result.returncode == 1, result.stderr
    assert "-n first -> " in result.stdout and "-n second" in result.stdout
    same = run(
        "diff",
        "--step",
        "NumbersStep-001-4C6a8DarRvPRkQT7YoFByX7YAccjsByL",
        str(TANGO_DB),
        str(TANGO_RERUN_DB),
    )
    assert (same.returncode, same.stdout) == (0, "No differences in platform or environment.\n")
    other = str(TANGO_JSON / "failed.json")
    line = fails_cleanly(run("diff", "--step", "nope", str(TANGO_DB), other))
    assert line == f"tango-stepinfo: {TANGO_DB}: no record with unique id or step name 'nope'"


def test_migrate_prints_one_line_and_backs_up(tmp_path: Path) -> None:
    db = tmp_path / "stepinfo.sqlite"
    shutil.copyfile(TANGO_DB, db)
    dry = run("migrate", str(tmp_path), "--to", "ours", "--dry-run")
    assert (dry.returncode, dry.stderr) == (0, "")
    assert (
        dry.stdout == f"{db}: would rewrite 4 of 4 records as tango_stepinfo's classes (dry run)\n"
    )
    done = run("migrate", str(tmp_path), "--to", "ours")
    assert done.returncode == 0, done.stderr
    backups = sorted(tmp_path.glob("stepinfo.sqlite.*.bak"))
    assert len(backups) == 1

    def rows(path: Path) -> List[Any]:
        with closing(sqlite3.connect(path)) as conn, conn:
            return conn.execute("SELECT * FROM unnamed ORDER BY key").fetchall()

    assert rows(backups[0]) == rows(TANGO_DB) != rows(db)
    assert done.stdout == (
        f"{db}: rewrote 4 of 4 records as tango_stepinfo's classes, all verified; "
        f"backup: {backups[0]}\n"
    )
    again = run("migrate", str(db), "--to", "ours")
    assert (
        again.stdout
        == f"{db}: all 4 records already name tango_stepinfo's classes; nothing to do\n"
    )


def test_migrate_errors_are_one_line(tmp_path: Path) -> None:
    line = fails_cleanly(run("migrate", str(tmp_path), "--to", "tango"))
    assert line == f"tango-stepinfo: {tmp_path}: not a Tango workspace: no stepinfo.sqlite in it"
    result = run("migrate", str(tmp_path), "--to", "elsewhere")
    assert result.returncode == 2 and "invalid choice: 'elsewhere'" in result.stderr


def test_tango_alias_on_off_status_in_a_given_site(tmp_path: Path) -> None:
    from tango_stepinfo._tango_alias import PTH_NAME

    pth = tmp_path / PTH_NAME
    off = run("tango-alias", "status", "--site", str(tmp_path))
    assert (off.returncode, off.stdout) == (1, f"off: {pth}\n")
    on = run("tango-alias", "on", "--site", str(tmp_path))
    assert (on.returncode, on.stdout) == (
        0,
        f"on: tango.step_info is tango_stepinfo in new processes ({pth})\n",
    )
    assert run("tango-alias", "status", "--site", str(tmp_path)).returncode == 0
    gone = run("tango-alias", "off", "--site", str(tmp_path))
    assert (gone.returncode, gone.stdout) == (0, f"off: removed {pth}\n")
    assert not pth.exists()


def test_tango_alias_on_refuses_an_environment_without_tango() -> None:
    line = fails_cleanly(run("tango-alias", "on"))  # this test venv has no ai2-tango
    assert (
        line
        == f"tango-stepinfo: ai2-tango is not installed for {sys.executable}; use --site to force"
    )


def test_tango_alias_status_names_what_is_in_the_way(tmp_path: Path) -> None:
    from tango_stepinfo._tango_alias import PTH_NAME

    (tmp_path / PTH_NAME).mkdir()
    line = fails_cleanly(run("tango-alias", "status", "--site", str(tmp_path)))
    assert line == f"tango-stepinfo: {tmp_path / PTH_NAME}: not a regular file (a directory)"
    line = fails_cleanly(run("tango-alias", "on", "--site", str(tmp_path)))
    assert line == f"tango-stepinfo: {tmp_path / PTH_NAME}: Is a directory"
    assert [p.name for p in tmp_path.iterdir()] == [PTH_NAME]


@pytest.mark.parametrize("version", ["1.4.0", None])
def test_tango_alias_on_refuses_another_tango(tmp_path: Path, version: Optional[str]) -> None:
    (tmp_path / "tango").mkdir()
    (tmp_path / "tango" / "__init__.py").write_text("raise RuntimeError('imported')\n")
    if version:
        info = tmp_path / f"ai2_tango-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: ai2-tango\nVersion: {version}\n"
        )
    # The default site folder is a sandbox: were the refusal broken, the alias would be written
    # there, not into the site-packages of the Python running the tests.
    sandbox = tmp_path / "site"
    sandbox.mkdir()
    program = [
        sys.executable,
        "-c",
        "import sys, pathlib; from tango_stepinfo import __main__, _tango_alias; "
        f"_tango_alias.site_packages = lambda: pathlib.Path({str(sandbox)!r}); "
        "sys.exit(__main__.main())",
    ]
    result = run("tango-alias", "on", env={"PYTHONPATH": str(tmp_path)}, program=program)
    line = fails_cleanly(result)
    assert list(sandbox.iterdir()) == []
    found = f"ai2-tango {version}" if version else "a tango package that is not ai2-tango"
    assert line == (
        f"tango-stepinfo: {tmp_path / 'tango' / '__init__.py'}: {found}, "
        "but the alias is made for ai2-tango 1.3.2; use --site to force"
    )


def _run_with_stdout(stdout: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tango_stepinfo", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("args", [(), ("--json",), ("schema",)])
def test_a_full_output_device_is_one_line_and_status_2(args: tuple) -> None:
    with open("/dev/full", "w") as full:
        result = _run_with_stdout(full, *args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
    assert result.stderr == "tango-stepinfo: cannot write the output: No space left on device\n"


def test_a_closed_standard_output_is_one_line_and_status_2() -> None:
    # Started with descriptor 1 closed (``>&-``): Python's sys.stdout is None.
    shell = shutil.which("sh")
    assert shell is not None
    result = subprocess.run(
        [shell, "-c", 'exec "$0" -m tango_stepinfo --json >&-', sys.executable],
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr == "tango-stepinfo: cannot write: the standard output is closed\n"


def test_bad_entries_of_a_store_are_kept_without_the_frames_of_their_decode(
    tmp_path: Path,
) -> None:
    # Each error kept its traceback and context, and with them the frames of the failed decode
    # (the scan's tables): 60,000 bad rows of a 1.8 MB database held 160 MB and took 2.1 s.
    db = tmp_path / "stepinfo.sqlite"
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("CREATE TABLE unnamed (key TEXT PRIMARY KEY, value BLOB)")
        conn.executemany(
            "INSERT INTO unnamed VALUES (?, ?)", [(f"k{i:03d}", b"N.") for i in range(300)]
        )
    store = _cli.read_store(str(db))
    assert store is not None
    records, errors = store
    assert records == [] and len(errors) == 300
    assert str(errors[7]) == (
        f"{db}[k007]: not a record: expected a record, a StepState, or a list, tuple or dict of"
        " them, got null"
    )
    assert all(e.__traceback__ is None and e.__context__ is None for e in errors)
    result = run("check", str(db))
    assert result.returncode == 1 and result.stdout.count("\n") == 300


@pytest.mark.parametrize("args", [(), ("--json",)], ids=["summary", "json"])
def test_an_invalid_setting_is_one_line_and_status_2(args: tuple) -> None:
    """A setting the capture cannot run with (an unknown privacy mode, the one probe that
    raises) is a usage error: one line naming it, no traceback."""
    result = run(*args, env={"TANGO_STEPINFO_PRIVACY": "bogus"})
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr == (
        "tango-stepinfo: TANGO_STEPINFO_PRIVACY: unknown privacy mode 'bogus'; expected 'full'"
        " or 'anonymous'\n"
    )


def test_lone_surrogates_are_shown_escaped_by_every_command(tmp_path: Path) -> None:
    # Valid JSON ("\ud800"), no UTF-8 form: printed escaped, on a strict UTF-8 output too.
    doc = json.loads((TANGO_JSON / "completed.json").read_text())
    doc["unique_id"] = "Step-\ud800"
    doc["config"] = {"k\udcff": "v"}
    a = write(tmp_path / "a.json", doc)
    doc["platform"]["host"] = "host-\udfff"
    b = write(tmp_path / "b.json", doc)
    for args, status, shown in [
        (("show", a), 0, "Step-\\ud800"),
        (("show", "--json", a), 0, '"k\\udcff": "v"'),
        (("ls", a), 0, "Step-\\ud800"),
        (("check", a), 0, "a.json: OK"),
        (("diff", a, b), 1, "host: gpu-node-07 -> host-\\udfff"),
    ]:
        result = run(*args)
        assert (result.returncode, result.stderr) == (status, ""), args
        assert shown in result.stdout, args
    shown_json = json.loads(run("show", "--json", a).stdout)
    assert StepInfo.from_json_dict(shown_json[0]) == StepInfo.from_json_dict(
        json.loads(Path(a).read_text())
    )


def test_a_folder_read_as_a_record_file_is_named_as_a_folder(tmp_path: Path) -> None:
    # The commands take a folder as a store (test_stores); one that becomes a folder between
    # that check and the read is refused as the other kinds are, not as an unreadable file.
    with pytest.raises(_cli.InputError, match=r"not a regular file \(a directory\)$"):
        _cli._read(str(tmp_path))
