"""The facts of records that show, diff and the capture summary list (tango_stepinfo._facts)."""

from __future__ import annotations

import pytest

from tango_stepinfo import StepInfo
from tango_stepinfo._diff import compare, diff_text
from tango_stepinfo._facts import Fact, facts

from .strategies import full_record


def test_a_fact_needs_every_attribute_it_prints() -> None:
    # Named parameters: a fact missing one fails where it is made, not where it is printed.
    with pytest.raises(TypeError):
        Fact(label="x", name="x", key="x", value=1)  # type: ignore[call-arg]
    fact = Fact(
        label="l", name="n", key="k", group="g", value=None, none="(none)", show=True, since=None
    )
    assert (fact.absent, fact.record, fact.pairs, fact.text()) == (None, False, False, "(none)")


def test_a_dict_field_of_many_keys_is_one_fact_a_key_in_key_order() -> None:
    # 20,000 variables: each one a fact, as diff compares and prints them (a hostile 1 MB
    # record holds 66,000; diff of two took 1.5 to 2.1 s of CPU, 1.0 to 1.2 s now)
    a, b = full_record(), full_record()
    a.environment.variables = {f"V{i:05d}": "x" for i in range(20_000)}
    b.environment.variables = {**a.environment.variables, "V00007": "y"}
    found = [f for f in facts(StepInfo, a.__dict__) if f.key.startswith("variables.")]
    assert [f.key for f in found] == [f"variables.V{i:05d}" for i in range(20_000)]
    assert {f.value for f in found} == {"x"} and not any(f.record or f.pairs for f in found)
    pair_a, pair_b = (a.platform, a.environment), (b.platform, b.environment)
    differences = compare(pair_a, pair_b)
    assert differences == {"environment": {"variables.V00007": {"a": "x", "b": "y"}}}
    assert "variables V00007: x -> y" in diff_text("a", "b", differences, pair_a, pair_b)
