"""Shared fixtures."""

from __future__ import annotations

import getpass
import os
import platform
import socket
from pathlib import Path
from typing import Callable, Dict, Iterator, List

import pytest

import tango_stepinfo

DATA = Path(__file__).parent / "data"
TANGO_DATA = DATA / "tango_1_3_2"


def fake_bin(folder: Path, name: str, script: str) -> Path:
    """A one-entry PATH folder holding a fake executable ``name`` running ``script`` (sh)."""
    folder.mkdir(exist_ok=True)
    exe = folder / name
    exe.write_text("#!/bin/sh\n" + script)
    exe.chmod(0o755)
    return folder


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
        "getpass.getuser": (getpass, "getuser"),
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
