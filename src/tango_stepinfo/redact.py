"""Redaction of secrets from the strings a record captures: remote URLs and the command line.

First version: URL credentials only. Every function here never raises; a string it cannot
parse is returned as it is.
"""

from __future__ import annotations

import shlex
from typing import Sequence

__all__ = ["redact_command", "redact_url"]


def redact_url(url: str) -> str:
    """Return ``url`` without the user name and password of its authority part.

    ``https://user:token@host/x.git`` becomes ``https://host/x.git``; scp-style
    ``git@host:org/x.git`` is returned as it is (it names a user but holds no secret).
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return url
    return f"{scheme}://{authority.rpartition('@')[2]}{slash}{path}"


def redact_command(argv: Sequence[str]) -> str:
    """Return ``argv`` shell-quoted as one string, with secrets redacted."""
    return shlex.join(redact_url(str(arg)) for arg in argv)
