"""Exceptions raised by :mod:`tango_stepinfo`.

Every error a caller can trigger with bad input is one of these, and each one subclasses the
builtin exception a Tango user would already catch. The safe loader's two errors,
:class:`~tango_stepinfo.UnsafePickleError` and
:class:`~tango_stepinfo.CorruptPickleError`, live in :mod:`tango_stepinfo.pickling`
beside it, so that a process that only writes records never imports :mod:`pickle`.
"""

from __future__ import annotations

__all__ = [
    "InvalidSettingError",
    "InvalidStepStateError",
    "StepInfoDecodeError",
    "StepInfoEncodeError",
]


class _PathError(Exception):
    """An error about the value at a dotted field path; the message is ``path: problem``."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path else problem)

    def __reduce__(self) -> tuple[type[_PathError], tuple[str, str]]:
        return type(self), (self.path, self.problem)


class StepInfoDecodeError(_PathError, ValueError):
    """A record could not be decoded.

    The message starts with the dotted path of the field at fault, then says what was wrong,
    e.g. ``environment.git.commit: expected a string or null, got 5``.

    :ivar path: the dotted field path (empty for the record itself).
    :ivar problem: what was wrong, without the path.
    """


class StepInfoEncodeError(_PathError, TypeError):
    """A record holds a value that cannot be written as JSON.

    Raised by ``to_json_dict`` for a field of the wrong type (``step_name=5``) or a value in
    ``config`` / ``metadata`` that has no JSON form. The message starts with the dotted field path.

    :ivar path: the dotted field path.
    :ivar problem: what was wrong, without the path.
    """


class InvalidStepStateError(RuntimeError):
    """A :class:`~tango_stepinfo.StepInfo` has a combination of times and error with no state.

    Tango raises a plain :class:`RuntimeError` here, so this subclasses it; the message names the
    fields that disagree.
    """


class InvalidSettingError(_PathError, ValueError):
    """An environment variable that configures this library holds a value it does not know.

    The message starts with the variable's name, then says what was expected, e.g.
    ``TANGO_STEPINFO_JSON: expected 'tango' or 'ours' (or unset), got 'tnago'``.

    :ivar path: the name of the variable.
    :ivar problem: what was wrong, without the name.
    """
