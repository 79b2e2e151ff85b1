"""TANGO_STEPINFO_JSON: the default of to_json_dict(tango_compat=...) for a whole process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import List, Optional

import pytest

import tango_stepinfo
from tango_stepinfo import InvalidSettingError, StepInfo, _json_default

from .strategies import full_record


@pytest.mark.parametrize(
    ("value", "tango"),
    [
        (None, False),
        ("", False),
        ("ours", False),
        ("tango", True),
        (" Tango\n", True),
        ("OURS", False),
    ],
)
def test_the_variable_sets_the_default(
    monkeypatch: pytest.MonkeyPatch, value: Optional[str], tango: bool
) -> None:
    if value is not None:
        monkeypatch.setenv("TANGO_STEPINFO_JSON", value)
    info = full_record()
    expected = info.to_json_dict(tango_compat=tango)
    assert info.to_json_dict() == expected
    assert info.environment.to_json_dict() == expected["environment"]  # every record class
    assert ("+00:00" in expected["start_time"]) is not tango


def test_an_explicit_argument_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    info = full_record()
    ours, tangos = info.to_json_dict(tango_compat=False), info.to_json_dict(tango_compat=True)
    assert ours != tangos
    monkeypatch.setenv("TANGO_STEPINFO_JSON", "tango")
    assert info.to_json_dict(tango_compat=False) == ours
    monkeypatch.setenv("TANGO_STEPINFO_JSON", "nonsense")
    tango_stepinfo.clear_cache()
    assert info.to_json_dict(tango_compat=True) == tangos  # not even read
    assert info.to_json_dict(tango_compat=False) == ours


def test_an_unknown_value_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANGO_STEPINFO_JSON", "tnago")
    with pytest.raises(InvalidSettingError) as raised:
        full_record().to_json_dict()
    assert str(raised.value) == (
        "TANGO_STEPINFO_JSON: expected 'tango' or 'ours' (or unset), got 'tnago'"
    )
    assert isinstance(raised.value, ValueError)
    assert raised.value.path == "TANGO_STEPINFO_JSON"
    with pytest.raises(InvalidSettingError):  # every time, not only the first
        full_record().to_json_dict()


def test_read_once_per_process_until_clear_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    info = full_record()
    reads: List[str] = []
    real_get = os.environ.get

    def get(key: str, default: object = None) -> object:
        if sys._getframe(1).f_globals["__name__"] == _json_default.__name__:
            reads.append(key)
        return real_get(key, default)

    monkeypatch.setenv("TANGO_STEPINFO_JSON", "tango")
    monkeypatch.setattr(os.environ, "get", get)
    first = info.to_json_dict()
    info.to_json_dict()
    monkeypatch.setenv("TANGO_STEPINFO_JSON", "ours")
    assert info.to_json_dict() == first  # not read again
    assert reads == ["TANGO_STEPINFO_JSON"]
    tango_stepinfo.clear_cache()
    assert info.to_json_dict() == info.to_json_dict(tango_compat=False)
    assert reads == ["TANGO_STEPINFO_JSON"] * 2


def test_tango_json_reads_back_through_either_class() -> None:
    # A fleet reads what it writes: Tango-format records decode to the same record, to the second.
    info = full_record()
    back = StepInfo.from_json_dict(json.loads(json.dumps(info.to_json_dict(tango_compat=True))))
    assert back.unique_id == info.unique_id
    assert back.start_time is not None and info.start_time is not None
    assert back.start_time == info.start_time.replace(microsecond=0)


def test_a_process_started_with_the_variable() -> None:
    code = (
        "import json; from tango_stepinfo import GitMetadata, TangoMetadata; "
        "print(json.dumps([TangoMetadata('1.3.2').to_json_dict(), GitMetadata().to_json_dict()]))"
    )
    env = {**os.environ, "TANGO_STEPINFO_JSON": "tango"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout) == [{"version": "1.3.2"}, {"commit": None, "remote": None}]


def test_the_setting_module_reads_nothing_with_an_explicit_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TANGO_STEPINFO_JSON", "bad")
    assert _json_default.tango_compat(True) is True
    assert _json_default.tango_compat(False) is False
    with pytest.raises(InvalidSettingError):
        _json_default.tango_compat(None)
