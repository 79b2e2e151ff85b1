"""Differential fuzzing of the safe loader: benign pickles load as :func:`pickle.loads` loads
them; the attacks of issue 10, with random sizes and random bytes changed, are refused with the
loader's own errors, never another exception.

Runs ``TANGO_STEPINFO_FUZZ_EXAMPLES`` examples per test (default 25, a few seconds in CI); set it
higher for a longer run. Shapes are kept small enough that a missed check could not crash the
interpreter in-process (the full-size attacks run in a subprocess in ``test_pickling.py``).
"""

from __future__ import annotations

import os
import pickle
import struct
from typing import Any, Callable, Dict, List

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tango_stepinfo import StepInfo, StepInfoDecodeError, StepInfoEncodeError
from tango_stepinfo._cli import compare, show_record
from tango_stepinfo.pickling import CorruptPickleError, UnsafePickleError, loads

from .strategies import step_infos

FUZZ = settings(
    max_examples=int(os.environ.get("TANGO_STEPINFO_FUZZ_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
OURS = (UnsafePickleError, CorruptPickleError, StepInfoDecodeError)
PROTOCOLS = st.integers(min_value=0, max_value=pickle.HIGHEST_PROTOCOL)
P2 = b"\x80\x02"


def g(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def u(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


# --- the attacks' shapes, with their sizes drawn ------------------------------------------------


def filled_after_use(n: int) -> bytes:
    level = b"q\x020" + b"h\x00]q\x01\x85" + b"h\x01h\x02a0" + b"R"
    return P2 + b"}" + g("__builtin__", "tuple") + b"q\x000" + b")" + level * n + b"Ns" + STOP


def deep_tuple(n: int) -> bytes:
    return P2 + b"}" + b")" + b"\x85" * n + b"Ns" + STOP


def memo_index(n: int) -> bytes:
    return P2 + b"N" + b"r" + struct.pack("<I", n) + STOP


def build_on_shared(n: int) -> bytes:
    targets = [
        g("pytz", "_UTC") + b")R",
        g("tango.step_info", "StepState") + u("failed") + b"\x85R",
    ]
    state = b"}" + u("zone") + u("x" * n) + b"s"
    return P2 + targets[n % 2] + state + b"b" + STOP


def shared_string(n: int) -> bytes:
    return P2 + u("y" * 100_000) + b"q\x00(" + b"h\x00" * (n + 20) + b"l" + STOP


def colliding_set(n: int) -> bytes:
    ints = [(2**61 - 1) * (i + 1) for i in range(n + 2)]
    return pickle.dumps(set(ints), protocol=4 if n % 2 else 2)


def stateless_record(n: int) -> bytes:
    return P2 + g("tango_stepinfo.step_info", "StepInfo") + b")\x81" + b"N0" * n + STOP


def bad_time(n: int) -> bytes:
    payload = bytes([7, 232, 1 + n % 12, 0, 255, 0, 0, 0, 0, 0])  # day 0, hour 255
    return P2 + g("datetime", "datetime") + b"C\x0a" + payload + b"\x85R" + STOP


def evil_zone(n: int) -> bytes:
    args = u("Europe/Berlin") + b"J" + struct.pack("<i", 3601 + n) + b"K\x00" + u("\x1b]0;\x07")
    return P2 + g("pytz", "_p") + b"(" + args + b"tR" + STOP


def evil_getattr(n: int) -> bytes:
    names = ["refresh", "__class__", "__init__", "mro"]
    target = g("tango_stepinfo.step_info", "StepInfo" if n % 2 else "StepState")
    return P2 + g("__builtin__", "getattr") + b"(" + target + u(names[n % 4]) + b"tR" + STOP


STOP = b"."
ATTACKS: Dict[str, Callable[[int], bytes]] = {
    "filled after use": filled_after_use,
    "deep tuple": deep_tuple,
    "memo index": lambda n: memo_index(2**20 + n),
    "build on shared": build_on_shared,
    "shared string": shared_string,
    "colliding set": colliding_set,
    "stateless record": stateless_record,
    "bad time": bad_time,
    "evil zone": evil_zone,
    "evil getattr": evil_getattr,
}


@st.composite
def mutated(draw: Any, data: bytes) -> bytes:
    """``data`` with a few bytes changed, inserted or deleted (or none)."""
    out = bytearray(data)
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        if not out:
            break
        at = draw(st.integers(min_value=0, max_value=len(out) - 1))
        how = draw(st.sampled_from(["set", "insert", "delete"]))
        if how == "set":
            out[at] = draw(st.integers(min_value=0, max_value=255))
        elif how == "insert":
            out.insert(at, draw(st.integers(min_value=0, max_value=255)))
        else:
            del out[at]
    return bytes(out)


def usable(value: Any) -> None:
    """What the loader returns works with repr, JSON, show and diff."""
    items: List[Any]
    if isinstance(value, dict):
        items = list(value.values())
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [value]
    for item in items:
        assert repr(item).isprintable()
        if isinstance(item, StepInfo):
            try:
                as_json = item.to_json_dict()
            except StepInfoEncodeError as e:
                # a pickle from before a required field existed loads with None there (see
                # test_safe_loader_reads_old_pickles_missing_required_and_probed_fields)
                assert "got null" in e.problem, e
            else:
                assert StepInfo.from_json_dict(as_json) == item
            show_record(item)
            compare((item.platform, item.environment), (item.platform, item.environment))


@FUZZ
@given(st.sampled_from(sorted(ATTACKS)), st.integers(min_value=1, max_value=3000), st.data())
def test_attacks_mutated_are_refused_with_our_errors(name: str, size: int, data: Any) -> None:
    pickled = data.draw(mutated(ATTACKS[name](size)))
    try:
        value = loads(pickled)
    except OURS:
        return
    usable(value)  # a mutation may make it harmless; then it must be a usable value


@FUZZ
@given(step_infos(), PROTOCOLS, st.sampled_from(["alone", "list", "tuple", "dict"]))
def test_benign_pickles_load_as_pickle_loads_them(info: StepInfo, protocol: int, how: str) -> None:
    value: Any = {
        "alone": info,
        "list": [info, info],
        "tuple": (info,),
        "dict": {"a": info},
    }[how]
    data = pickle.dumps(value, protocol=protocol)
    ours = loads(data)
    assert ours == pickle.loads(data)
    usable(ours)


@FUZZ
@given(step_infos(), PROTOCOLS, st.data())
def test_benign_pickles_mutated_load_usably_or_fail_with_our_errors(
    info: StepInfo, protocol: int, data: Any
) -> None:
    pickled = data.draw(mutated(pickle.dumps(info, protocol=protocol)))
    try:
        value = loads(pickled)
    except OURS:
        return
    usable(value)


def _outcome(data: bytes) -> Any:
    try:
        return "loaded", loads(data)
    except OURS as e:
        return type(e), str(e)


@FUZZ
@given(step_infos(), st.sampled_from([4, 5]), st.data())
def test_pickles_of_a_learned_shape_mutated_load_as_without_templates(
    info: StepInfo, protocol: int, data: Any
) -> None:
    # a template skips the scan (see pickling._matched): whatever it accepts, the scan accepts
    # with the same end and the total it predicts, and loads gives what it gives without it
    from tango_stepinfo import pickling

    saved = pickling._TEMPLATES, pickling._missed
    try:
        pickling._TEMPLATES = []
        original = pickle.dumps(info, protocol=protocol)
        pickling._SEEN.add(original.count(0x94))  # (learned when seen again: now)
        pickling._FAILED.clear()  # (nor throttled by an earlier example's failure)
        loads(original)
        pickling._missed = lambda *args: None  # type: ignore[assignment]
        if not pickling._TEMPLATES:
            return  # (a shape with a string counted twice, see the tests of templates)
        template = pickling._TEMPLATES
        _, _, total, learned_end = template[0]
        for _ in range(5):
            pickled = data.draw(mutated(original))
            end = pickling._matched(pickled, pickled.count(0x94))
            if end >= 0:
                assert pickling._scan_all(pickled, None) == (end, total + end - learned_end)
            with_templates = _outcome(pickled)
            pickling._TEMPLATES = []
            assert _outcome(pickled) == with_templates
            pickling._TEMPLATES = template
    finally:
        pickling._TEMPLATES, pickling._missed = saved  # type: ignore[assignment]
