"""What ``diff`` compares (:mod:`tango_stepinfo._diff`); the command itself is tested in
test_main.py."""

from __future__ import annotations

from typing import Any, Dict, Optional

import pytest

from tango_stepinfo._diff import compare, diff_text

from .strategies import full_record


def _pair(variables: Optional[Dict[str, str]]) -> Any:
    record = full_record()
    record.environment.variables = variables
    return (record.platform, record.environment)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ({"X": "1"}, {"Y": "2"}, {"X": {"a": "1", "b": None}, "Y": {"a": None, "b": "2"}}),
        ({"X": "1"}, {"X": "2"}, {"X": {"a": "1", "b": "2"}}),
        ({}, {"X": "1"}, {"X": {"a": None, "b": "1"}}),
        ({"X": "1"}, {}, {"X": {"a": "1", "b": None}}),
        ({"X": "1"}, {"X": "1"}, None),
        (None, {"X": "1"}, None),  # one side did not record variables: older, or Tango's
        ({"X": "1"}, None, None),
    ],
)
def test_a_variable_on_one_side_only_is_a_difference_when_both_recorded_variables(
    a: Optional[Dict[str, str]], b: Optional[Dict[str, str]], expected: Any
) -> None:
    one, two = _pair(a), _pair(b)
    found = compare(one, two)
    changes = {
        key.split(".", 1)[1]: ab
        for group in found.values()
        for key, ab in group.items()
        if key.startswith("variables.")
    }
    assert changes == (expected or {})
    if expected:
        lines = diff_text("a", "b", found, one, two).splitlines()
        for name, ab in expected.items():
            shown = [ab[side] or "(unset)" for side in "ab"]
            assert f"  variables {name}: {shown[0]} -> {shown[1]}" in lines
