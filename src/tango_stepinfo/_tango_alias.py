"""Make ai2-tango 1.3.2 use this library: ``tango.step_info`` served by ``tango_stepinfo``.

Tango imports its record classes from one module, ``tango.step_info`` (``tango/__init__.py``,
the workspaces, step caches and executors all do ``from tango.step_info import ...``). An import
hook placed first on :data:`sys.meta_path` answers for that one name with a module holding this
library's classes, so every ``from tango.step_info import StepInfo`` in Tango gets ours, and
nothing else in Tango changes. Tango's own file is left on disk untouched.

The hook is installed in every interpreter of an environment by a ``.pth`` file in its
site-packages (:data:`PTH_NAME`), the mechanism setuptools uses for ``distutils-precedence.pth``:
Python runs its one ``import`` line at start-up. That covers ``tango run`` and the ``tango``
processes Tango's multicore executor starts for each step. The line imports nothing until
``tango.step_info`` is imported, and does nothing when this library has been uninstalled.
Removing the file undoes it. :func:`install` does the same in the running process only.

Inside an aliased process ``TANGO_STEPINFO_JSON`` defaults to ``tango``, so records that Tango's
remote workspaces store as JSON (``to_json_dict()`` without arguments) stay readable by
unmodified Tango.
"""

from __future__ import annotations

import contextlib
import os
import sys
import sysconfig
from importlib.abc import Loader, MetaPathFinder
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Optional, Sequence

from ._proc import NotARegularFile, open_regular
from .errors import _PathError

__all__ = [
    "PTH_NAME",
    "AliasFileError",
    "disable",
    "enable",
    "install",
    "pth_path",
    "spec",
    "status",
]

ALIASED = "tango.step_info"

TANGO_VERSION = "1.3.2"
"""The ai2-tango release whose ``tango.step_info`` this library stands in for."""

PTH_NAME = "tango_stepinfo_tango_alias.pth"
"""The file :func:`enable` writes into site-packages."""

# One line: .pth lines starting with "import" are executed by the site module at start-up, in
# every Python of the environment. It imports nothing (not even this package: importing it costs
# more than all the rest of start-up on a busy machine); it puts a finder on sys.meta_path that
# only compares names, and imports this module the first time "tango.step_info" is imported. When
# this library has been uninstalled the finder steps aside, so a left-over file is harmless.
PTH_LINE = (
    'import sys; exec("def _tango_stepinfo_alias(name, path=None, target=None):\\n'
    " if name != 'tango.step_info':\\n  return None\\n"
    " try:\\n  from tango_stepinfo._tango_alias import spec\\n"
    " except ImportError:\\n  return None\\n"
    " return spec(name)\\n"
    "sys.meta_path.insert(0, type('TangoStepinfoAlias', (), "
    "{'find_spec': staticmethod(_tango_stepinfo_alias)})())\")\n"
)

# What tango.step_info exports that Tango and its users import.
_EXPORTS = (
    "EnvironmentMetadata",
    "GitMetadata",
    "PlatformMetadata",
    "StepInfo",
    "StepState",
    "TangoMetadata",
)


class _Loader(Loader):
    def create_module(self, spec: ModuleSpec) -> Optional[ModuleType]:
        return None  # the default: a new, empty module

    def exec_module(self, module: ModuleType) -> None:
        os.environ.setdefault("TANGO_STEPINFO_JSON", "tango")
        import tango_stepinfo

        for name in _EXPORTS:
            setattr(module, name, getattr(tango_stepinfo, name))
        module.__doc__ = "Tango's record classes, served by tango_stepinfo (see its docs)."
        module.__all__ = list(_EXPORTS)  # type: ignore[attr-defined]


def spec(fullname: str) -> ModuleSpec:
    """The spec of the module served as ``fullname`` (``tango.step_info``): our classes."""
    return ModuleSpec(fullname, _Loader(), origin="tango_stepinfo")


class _Finder(MetaPathFinder):
    """Answers for ``tango.step_info`` only; every other import goes on as usual."""

    def find_spec(
        self, fullname: str, path: Optional[Sequence[str]], target: Optional[ModuleType] = None
    ) -> Optional[ModuleSpec]:
        return spec(fullname) if fullname == ALIASED else None

    def __repr__(self) -> str:
        return "<tango_stepinfo alias for tango.step_info>"


def install() -> bool:
    """Put the hook first on :data:`sys.meta_path` in this process (once).

    :returns: whether it was installed now; ``False`` when it already was, or when Tango's own
        ``tango.step_info`` is already imported (then it is too late for this process).
    """
    if ALIASED in sys.modules or any(isinstance(f, _Finder) for f in sys.meta_path):
        return False
    sys.meta_path.insert(0, _Finder())
    return True


def site_packages() -> Path:
    """The site-packages folder of the running interpreter's environment."""
    return Path(sysconfig.get_paths()["purelib"])


def pth_path(site: Optional[Path] = None) -> Path:
    """Where :func:`enable` writes the ``.pth`` file: in ``site`` or this environment's."""
    return (site or site_packages()) / PTH_NAME


class AliasFileError(_PathError, ValueError):
    """Something other than the file :func:`enable` writes is at the ``.pth`` path.

    The message is ``path: problem``: a directory, FIFO or other non-regular file, or a file
    with other contents (Python would still run its ``import`` lines, so it is neither on nor
    off).
    """


# The kinds of non-regular file that can sit at a path, named for the message.
def status(site: Optional[Path] = None) -> bool:
    """Whether the alias is on in ``site`` (this environment's site-packages by default).

    A symbolic link is followed, as Python does; a dangling one is off.

    :returns: ``True`` when the file holds exactly the line :func:`enable` writes, ``False``
        when there is none.
    :raises AliasFileError: when something else is there (never waits on a FIFO), or when
        ``site`` is not a folder.
    :raises OSError: when it cannot be read.
    """
    path = pth_path(site)
    try:
        # Without blocking: opening a FIFO for reading would otherwise wait for a writer forever.
        f, _ = open_regular(str(path))
    except FileNotFoundError:
        if not path.parent.is_dir():  # a mistyped --site is not "off"
            raise AliasFileError(str(path.parent), "no such folder") from None
        return False
    except NotARegularFile as e:
        kind = e.kind or "of an unknown kind"
        raise AliasFileError(str(path), f"not a regular file ({kind})") from None
    with f:
        data = f.read(len(PTH_LINE) + 1) or b""  # enough to tell; a huge file is not read whole
    if data != PTH_LINE.encode("utf-8"):
        raise AliasFileError(
            str(path),
            "is not the file 'tango-alias on' writes (edited?); 'on' rewrites it, 'off' removes it",
        )
    return True


def enable(site: Optional[Path] = None) -> Path:
    """Write the ``.pth`` file atomically, readable by every user of the environment.

    The line goes to a new temporary file of a unique name in the same folder (created
    exclusively, so nothing planted there is written through), which is then renamed over
    the path; on failure it is removed, so the folder is left as it was.

    :returns: its path.
    :raises OSError: when it cannot be written.
    """
    import tempfile

    path = pth_path(site)
    # The name starts with "." and does not end in ".pth": site never runs it.
    fd, name = tempfile.mkstemp(prefix=f".{PTH_NAME}.", suffix=".tmp", dir=path.parent)
    try:
        with open(fd, "wb") as f:
            f.write(PTH_LINE.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(name, 0o666 & ~umask)  # mkstemp makes it 0600: other users' Pythons read it
        os.replace(name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise
    return path


def disable(site: Optional[Path] = None) -> bool:
    """Remove the ``.pth`` file.

    :returns: whether there was one.
    :raises OSError: when it exists and cannot be removed.
    """
    try:
        pth_path(site).unlink()
    except FileNotFoundError:
        return False
    return True


def tango_location() -> Optional[str]:
    """Where ``tango`` would be imported from in this environment, or ``None``; imports nothing."""
    from importlib.util import find_spec

    try:
        spec = find_spec("tango")
    except (ImportError, ValueError):
        return None
    return None if spec is None else str(spec.origin)


def tango_version() -> Optional[str]:
    """The installed ``ai2-tango`` distribution's version, or ``None``; imports nothing of it.

    ``None`` with :func:`tango_location` set means a ``tango`` package that pip did not install
    as ``ai2-tango`` (another project of that name, or a source tree on ``sys.path``).
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ai2-tango")
    except PackageNotFoundError:
        return None
