"""Probes of the machine and the process, behind the metadata default factories.

Simple first version: each probe reads its fact directly. Every probe returns a value of its
field's type and never raises.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional, Tuple

GitFacts = Tuple[Optional[str], Optional[str], Optional[str], Optional[bool]]


def operating_system() -> str:
    import platform

    return platform.platform()


def cpu_count() -> Optional[int]:
    return os.cpu_count()


def user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def host() -> str:
    import socket

    return socket.gethostname()


def python() -> str:
    import platform

    return platform.python_version()


def executable() -> Path:
    return Path(sys.executable)


def command() -> str:
    from .redact import redact_command

    return redact_command(getattr(sys, "argv", None) or [])


def root() -> Path:
    try:
        return Path(os.getcwd())
    except OSError:
        return Path(os.environ.get("PWD", "/"))


def packages() -> Optional[List[Tuple[str, str]]]:
    import importlib.metadata
    import re

    found = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(re.sub(r"[-_.]+", "-", name).lower(), dist.version)
    return sorted(found.items())


def git() -> Optional[GitFacts]:
    return None


def clear_cache() -> None:
    """Drop every cached fact (nothing is cached yet)."""
