"""How the codec reports a bad value: :class:`Bad` carries the path outwards, :func:`show`
describes the value.

Errors travel as :class:`Bad` from the innermost value outwards; every container on the way
prepends its part of the path (:meth:`Bad.inside`), so the happy path pays nothing for error
reporting. The public entry points turn it into a
:class:`~tango_stepinfo.StepInfoDecodeError` or :class:`~tango_stepinfo.StepInfoEncodeError`.
"""

from __future__ import annotations

from typing import Any, List

from . import _limits

__all__ = ["Bad", "Limit", "digits", "show"]


class Bad(Exception):
    """A value was wrong; ``parts`` collects the path to it, innermost first."""

    def __init__(self, problem: str, part: str | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.parts: List[str] = [] if part is None else [part]

    def inside(self, part: str) -> Bad:
        """Add the enclosing field name or ``[index]`` to the path; returns ``self``."""
        self.parts.append(part)
        return self

    def path(self) -> str:
        """The dotted path, outermost first (``environment.packages[3][0]``)."""
        out = ""
        for part in reversed(self.parts):
            out += part if part.startswith("[") or not out else "." + part
        return out


class Limit(Bad):
    """A value went past a bound of :mod:`._limits` (an int's size, a free value's depth)."""


def show(value: Any) -> str:
    """A short, safe description of ``value`` for an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if _limits.MIN_INT < value < _limits.MAX_INT:
            text = int.__repr__(value)
            return text if len(text) <= 40 else f"an integer of {len(text.lstrip('-'))} digits"
        return f"an integer of {digits(value)} digits"  # never turned into text: see digits()
    if isinstance(value, float):
        return float.__repr__(value)
    if isinstance(value, str):
        text = str.__repr__(value)
        return text if len(text) <= 40 else text[:37] + "..."
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return f"a value of type {type(value).__name__!r}"


def digits(value: int) -> int:
    """How many decimal digits ``value`` has, without turning it into text (which Python refuses
    past ``sys.get_int_max_str_digits()`` digits, and which is quadratic in the size)."""
    value = abs(value)
    # bit_length gives the count to within one; one comparison with a power of ten settles it.
    count = max(1, int((value.bit_length() - 1) * 0.30102999566398120) + 1)
    if value >= 10**count:
        count += 1
    return count
