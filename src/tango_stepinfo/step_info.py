"""The run record of one workflow step, :class:`StepInfo`, and its :class:`StepState`.

This module's path, ``tango_stepinfo.step_info``, is part of the pickle format: pickles name it,
so the classes stay here for good.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, Iterable, Optional, Protocol, Set, Type, TypeVar

from . import _probe
from ._record import Record
from ._times import as_utc as _as_utc
from .errors import InvalidStepStateError
from .metadata import EnvironmentMetadata, PlatformMetadata

__all__ = ["StepInfo", "StepLike", "StepState", "replace_steps_with_unique_id"]

_S = TypeVar("_S", bound="StepInfo")


class StepState(str, Enum):
    """The state of a step, derived from its record (see :attr:`StepInfo.state`).

    A ``str`` enum: ``str(state)`` is its value and it compares equal to it.
    """

    INCOMPLETE = "incomplete"
    """The step has not started (or its run was lost)."""
    RUNNING = "running"
    """The step has started and not finished."""
    COMPLETED = "completed"
    """The step finished without error."""
    FAILED = "failed"
    """The step finished with an error."""
    UNCACHEABLE = "uncacheable"
    """The step's results are not cached, so it has no lasting state."""

    def __str__(self) -> str:
        return self.value


class _HasUniqueId(Protocol):
    @property
    def unique_id(self) -> str: ...


class StepLike(Protocol):
    """What :meth:`StepInfo.new_from_step` reads from a step: the attributes of Tango's ``Step``.

    ``config`` may raise :class:`ValueError` (as Tango's does when a step has no config).
    """

    @property
    def unique_id(self) -> str:
        """The step's unique id; becomes :attr:`StepInfo.unique_id`."""

    @property
    def name(self) -> Optional[str]:
        """The step's name, if it has one; becomes :attr:`StepInfo.step_name`."""

    @property
    def class_name(self) -> str:
        """The name of the step's class; becomes :attr:`StepInfo.step_class_name`."""

    @property
    def VERSION(self) -> Optional[str]:
        """The step's version; becomes :attr:`StepInfo.version`."""

    @property
    def dependencies(self) -> Iterable[_HasUniqueId]:
        """The steps this one needs (objects with a ``unique_id``); their ids become
        :attr:`StepInfo.dependencies`."""

    @property
    def cache_results(self) -> bool:
        """Whether the step's results are cached; becomes :attr:`StepInfo.cacheable`."""

    @property
    def config(self) -> Any:
        """The step's configuration, steps inside it replaced by references in
        :attr:`StepInfo.config`; may raise :class:`ValueError` (then ``None``)."""

    @property
    def metadata(self) -> Optional[Dict[str, Any]]:
        """Free-form metadata of the step; becomes :attr:`StepInfo.metadata`."""


def _local(value: Optional[_dt.datetime]) -> Optional[_dt.datetime]:
    # astimezone() with no argument uses the local zone's rules in force at that instant.
    return None if value is None else _as_utc(value).astimezone()


def replace_steps_with_unique_id(value: Any) -> Any:
    """Replace the steps inside a step's config by references, as Tango does.

    A step (any object with a string ``unique_id``) becomes ``{"type": "ref", "ref": <id>}``; an
    indexed step (an object with a ``step`` that has one, and a ``key``, like Tango's
    ``StepIndexer``) becomes ``{"type": "ref", "ref": <id>, "key": <key>}``. Lists, tuples, sets
    and dicts are rebuilt with their contents replaced; everything else is returned as it is.
    """
    if isinstance(value, dict):
        return {key: replace_steps_with_unique_id(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return type(value)(replace_steps_with_unique_id(item) for item in value)
    if isinstance(value, (str, bytes, int, float)) or value is None:
        return value
    step = getattr(value, "step", None)
    if isinstance(getattr(step, "unique_id", None), str) and hasattr(value, "key"):
        return {"type": "ref", "ref": step.unique_id, "key": value.key}  # type: ignore[union-attr]
    unique_id = getattr(value, "unique_id", None)
    if isinstance(unique_id, str):
        return {"type": "ref", "ref": unique_id}
    return value


def _platform() -> PlatformMetadata:
    """Probe the platform for a new :class:`StepInfo`, which probes its environment next: start
    the environment's ``git status`` first, so that it runs meanwhile (a ``PlatformMetadata``
    alone never starts ``git``)."""
    _probe.prefetch_git()
    return PlatformMetadata()


@dataclass(eq=False, repr=False)  # == and repr come from Record
class StepInfo(Record):
    """The run record of one step: what it is, when and where it ran, and how it ended.

    Drop-in for ``tango.step_info.StepInfo`` (ai2-tango 1.3.2): the same fields, order, defaults,
    properties and methods. ``platform`` and ``environment`` default to probes of this machine;
    passing them explicitly probes nothing.

    :ivar unique_id: the step's unique id.
    :ivar step_class_name: the name of the step's class.
    :ivar dependencies: the unique ids of the steps this one depends on.
    :ivar cacheable: whether the step's results are cached.
    :ivar step_name: the step's name, if it has one.
    :ivar version: the step's ``VERSION``.
    :ivar start_time: when the step started (a naive datetime is taken as UTC).
    :ivar end_time: when the step finished, with or without error.
    :ivar error: the error the step failed with, usually a traceback.
    :ivar result_location: where the result is stored, a path or URL.
    :ivar config: the step's configuration, steps replaced by references.
    :ivar metadata: free-form metadata of the step.
    :ivar platform: the machine it ran on; ``None`` when unknown (Tango writes ``null`` there,
        and its old pickles may lack it).
    :ivar environment: the Python environment it ran in; ``None`` when unknown.
    """

    unique_id: str
    step_class_name: str
    dependencies: Set[str]
    cacheable: bool
    step_name: Optional[str] = None
    version: Optional[str] = None
    start_time: Optional[_dt.datetime] = None
    end_time: Optional[_dt.datetime] = None
    error: Optional[str] = None
    result_location: Optional[str] = None
    config: Optional[Dict[str, Any]] = None
    metadata: Optional[Dict[str, Any]] = None
    # May be None (null in JSON), as in Tango's records and in its old pickles. For the command
    # line: their fields are listed without a prefix, each in its group (see _facts.py).
    platform: PlatformMetadata = field(
        default_factory=_platform,
        metadata={
            "probe": True,
            "nullable": True,
            "group": "Platform",
            "label": "",
            "none": "unknown",
        },
    )
    environment: EnvironmentMetadata = field(
        default_factory=EnvironmentMetadata,
        metadata={
            "probe": True,
            "nullable": True,
            "group": "Environment",
            "label": "",
            "none": "unknown",
        },
    )

    @property
    def start_time_local(self) -> Optional[_dt.datetime]:
        """:attr:`start_time` in this machine's local time zone, with the offset in force then.

        A July time in New York comes back at -04:00 and a January one at -05:00.
        """
        return _local(self.start_time)

    @property
    def end_time_local(self) -> Optional[_dt.datetime]:
        """:attr:`end_time` in this machine's local time zone, with the offset in force then."""
        return _local(self.end_time)

    @property
    def duration(self) -> Optional[_dt.timedelta]:
        """``end_time - start_time``, or ``None`` when either is missing."""
        if self.start_time is None or self.end_time is None:
            return None
        return _as_utc(self.end_time) - _as_utc(self.start_time)

    @property
    def state(self) -> StepState:
        """The step's state, derived from ``cacheable``, the times and the error.

        ============  ==========  ========  =======  ===============
        cacheable     start_time  end_time  error    state
        ============  ==========  ========  =======  ===============
        false         any         any       any      ``UNCACHEABLE``
        true          unset       unset     unset    ``INCOMPLETE``
        true          set         unset     unset    ``RUNNING``
        true          set         set       unset    ``COMPLETED``
        true          set         set       set      ``FAILED``
        ============  ==========  ========  =======  ===============

        :raises InvalidStepStateError: for any other combination; the message names the fields
            that disagree.
        """
        if not self.cacheable:
            return StepState.UNCACHEABLE
        started = self.start_time is not None
        ended = self.end_time is not None
        failed = self.error is not None
        if not started and not ended and not failed:
            return StepState.INCOMPLETE
        if started and not ended and not failed:
            return StepState.RUNNING
        if started and ended:
            return StepState.FAILED if failed else StepState.COMPLETED
        present = [n for n, v in (("end_time", ended), ("error", failed)) if v]
        missing = [n for n, v in (("start_time", started), ("end_time", ended)) if not v]
        raise InvalidStepStateError(
            f"StepInfo {self.unique_id!r} is in an invalid state: {' and '.join(present)} "
            f"{'is' if len(present) == 1 else 'are'} set but {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not"
        )

    def refresh(self) -> None:
        """Re-probe :attr:`platform` and :attr:`environment` from scratch, in place."""
        _probe.clear_cache()
        self.platform = PlatformMetadata()
        self.environment = EnvironmentMetadata()

    @classmethod
    def new_from_step(cls: Type[_S], step: StepLike, **kwargs: Any) -> _S:
        """Start a record for ``step``, as Tango's method of that name.

        Reads the attributes of :class:`StepLike`; a ``config`` that raises :class:`ValueError`
        becomes ``None``, and steps inside the config become references (see
        :func:`~tango_stepinfo.step_info.replace_steps_with_unique_id`).

        :param step: a Tango ``Step`` or any object with the same attributes.
        :param kwargs: further fields, e.g. ``start_time`` or ``platform``.
        """
        try:
            config = step.config
        except ValueError:
            config = None
        return cls(
            unique_id=step.unique_id,
            step_name=step.name,
            step_class_name=step.class_name,
            version=step.VERSION,
            dependencies={dep.unique_id for dep in step.dependencies},
            cacheable=step.cache_results,
            config=replace_steps_with_unique_id(config),
            metadata=step.metadata,
            **kwargs,
        )
