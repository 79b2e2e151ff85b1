"""The commands of ``tango-stepinfo``: capture, ``show``, ``check``, ``diff``, ``ls``,
``migrate``, ``tango-alias``, ``schema``.

Data flows one way: files are decoded into records by the codec (JSON) or the safe pickle loader,
and the commands only format records. Every output is deterministic: it does not depend on the
terminal's width, and text output escapes control characters so that a record cannot drive the
terminal. Exit status: 0 fine, 1 ``diff`` found a difference or ``check`` a bad file, 2 usage
errors and input that cannot be read or decoded.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import io
import json
import os
import sys
from typing import Any, List, NoReturn, Optional, Sequence, Tuple

from . import __version__
from ._diff import compare, diff_text, snapshots
from ._errors import show as _show
from ._proc import NotARegularFile, open_regular
from ._show import capture_summary, human_duration, local_time, show_record, text_or_dash
from ._show import clean as _clean
from .errors import InvalidSettingError, InvalidStepStateError, StepInfoDecodeError
from .metadata import EnvironmentMetadata, PlatformMetadata
from .step_info import StepInfo, StepState

__all__ = ["capture_summary", "compare", "diff_text", "human_duration", "main", "show_record"]

PROG = "tango-stepinfo"

Rows = List[Tuple[str, str]]

# --- errors ------------------------------------------------------------------------------------


class InputError(Exception):
    """An input file could not be read (``unreadable``) or is not a record; the message says why."""

    def __init__(self, name: str, problem: str, *, unreadable: bool = False) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem
        self.unreadable = unreadable


class _UsageError(Exception):
    """Raised by the parser instead of exiting, so :func:`main` can return the status."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """argparse, but exiting through :class:`_UsageError` and never writing a control character
    raw: its messages echo arguments (``unrecognized arguments: ...``)."""

    def exit(self, status: int = 0, message: Optional[str] = None) -> NoReturn:
        if message:
            sys.stderr.write(_clean_lines(message))
        raise _UsageError(status)

    def _print_message(self, message: str, file: Any = None) -> None:
        super()._print_message(_clean_lines(message), file)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Help text at a fixed width, whatever the terminal, with examples kept as written."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=28, width=88)


# --- reading records ---------------------------------------------------------------------------


MAX_INPUT_BYTES = 64 * 1024 * 1024
"""The largest input file ``show``, ``check`` and ``diff`` read (64 MiB); ``--max-size`` raises it.
A record is a few kilobytes; the cap keeps a wrong argument (a disk image, ``/dev/zero`` behind a
symlink) from filling memory."""

_max_size = MAX_INPUT_BYTES  # this run's cap: set by main() from --max-size


def _too_large(name: str) -> InputError:
    return InputError(
        name,
        f"larger than {_max_size} bytes (the size cap; --max-size BYTES raises it)",
        unreadable=True,
    )


def _read_stdin() -> bytes:
    stdin = sys.stdin
    if stdin is None or getattr(stdin, "closed", False):  # None: started with fd 0 closed
        raise InputError("-", "standard input is closed", unreadable=True)
    try:
        data = _read_capped(getattr(stdin, "buffer", stdin))
    except OSError as e:
        raise InputError("-", f"cannot read: {e.strerror or e}", unreadable=True) from None
    if len(data) > _max_size:
        raise _too_large("-")
    return data.encode("utf-8", "surrogateescape") if isinstance(data, str) else bytes(data)


def _read_capped(stream: Any, size: int = 0) -> Any:
    """What ``stream`` holds, read to its end but to at most one byte past the size cap.

    Read in chunks (the first of ``size`` bytes, what the file is expected to hold), never with
    one ``read(cap + 1)``: that allocates the whole cap at once, 64 MiB for a 3 KB record, and
    raised MemoryError (with a traceback) under an address-space limit with ``--max-size 1G``.
    """
    chunks = []
    total = 0
    want = size + 1
    while total <= _max_size:
        chunk = stream.read(min(max(want, 1 << 16), _max_size + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        want = 1 << 20
    if not chunks:
        return b""
    return chunks[0] if len(chunks) == 1 else chunks[0][:0].join(chunks)


def _read(name: str) -> bytes:
    """The bytes of the regular file ``name`` (``-``: standard input), at most the size cap.

    Opened without blocking (a FIFO would wait for a writer), then checked with ``fstat``, so
    what is read is what was checked, even behind a symlink.
    """
    if name == "-":
        return _read_stdin()
    try:
        f, info = open_regular(name)
    except NotARegularFile as e:  # a FIFO would block, a device never end, a folder holds none
        kind = e.kind or "not a regular file"
        raise InputError(name, f"not a regular file ({kind})", unreadable=True) from None
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the name
        raise InputError(
            name, f"cannot read: {getattr(e, 'strerror', None) or e}", unreadable=True
        ) from None
    with f:
        try:
            if info.st_size > _max_size:
                raise _too_large(name)
            data: bytes = _read_capped(f, info.st_size)  # the file may have grown since fstat
        except OSError as e:
            raise InputError(name, f"cannot read: {e.strerror or e}", unreadable=True) from None
    if len(data) > _max_size:
        raise _too_large(name)
    return data


def _json_problem(e: Exception) -> str:
    if isinstance(e, json.JSONDecodeError):
        if not e.doc.strip():
            return "the file is empty"
        return f"{e.msg} at line {e.lineno} column {e.colno}"
    if isinstance(e, UnicodeDecodeError):
        return f"not {e.encoding} text (bad byte at offset {e.start})"
    if isinstance(e, RecursionError):
        return "nested too deeply"
    return str(e)


def _unpickle(name: str, data: bytes) -> Any:
    from .pickling import CorruptPickleError, UnsafePickleError, loads

    try:
        return loads(data)
    except UnsafePickleError as e:
        raise InputError(name, f"unsafe pickle: {e}") from None
    except StepInfoDecodeError as e:
        raise InputError(name, f"not a record: {e}") from None
    except CorruptPickleError as e:  # truncated, corrupt, past a limit
        raise InputError(name, f"not a valid pickle: {e}") from None


def _load(name: str) -> Tuple[bool, Any]:
    """Read ``name`` and return ``(is_pickle, value)``: the JSON value or the unpickled object.

    Pickles of protocol 2 and later start with ``0x80``; older ones are tried after JSON fails,
    when the file ends as every pickle does, with ``.``.
    """
    data = _read(name)
    if data[:1] == b"\x80":
        return True, _unpickle(name, data)
    try:
        return False, json.loads(data)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError
        json_problem = _json_problem(e)
    if data.endswith(b"."):
        try:
            return True, _unpickle(name, data)
        except InputError as e:
            if not e.problem.startswith("not a valid pickle"):
                raise  # it is a pickle: unsafe, or not of records
            raise InputError(name, f"neither JSON ({json_problem}) nor a valid pickle") from None
    raise InputError(name, f"not JSON: {json_problem}")


def _indexed(index: int, e: StepInfoDecodeError) -> str:
    if not e.path:
        return f"[{index}]: {e.problem}"
    sep = "" if e.path.startswith("[") else "."
    return f"[{index}]{sep}{e.path}: {e.problem}"


def _records(name: str, is_pickle: bool, value: Any) -> List[StepInfo]:
    """The records in a loaded file: one record, or a list of them."""
    if is_pickle:
        # The safe loader hands out a record, a StepState, or a list, tuple or dict of them.
        items: List[Any]
        if isinstance(value, dict):
            items = list(value.values())
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            items = [value]
        for item in items:
            if not isinstance(item, StepInfo):
                raise InputError(name, f"not a record: the pickle holds {_show(item)}")
        return items
    if isinstance(value, list):
        out = []
        for i, item in enumerate(value):
            try:
                out.append(StepInfo.from_json_dict(item))
            except StepInfoDecodeError as e:
                raise InputError(name, f"not a record: {_indexed(i, e)}") from None
        return out
    if not isinstance(value, dict):
        raise InputError(name, f"not a record: expected an object or a list, got {_show(value)}")
    try:
        return [StepInfo.from_json_dict(value)]
    except StepInfoDecodeError as e:
        raise InputError(name, f"not a record: {e}") from None


def read_records(name: str) -> List[StepInfo]:
    """Decode the record or list of records in the file ``name`` (``-`` is standard input).

    :raises InputError: naming the file and the problem.
    """
    store = read_store(name)
    if store is not None:
        records, errors = store
        if errors:
            raise errors[0]
        return records
    return _records(name, *_load(name))


def read_store(name: str) -> Optional[Tuple[List[StepInfo], List[InputError]]]:
    """The records of the store ``name`` and the errors of its entries that did not decode, or
    ``None`` when ``name`` is not a store (see :mod:`tango_stepinfo._stores`).

    :raises InputError: when the store itself cannot be read.
    """
    from . import _stores

    try:
        entries = _stores.entries(name)
    except _stores.StoreError as e:
        raise InputError(e.name, e.problem, unreadable=e.unreadable) from None
    if entries is None:
        return None
    records: List[StepInfo] = []
    errors: List[InputError] = []
    for entry in entries:
        try:
            if entry.data is None:
                records += _records(entry.label, *_load(entry.label))
            else:
                records += _records(entry.label, True, _unpickle(entry.label, entry.data))
        except InputError as e:
            # Kept without traceback and context: they hold the frames of the failed decode
            # (the scan's tables, the unpickler's stack), about 3 KB a bad entry (60,000 bad
            # rows of a 1.8 MB database held 160 MB).
            e.__traceback__ = e.__context__ = None
            errors.append(e)
    return records, errors


def _is_capture(value: Any) -> bool:
    """Whether a JSON value is what ``tango-stepinfo --json`` prints rather than a record."""
    return (
        isinstance(value, dict)
        and "unique_id" not in value
        and ("platform" in value or "environment" in value)
    )


def _pick(name: str, records: List[StepInfo], step: Optional[str]) -> StepInfo:
    """The one record of ``records`` that ``diff`` compares: the only one, or ``step``'s."""
    if step is not None and len(records) != 1:
        found = [r for r in records if r.unique_id == step] or [
            r for r in records if r.step_name == step
        ]
        if len(found) == 1:
            return found[0]
        if not found:
            raise InputError(name, f"no record with unique id or step name {step!r}")
        raise InputError(name, f"{len(found)} records named {step!r}; give a unique id")
    if len(records) != 1:
        raise InputError(
            name, f"holds {len(records)} records; diff compares exactly one each (see --step)"
        )
    return records[0]


def _read_snapshot(name: str, step: Optional[str] = None) -> Tuple[Any, Any]:
    """The ``(platform, environment)`` of the one record in ``name``, or of a capture's JSON."""
    store = read_store(name)
    if store is not None:
        if store[1]:
            raise store[1][0]
        record = _pick(name, store[0], step)
        return record.platform, record.environment
    is_pickle, value = _load(name)
    if not is_pickle and _is_capture(value):
        parts = []
        for key, cls in (("platform", PlatformMetadata), ("environment", EnvironmentMetadata)):
            if key not in value:
                raise InputError(name, f"not a record: {key}: required field is missing")
            try:
                parts.append(cls.from_json_dict(value[key]))
            except StepInfoDecodeError as e:
                path = f"{key}.{e.path}" if e.path else key
                raise InputError(name, f"not a record: {path}: {e.problem}") from None
        return parts[0], parts[1]
    record = _pick(name, _records(name, is_pickle, value), step)
    return record.platform, record.environment


# --- formatting (show and the capture summary: _show.py; diff: _diff.py) ----------------------


def _clean_lines(text: str) -> str:
    """``text`` with control characters escaped but its line breaks (and tabs) kept."""
    if text.isprintable():
        return text
    return "\n".join(_clean(line).replace("\\t", "\t") for line in text.split("\n"))


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


# --- commands ----------------------------------------------------------------------------------


def _cmd_capture(args: argparse.Namespace) -> int:
    platform = PlatformMetadata()
    environment = EnvironmentMetadata()
    if args.capture_json:
        doc = {"environment": environment.to_json_dict(), "platform": platform.to_json_dict()}
        sys.stdout.write(_dumps(doc))
    else:
        sys.stdout.write(capture_summary(platform, environment))
    return 0


def _read_any(name: str) -> Tuple[List[StepInfo], List[InputError]]:
    """The records of a file or store, and the errors of what did not decode; never raises."""
    try:
        store = read_store(name)
        return store if store is not None else (_records(name, *_load(name)), [])
    except InputError as e:
        return [], [e]


def _load_all(names: Sequence[str]) -> Optional[List[Tuple[str, List[StepInfo]]]]:
    """Every file's records, or ``None`` after reporting each file (or store entry) that failed."""
    loaded = []
    failed = False
    for name in names:
        records, errors = _read_any(name)
        for e in errors:
            _error(str(e))
        failed = failed or bool(errors)
        loaded.append((name, records))
    return None if failed else loaded


def _cmd_show(args: argparse.Namespace) -> int:
    loaded = _load_all(args.files)
    if loaded is None:
        return 2
    if args.json:
        sys.stdout.write(_dumps([r.to_json_dict() for _, recs in loaded for r in recs]))
        return 0
    blocks = []
    for name, records in loaded:
        if len(args.files) > 1:
            blocks.append(f"==> {_clean(name)} <==\n")
        blocks += [show_record(r) + "\n" for r in records]
    sys.stdout.write("".join(blocks).rstrip("\n") + "\n" if blocks else "")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    status = 0
    for name in args.files:
        records, errors = _read_any(name)
        for e in errors:
            sys.stdout.write(_clean(str(e)) + "\n")
            status = max(status, 2 if e.unreadable else 1)
        if errors:
            continue
        problems = _strict_problems(records) if args.strict else []
        if problems:
            sys.stdout.write("".join(f"{_clean(name)}: {_clean(p)}\n" for p in problems))
            status = max(status, 1)
            continue
        count = "" if len(records) == 1 else f" ({len(records)} records)"
        sys.stdout.write(f"{_clean(name)}: OK{count}\n")
    return status


def strict_problems(record: StepInfo) -> List[str]:
    """Why ``check --strict`` refuses a record, one line each: every probe that fell back
    (``platform.fallbacks``, ``environment.fallbacks``), a dirty working tree, no git at all."""
    problems = []
    for part in ("platform", "environment"):
        reasons = getattr(getattr(record, part, None), "fallbacks", None) or {}
        problems += [f"{part}.{key}: {reasons[key]}" for key in sorted(reasons)]
    git = getattr(record.environment, "git", None)
    if git is None:
        problems.append("environment.git: no git repository was recorded")
    elif git.dirty:
        problems.append("environment.git.dirty: the working tree had uncommitted changes")
    return problems


def _strict_problems(records: List[StepInfo]) -> List[str]:
    many = len(records) > 1
    return [f"[{i}].{p}" if many else p for i, r in enumerate(records) for p in strict_problems(r)]


def _cmd_diff(args: argparse.Namespace) -> int:
    pairs = []
    for name in (args.a, args.b):
        try:
            pairs.append(_read_snapshot(name, args.step))
        except InputError as e:
            _error(str(e))
    if len(pairs) != 2:
        return 2
    facts = snapshots(pairs[0], pairs[1])  # made once, for both calls
    differences = compare(pairs[0], pairs[1], facts=facts)
    if args.json:
        sys.stdout.write(_dumps({"a": args.a, "b": args.b, "differences": differences}))
    else:
        sys.stdout.write(diff_text(args.a, args.b, differences, *pairs, facts=facts))
    return 1 if differences else 0


def _state(record: StepInfo) -> str:
    try:
        return str(record.state)
    except InvalidStepStateError:
        return "invalid"


def _ls_key(record: StepInfo) -> Tuple[int, _dt.datetime, str]:
    start = record.start_time
    if start is None:
        return (1, _dt.datetime.min.replace(tzinfo=_dt.timezone.utc), record.unique_id)
    aware = start if start.utcoffset() is not None else start.replace(tzinfo=_dt.timezone.utc)
    return (0, aware, record.unique_id)


def ls_lines(records: Sequence[StepInfo]) -> str:
    """The text ``ls`` prints: one line a record, by start time (never started last), then id.

    Columns: unique id, state, local start time, duration, host; ``-`` where there is none.
    """
    rows = []
    for r in sorted(records, key=_ls_key):
        start = local_time(r, "start_time_local", r.start_time)
        duration = r.duration
        rows.append(
            (
                _clean(r.unique_id),
                _state(r),
                "-" if start is None else start.isoformat(timespec="seconds"),
                "-" if duration is None else human_duration(duration),
                text_or_dash(getattr(r.platform, "host", None)),
            )
        )
    if not rows:
        return ""
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "".join(
        "  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths)) + f"  {row[4]}\n" for row in rows
    )


def _cmd_ls(args: argparse.Namespace) -> int:
    status = 0
    blocks = []
    for name in args.sources:
        records, errors = _read_any(name)
        for e in errors:
            _error(str(e))
            status = 2
        if args.state:
            records = [r for r in records if _state(r) in args.state]
        if len(args.sources) > 1:
            blocks.append(f"==> {_clean(name)} <==\n")
        blocks.append(ls_lines(records))
    sys.stdout.write("".join(blocks))
    return status


_WHOSE = {"tango": "Tango's classes", "ours": "tango_stepinfo's classes"}


def _cmd_migrate(args: argparse.Namespace) -> int:
    from ._migrate import MigrateError, migrate

    try:
        result = migrate(args.workspace, args.to, dry_run=args.dry_run)
    except MigrateError as e:
        _error(str(e))
        return e.status
    whose = _WHOSE[result.to]
    database = _clean(str(result.database))
    done = len(result.rewritten)
    if not done:
        line = f"{database}: all {result.total} records already name {whose}; nothing to do"
    elif result.dry_run:
        line = f"{database}: would rewrite {done} of {result.total} records as {whose} (dry run)"
    else:
        line = (
            f"{database}: rewrote {done} of {result.total} records as {whose}, all verified; "
            f"backup: {_clean(str(result.backup))}"
        )
    out = [line]
    for key, fields in result.lost.items():
        out.append(f"  {_clean(key)}: Tango does not keep {', '.join(fields)}")
    sys.stdout.write("\n".join(out) + "\n")
    return 0


def _cmd_alias(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import _tango_alias as alias

    site = Path(args.site) if args.site else None
    path = _clean(str(alias.pth_path(site)))
    try:
        if args.action == "on":
            if site is None:
                location = alias.tango_location()
                if location is None:
                    _error(f"ai2-tango is not installed for {sys.executable}; use --site to force")
                    return 2
                version = alias.tango_version()
                if version != alias.TANGO_VERSION:
                    found = (
                        f"ai2-tango {version}"
                        if version
                        else "a tango package that is not ai2-tango"
                    )
                    _error(
                        f"{location}: {found}, but the alias is made for ai2-tango "
                        f"{alias.TANGO_VERSION}; use --site to force"
                    )
                    return 2
            alias.enable(site)
            sys.stdout.write(f"on: tango.step_info is tango_stepinfo in new processes ({path})\n")
        elif args.action == "off":
            removed = alias.disable(site)
            sys.stdout.write(f"off: {'removed' if removed else 'there was no'} {path}\n")
        else:
            on = alias.status(site)
            sys.stdout.write(f"{'on' if on else 'off'}: {path}\n")
            return 0 if on else 1
    except OSError as e:
        _error(f"{path}: {e.strerror or e}")
        return 2
    except alias.AliasFileError as e:
        _error(str(e))
        return 2
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from ._schema import schema

    sys.stdout.write(json.dumps(schema(), indent=2) + "\n")
    return 0


def _error(message: str) -> None:
    """One line on standard error (when there is one), control characters escaped."""
    if sys.stderr is not None:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(f"{PROG}: {_clean(message)}\n")


# --- the parser --------------------------------------------------------------------------------

_MAIN_EPILOG = f"""\
With no command, capture this machine's platform and environment now and print them.

examples:
  {PROG}                          summary of this machine
  {PROG} --json > here.json       the same as JSON, to compare with diff later
  {PROG} show step.json           what ran, where, for how long, how it ended
  {PROG} diff good.json bad.json  what changed between two runs' environments
"""

_SHOW_EPILOG = f"""\
Files may be JSON (written by tango_stepinfo or by Tango, one record or a list of
them) or pickles (loaded safely: nothing in them is run); '-' reads standard input.
Times are in this machine's local time zone.

examples:
  {PROG} show failed-step.json other-steps.json
  {PROG} show --json step.pickle > step.json
"""

_CHECK_EPILOG = f"""\
Prints 'FILE: OK' or 'FILE: the problem' (with the field path) for each file.
With --strict, a record whose probes fell back (its 'fallbacks'), whose working tree
was dirty, or that ran outside git is refused too, one line per reason.
Exit status: 0 all decode, 1 some file is not a record (or not clean with --strict),
2 some file cannot be read.

examples:
  {PROG} check step.json step.pickle
  {PROG} check --strict results/*.json
"""

_DIFF_EPILOG = f"""\
A and B are records (JSON or pickle, one record each) or what '{PROG} --json'
printed. Compares every fact of the platform and environment (Python version and
executable, packages, git commit, remote, branch and dirty, OS, CPUs, user, host,
command and root, and any field added later); prints only what differs. Fields Tango
does not record (git branch and dirty) are compared only when both records have them.
Exit status: 0 no difference, 1 some difference, 2 trouble.

examples:
  {PROG} diff good-run.json bad-run.json
  {PROG} --json > here.json; {PROG} diff there.json here.json
"""

_STORES = """\
A SOURCE may also be a Tango workspace folder (its stepinfo.sqlite), such a
SQLite database itself (opened read-only; pickles loaded safely), or a folder
of .json record files."""

_LS_EPILOG = f"""\
{_STORES}
One line a record: unique id, state, local start time, duration, host; sorted
by start time, records that never started last, ties by unique id.
Exit status: 0 fine, 2 some source or record could not be read (the others
are listed).

examples:
  {PROG} ls workspace/
  {PROG} ls --state failed --state running workspace/stepinfo.sqlite
"""

_MIGRATE_EPILOG = f"""\
Rewrites every record of a Tango local workspace's stepinfo.sqlite so that
unmodified ai2-tango 1.3.2 (--to tango) or Tango using tango_stepinfo
(--to ours) loads it. One SQLite transaction: a backup beside the database
first (stepinfo.sqlite.<UTC time>.bak), every record read back and compared
before the commit; on any problem nothing is changed. Stop 'tango run' first.
Exit status: 0 done (or nothing to do), 1 the check failed (rolled back),
2 usage, or the workspace cannot be read, locked or decoded (nothing changed).

examples:
  {PROG} migrate --dry-run workspace/ --to tango
  {PROG} migrate workspace/ --to tango
"""

_ALIAS_EPILOG = """\
'on' writes {pth} into this environment's
site-packages (or --site DIR): from then on, every Python started in that
environment imports tango_stepinfo when Tango imports tango.step_info. 'off'
removes it. Run it with the Python of the environment Tango is installed in.
'status' exits 0 when on, 1 when off.

examples:
  {prog} tango-alias status
  python -m tango_stepinfo tango-alias on
  python -m tango_stepinfo tango-alias off
"""

_SCHEMA_EPILOG = f"""\
The schema is derived from the record classes' fields and accepts both this library's
JSON and Tango's.

examples:
  {PROG} schema > stepinfo.schema.json
"""


def _byte_count(text: str) -> int:
    if not text.isdigit() or not text.isascii():
        raise argparse.ArgumentTypeError(f"expected a number of bytes, got {text!r}")
    return int(text)


def _parser() -> _Parser:
    parser = _Parser(
        prog=PROG,
        description="Capture, show, check and compare run records of workflow steps.",
        epilog=_MAIN_EPILOG,
        formatter_class=_Formatter,
    )
    parser.add_argument(
        "--json",
        action="store_true",
        dest="capture_json",
        help="print the full JSON of this machine's platform and environment",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    def add(name: str, help: str, epilog: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help,
            description=help[0].upper() + help[1:] + ".",
            epilog=epilog,
            formatter_class=_Formatter,
        )

    def max_size(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--max-size",
            type=_byte_count,
            default=MAX_INPUT_BYTES,
            metavar="BYTES",
            help=f"read files of up to BYTES bytes (default {MAX_INPUT_BYTES}, 64 MiB)",
        )

    show = add("show", "print what ran, where, for how long and how it ended", _SHOW_EPILOG)
    show.add_argument("files", nargs="+", metavar="FILE", help="a record file or store, or '-'")
    show.add_argument("--json", action="store_true", help="print the records as a JSON list")
    max_size(show)

    check = add("check", "check that files decode as records", _CHECK_EPILOG)
    check.add_argument("files", nargs="+", metavar="FILE", help="a record file or store, or '-'")
    check.add_argument(
        "--strict", action="store_true", help="also refuse fallbacks, a dirty tree and no git"
    )
    max_size(check)

    diff = add("diff", "compare two records' platform and environment", _DIFF_EPILOG)
    diff.add_argument("a", metavar="A", help="the first record file")
    diff.add_argument("b", metavar="B", help="the second record file")
    diff.add_argument("--json", action="store_true", help="print the differences as JSON")
    max_size(diff)
    diff.add_argument(
        "--step",
        metavar="ID",
        help="in a side holding several records, the one with this unique id or step name",
    )

    ls = add("ls", "list the records of stores and files, one a line", _LS_EPILOG)
    ls.add_argument("sources", nargs="+", metavar="SOURCE", help="a store or record file")
    ls.add_argument(
        "--state",
        action="append",
        choices=[s.value for s in StepState],
        help="only records in this state (repeat for several)",
    )

    migrate = add(
        "migrate", "rewrite a Tango workspace's records for Tango or for us", _MIGRATE_EPILOG
    )
    migrate.add_argument(
        "workspace", metavar="WORKSPACE", help="a workspace folder or its database"
    )
    migrate.add_argument("--to", required=True, choices=["tango", "ours"], help="the new form")
    migrate.add_argument("--dry-run", action="store_true", help="check everything, write nothing")

    from ._tango_alias import PTH_NAME

    alias = add(
        "tango-alias",
        "make Tango in this environment use tango_stepinfo, or stop",
        _ALIAS_EPILOG.format(pth=PTH_NAME, prog=PROG),
    )
    alias.add_argument("action", choices=["on", "off", "status"])
    alias.add_argument("--site", metavar="DIR", help="the site-packages folder to act on")

    add("schema", "print the JSON Schema (draft 2020-12) of a record", _SCHEMA_EPILOG)
    return parser


_COMMANDS = {
    None: _cmd_capture,
    "show": _cmd_show,
    "check": _cmd_check,
    "diff": _cmd_diff,
    "ls": _cmd_ls,
    "migrate": _cmd_migrate,
    "tango-alias": _cmd_alias,
    "schema": _cmd_schema,
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line on ``argv`` (``sys.argv[1:]`` by default); return the exit status."""
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        if args.command is not None and args.capture_json:
            parser.error(f"--json goes after the command: {PROG} {args.command} --json ...")
    except _UsageError as e:
        return e.status
    global _max_size
    _max_size = getattr(args, "max_size", MAX_INPUT_BYTES)
    if sys.stdout is None:  # started with its standard output closed (``>&-``)
        _error("cannot write: the standard output is closed")
        return 2
    try:
        status = _COMMANDS[args.command](args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, as the Python docs advise.
        _drop_output()
        return 1
    except OSError as e:  # writing the output failed: a full disk (``>/dev/full``), EIO ...
        _drop_output()
        _error(f"cannot write the output: {e.strerror or e}")
        return 2
    except InvalidSettingError as e:  # TANGO_STEPINFO_PRIVACY naming no mode: a usage error
        _error(str(e))
        return 2
    except KeyboardInterrupt:
        return 130
    return status


def _drop_output() -> None:
    """Point the standard output at ``os.devnull``, so that the interpreter's last flush of
    what is still buffered does not fail again (and print a traceback) at exit."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
