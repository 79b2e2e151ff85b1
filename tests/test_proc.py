"""Running commands and watching files: the helpers the probes and git share."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from tango_stepinfo import _proc

from .conftest import fake_bin


@pytest.fixture
def debug_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="tango_stepinfo")
    return caplog


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
