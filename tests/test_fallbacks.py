"""The reasons probes give when they fall back."""

from __future__ import annotations

import logging
from typing import Iterator

import pytest

import tango_stepinfo
from tango_stepinfo import _fallbacks


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    _fallbacks.clear()
    yield
    _fallbacks.clear()


def test_note_collect_and_clear(caplog: pytest.LogCaptureFixture) -> None:
    assert _fallbacks.collect(["user", "git"]) is None
    with caplog.at_level(logging.DEBUG, logger="tango_stepinfo"):
        _fallbacks.note("user", "no passwd entry for uid 1234; recorded the uid")
    assert "user: no passwd entry for uid 1234" in caplog.text
    _fallbacks.note("git.dirty", "git status timed out after 2 s")
    _fallbacks.note("gpus", "cannot read /proc/driver/nvidia/gpus")
    assert _fallbacks.collect(["user", "git"]) == {
        "git.dirty": "git status timed out after 2 s",
        "user": "no passwd entry for uid 1234; recorded the uid",
    }
    assert _fallbacks.collect(["gpus"]) == {"gpus": "cannot read /proc/driver/nvidia/gpus"}
    _fallbacks.note("user", None)  # the probe succeeded this time
    assert _fallbacks.collect(["user"]) is None
    tango_stepinfo.clear_cache()
    assert _fallbacks.collect(["git", "gpus"]) is None
