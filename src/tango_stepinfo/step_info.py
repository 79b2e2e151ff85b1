"""The run record of one workflow step, :class:`StepInfo`, and its :class:`StepState`.

This module's path, ``tango_stepinfo.step_info``, is part of the pickle format: pickles name it,
so the classes stay here for good.
"""

from __future__ import annotations

import _thread
import datetime as _dt
import os
from dataclasses import field
from enum import Enum
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    ContextManager,
    Dict,
    Iterable,
    Optional,
    Protocol,
    Set,
    Type,
    TypeVar,
    Union,
)

from . import _probe
from ._record import FACTORY, Record, record_class
from .errors import InvalidStepStateError
from .metadata import EnvironmentMetadata, PlatformMetadata

# The clock (_clock) and time helpers (_times) are imported where they are used: building a record
# needs neither, and each module costs about 0.1 ms at import.

__all__ = ["StepInfo", "StepLike", "StepState", "replace_steps_with_unique_id"]


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


if TYPE_CHECKING:  # for the checker only: a Protocol class costs 0.05 ms at import (3.11)

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


_marking = _thread.RLock()
"""Held while a lifecycle helper checks a record's state and sets its times and error, so that
of two threads marking one record (two workers starting it, a timeout failing it while it
completes) exactly one succeeds. One lock for all records: each helper holds it for a few
microseconds. Reentrant, so that a signal handler marking a record in the thread that holds it
does not wait for itself; made anew in a forked child, where the thread holding it is gone."""


def _new_lock() -> None:
    global _marking
    _marking = _thread.RLock()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_new_lock)


def _local(name: str, value: Optional[_dt.datetime]) -> Optional[_dt.datetime]:
    # astimezone() with no argument uses the local zone's rules in force at that instant.
    return None if value is None else _in_utc(name, value).astimezone()


def _in_utc(name: str, value: Any, utc: Optional[_dt.tzinfo] = None) -> _dt.datetime:
    """``value``, a time field set by hand, in UTC (a naive one taken as UTC).

    :raises TypeError: ``value`` is not a datetime (an ISO string, a date, a timestamp).
    :raises ValueError: ``value`` is out of the range of datetime in UTC.
    """
    from ._times import UTC, as_utc

    if not isinstance(value, _dt.datetime):
        from ._errors import show

        raise TypeError(f"{name}: expected a datetime, got {show(value)}")
    try:
        return as_utc(value, utc or UTC)
    except OverflowError:
        raise ValueError(f"{name}: {value!r} is out of range in UTC") from None


def _format_error(error: Union[BaseException, str]) -> str:
    """The text stored for a failure: an exception formatted with its traceback (the chained
    exceptions included) exactly as Tango's workspaces store it, or a string as the plain string it
    holds; secret shapes redacted from either.

    Out of file descriptors or memory, where :mod:`traceback` or the redaction rules cannot
    load (the step failed for want of them, say), the class's name alone, with the reason.
    """
    if not isinstance(error, (BaseException, str)):
        raise TypeError(f"error: expected an exception or a string, got {type(error).__name__}")
    try:
        from . import redact

        if isinstance(error, BaseException):
            import traceback  # ~1 ms to import: only when a step fails
    except OSError as e:  # the message could hold a secret: not kept unredacted
        kind = type(error).__qualname__ if isinstance(error, BaseException) else "str"
        return f"{kind} (its text withheld: {e.strerror or type(e).__name__} while formatting it)"
    if isinstance(error, BaseException):
        try:
            text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        except Exception:  # any: the exception's own code runs in there
            text = _format_own(error)
    else:
        text = str.__str__(error)  # a subclass's class would make the pickle unreadable
    from ._privacy import free_text

    return free_text(redact.redact_text(text))


def _format_own(error: BaseException) -> str:
    """``error`` with its own traceback and text only, read past its class's overrides: for an
    exception that :func:`traceback.format_exception` cannot format (a ``__getattr__`` that
    raises other than :exc:`AttributeError` for ``__notes__``, a property ``__cause__`` that
    raises, a ``__traceback__`` that is no traceback)."""
    import traceback

    tb: Optional[TracebackType] = vars(BaseException)["__traceback__"].__get__(error)
    kind = type(error)
    name = kind.__qualname__
    if kind.__module__ not in ("__main__", "builtins"):
        name = f"{kind.__module__}.{name}"
    try:
        message = str(error)
    except Exception:  # as traceback writes it
        message = "<exception str() failed>"
    head = "Traceback (most recent call last):\n" + "".join(traceback.format_tb(tb)) if tb else ""
    return f"{head}{name}: {message}\n" if message else f"{head}{name}\n"


class _Running:
    """The context manager of :meth:`StepInfo.running`."""

    __slots__ = ("info",)

    def __init__(self, info: StepInfo) -> None:
        self.info = info

    def __enter__(self) -> StepInfo:
        self.info.mark_started()
        return self.info

    def __exit__(
        self,
        kind: Optional[Type[BaseException]],
        error: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if error is None:
            if self.info._phase() is not StepState.FAILED:
                self.info.mark_completed()  # raises if the body completed it itself: twice
            # else: the body failed it with a reason of its own (a child's exit code): kept
            return
        if self.info._phase() is StepState.RUNNING:
            self.info.mark_failed(error)
        # else: the body finished the record itself; its exception propagates unchanged.


_SEQUENCES = (list, tuple, set, frozenset)


def replace_steps_with_unique_id(value: Any) -> Any:
    """Replace the steps inside a step's config by references, as Tango does.

    A step (any object with a string ``unique_id``) becomes ``{"type": "ref", "ref": <id>}``; an
    indexed step (an object with a ``step`` that has one, and a ``key``, like Tango's
    ``StepIndexer``) becomes ``{"type": "ref", "ref": <id>, "key": <key>}``. Lists, tuples, sets
    and dicts are rebuilt with their contents replaced (a named tuple as itself, a subclass whose
    constructor takes no iterable as its base type); everything else is returned as it is.
    """
    if isinstance(value, dict):
        return {key: replace_steps_with_unique_id(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        cls = type(value)
        items = [replace_steps_with_unique_id(item) for item in value]
        if cls in _SEQUENCES:
            return cls(items)
        if isinstance(value, tuple) and hasattr(cls, "_make"):  # a named tuple
            return cls._make(items)
        try:
            return cls(items)
        except TypeError:  # its constructor takes other arguments
            return next(base for base in _SEQUENCES if isinstance(value, base))(items)
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
    the environment's git dirty check first (``git diff``, or ``git status`` when the index looks
    stale), so that it runs meanwhile (a ``PlatformMetadata`` alone never starts ``git``)."""
    _probe.prefetch_git()
    return PlatformMetadata()


@record_class  # @dataclass(init=False, eq=False, repr=False); see _record.FACTORY
class StepInfo(Record):
    """The run record of one step: what it is, when and where it ran, and how it ended.

    Drop-in for ``tango.step_info.StepInfo`` (ai2-tango 1.3.2): the same fields, order, defaults,
    properties and methods. ``platform`` and ``environment`` default to probes of this machine;
    passing them explicitly probes nothing.

    Not in Tango: the lifecycle helpers :meth:`mark_started`, :meth:`mark_completed`,
    :meth:`mark_failed` and :meth:`running`, which set the times and error from one UTC clock
    and refuse transitions that make no sense (the table is in the docs' engine page).

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

    def __init__(  # noqa: PLR0917 (positional, as the generated one and Tango's)
        self,
        unique_id: str,
        step_class_name: str,
        dependencies: Set[str],
        cacheable: bool,
        step_name: Optional[str] = None,
        version: Optional[str] = None,
        start_time: Optional[_dt.datetime] = None,
        end_time: Optional[_dt.datetime] = None,
        error: Optional[str] = None,
        result_location: Optional[str] = None,
        config: Optional[Dict[str, Any]] = None,
        metadata: Optional[Dict[str, Any]] = None,
        platform: PlatformMetadata = FACTORY,
        environment: EnvironmentMetadata = FACTORY,
    ) -> None:
        self.unique_id = unique_id
        self.step_class_name = step_class_name
        self.dependencies = dependencies
        self.cacheable = cacheable
        self.step_name = step_name
        self.version = version
        self.start_time = start_time
        self.end_time = end_time
        self.error = error
        self.result_location = result_location
        self.config = config
        self.metadata = metadata
        self.platform = _platform() if platform is FACTORY else platform
        self.environment = EnvironmentMetadata() if environment is FACTORY else environment

    @property
    def start_time_local(self) -> Optional[_dt.datetime]:
        """:attr:`start_time` in this machine's local time zone, with the offset in force then.

        A July time in New York comes back at -04:00 and a January one at -05:00.

        :raises TypeError: :attr:`start_time` was set by hand to something not a datetime.
        """
        return _local("start_time", self.start_time)

    @property
    def end_time_local(self) -> Optional[_dt.datetime]:
        """:attr:`end_time` in this machine's local time zone, with the offset in force then.

        :raises TypeError: :attr:`end_time` was set by hand to something not a datetime.
        """
        return _local("end_time", self.end_time)

    @property
    def duration(self) -> Optional[_dt.timedelta]:
        """``end_time - start_time``, or ``None`` when either is missing.

        :raises TypeError: a time set by hand is not a datetime; the message names the field.
        :raises ValueError: a time set by hand is out of the range of datetime in UTC.
        """
        if self.start_time is None or self.end_time is None:
            return None
        start = _in_utc("start_time", self.start_time)
        return _in_utc("end_time", self.end_time) - start

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
        return StepState.UNCACHEABLE if not self.cacheable else self._phase()

    def _phase(self) -> StepState:
        """The state the times and error give, whether or not the step is cacheable: one of
        ``INCOMPLETE``, ``RUNNING``, ``COMPLETED`` and ``FAILED``.

        :raises InvalidStepStateError: as :attr:`state`.
        """
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

    # --- lifecycle ---------------------------------------------------------------------------

    def _require_running(self, verb: str) -> None:
        phase = self._phase()
        if phase is not StepState.RUNNING:
            never = " (it never started)" if phase is StepState.INCOMPLETE else ""
            raise InvalidStepStateError(
                f"StepInfo {self.unique_id!r}: cannot {verb} a step that is {phase.value}{never}; "
                "only a running step can"
            )

    def _end_time(self) -> _dt.datetime:
        """Now, but never before :attr:`start_time` (a wall clock stepped back in between)."""
        from ._clock import now

        end = now()
        start = self.start_time
        if start is None:
            return end
        if type(start) is not _dt.datetime or start.tzinfo is not end.tzinfo:
            # set by hand: compared in UTC, naive taken as UTC
            start = _in_utc("start_time", start, end.tzinfo)
        return start if end < start else end

    def mark_started(self) -> None:
        """Mark the step as started now: :attr:`start_time` becomes the current time, and
        :attr:`end_time`, :attr:`error` and :attr:`result_location` are cleared (as Tango's
        workspaces do when a step starts).

        Allowed from ``INCOMPLETE`` and ``FAILED`` (a retry). An uncacheable record (its
        :attr:`state` is always ``UNCACHEABLE``) follows the same rules on its times and error,
        except that it may also start again after completing: an uncacheable step runs every time
        it is needed. Probes nothing: build the record (which probes this machine) before the
        step starts, so that probing is not counted in its duration.

        :raises InvalidStepStateError: the step is running, or completed and cacheable, or its
            times and error have no state.
        """
        from ._clock import now

        with _marking:
            phase = self._phase()
            if phase is StepState.RUNNING or (phase is StepState.COMPLETED and self.cacheable):
                raise InvalidStepStateError(
                    f"StepInfo {self.unique_id!r}: cannot start a step that is {phase.value}"
                    + ("" if phase is StepState.RUNNING else " (a cacheable result is reused)")
                )
            self.start_time = now()
            self.end_time = None
            self.error = None
            self.result_location = None

    def mark_completed(self) -> None:
        """Mark the running step as finished without error: :attr:`end_time` becomes the
        current time (never earlier than :attr:`start_time`).

        :raises InvalidStepStateError: the step is not running (never started, or already
            finished).
        :raises TypeError: :attr:`start_time` was set by hand to something not a datetime.
        :raises ValueError: :attr:`start_time` was set by hand out of the range of datetime in UTC.
        """
        with _marking:
            self._require_running("complete")
            self.end_time = self._end_time()

    def mark_failed(self, error: Union[BaseException, str]) -> None:
        """Mark the running step as failed: :attr:`end_time` becomes the current time (never
        earlier than :attr:`start_time`) and :attr:`error` the failure.

        An exception is stored as Tango's workspaces store it, formatted with its traceback
        (``traceback.format_exception``, chained exceptions included); a string is stored as it
        is (a subclass of ``str`` as the plain string it holds). An exception that
        ``traceback`` cannot format (its own code raises in there) is stored with its own
        traceback and text only, without the chained ones. Either way, secret shapes
        (credentials in URLs, ``password=...``) are redacted with
        :func:`tango_stepinfo.redact.redact_text`.

        :param error: the exception the step failed with, or a text describing the failure.
        :raises InvalidStepStateError: the step is not running (never started, or already
            finished).
        :raises TypeError: ``error`` is neither an exception nor a string, or
            :attr:`start_time` was set by hand to something not a datetime.
        :raises ValueError: :attr:`start_time` was set by hand out of the range of datetime in UTC.
        """
        text = _format_error(error)
        with _marking:
            self._require_running("fail")
            end = self._end_time()  # may raise: before anything is set
            self.error = text  # first: a reader never sees the end without the error (COMPLETED)
            self.end_time = end

    def running(self) -> ContextManager[StepInfo]:
        """Mark the step as started, run the ``with`` body, then mark it completed or failed.

        ``with info.running():`` calls :meth:`mark_started` on entry (so it raises
        :exc:`InvalidStepStateError` where that does, and the body does not run). When the body
        returns, :meth:`mark_completed`. When it raises, :meth:`mark_failed` with the exception,
        which is then re-raised unchanged: any exception, :class:`KeyboardInterrupt`,
        :class:`SystemExit` and :class:`GeneratorExit` (a generator closed inside the body)
        included, because the step did not finish; Tango's steps record these as failures too,
        and a ``FAILED`` record is run again, where a ``RUNNING`` one would look alive. If the
        body raised after finishing the record itself, the record is left as it is; if it
        returns after :meth:`mark_failed` (a failure that is no Python exception, say a child's
        exit code), the record stays failed and nothing is raised.

        :returns: a context manager whose ``as`` target is this record.
        """
        return _Running(self)

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
        :raises StepInfoEncodeError: the config holds itself, or nests too deeply to replace the
            steps inside.
        :raises TypeError: a dependency is not a step (has no ``unique_id``).
        """
        try:
            config = step.config
        except ValueError:
            config = None
        try:
            config = replace_steps_with_unique_id(config)
        except RecursionError:
            from .errors import StepInfoEncodeError

            raise StepInfoEncodeError(
                "config", "nested too deeply, or a container in it holds itself"
            ) from None
        dependencies = list(step.dependencies)
        try:
            ids = {dep.unique_id for dep in dependencies}
        except AttributeError:
            odd = [dep for dep in dependencies if not hasattr(dep, "unique_id")]
            if not odd:
                raise  # a unique_id that raised only once: its own error
            from ._errors import show

            raise TypeError(
                f"dependencies: expected steps (objects with a unique_id), got {show(odd[0])}"
            ) from None
        return cls(
            unique_id=step.unique_id,
            step_name=step.name,
            step_class_name=step.class_name,
            version=step.VERSION,
            dependencies=ids,
            cacheable=step.cache_results,
            config=config,
            metadata=step.metadata,
            **kwargs,
        )


if TYPE_CHECKING:  # for the checker only: a TypeVar costs 0.02 ms at import (3.11)
    _S = TypeVar("_S", bound=StepInfo)
