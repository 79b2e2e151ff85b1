"""Exceptions raised by :mod:`tango_stepinfo`.

Every error a caller can trigger with bad input is one of these, and each one subclasses the
builtin exception a Tango user would already catch.
"""

from __future__ import annotations

from pickle import UnpicklingError

__all__ = [
    "CorruptPickleError",
    "InvalidStepStateError",
    "StepInfoDecodeError",
    "StepInfoEncodeError",
    "UnsafePickleError",
]


class StepInfoDecodeError(ValueError):
    """A record could not be decoded.

    The message starts with the dotted path of the field at fault, then says what was wrong,
    e.g. ``environment.git.commit: expected a string or null, got 5``.

    :ivar path: the dotted field path (empty for the record itself).
    :ivar problem: what was wrong, without the path.
    """

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path else problem)

    def __reduce__(self) -> tuple[type[StepInfoDecodeError], tuple[str, str]]:
        return type(self), (self.path, self.problem)


class StepInfoEncodeError(TypeError):
    """A record holds a value that cannot be written as JSON.

    Raised by ``to_json_dict`` for a field of the wrong type (``step_name=5``) or a value in
    ``config`` / ``metadata`` that has no JSON form. The message starts with the dotted field path.

    :ivar path: the dotted field path.
    :ivar problem: what was wrong, without the path.
    """

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path else problem)

    def __reduce__(self) -> tuple[type[StepInfoEncodeError], tuple[str, str]]:
        return type(self), (self.path, self.problem)


class InvalidStepStateError(RuntimeError):
    """A :class:`~tango_stepinfo.StepInfo` has a combination of times and error with no state.

    Tango raises a plain :class:`RuntimeError` here, so this subclasses it; the message names the
    fields that disagree.
    """


class UnsafePickleError(UnpicklingError):
    """The safe loader refused a pickle because it names a global outside the allow list.

    Raised before anything named by the pickle is called.

    :ivar name: the refused global as ``module.qualname``.
    """

    def __init__(self, name: str, reason: str = "not on the allow list") -> None:
        self.name = name
        super().__init__(f"refused to load global {name!r}: {reason}")

    def __reduce__(self) -> tuple[type[UnsafePickleError], tuple[str]]:
        return type(self), (self.name,)


class CorruptPickleError(UnpicklingError):
    """The safe loader was given bytes that are not a well-formed pickle of records, or that go
    past its limits (nesting depth, size of the loaded value).

    The message says what was wrong; the original exception, if any, is the ``__cause__``.
    """
