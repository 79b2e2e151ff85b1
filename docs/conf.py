"""Sphinx configuration of the tango_stepinfo documentation.

CI builds it with warnings as errors and runs its doctests::

    sphinx-build -W -b html docs <out>
    sphinx-build -W -b doctest docs <out>

The package must be installed (``python -m pip install -e ".[docs]"``). The build needs no
network: no intersphinx.
"""

from __future__ import annotations

import re
import typing
from typing import Any, List, Optional, Tuple

from tango_stepinfo import __version__

project = "tango_stepinfo"
author = "the tango_stepinfo authors"
copyright = "the tango_stepinfo authors"
release = __version__
version = ".".join(__version__.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
]

root_doc = "index"
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = f"tango_stepinfo {release}"

# Every cross-reference must resolve. Without intersphinx (the build runs offline) the standard
# library's names cannot be linked; they, and private types in signatures (type variables, the
# ``_HasUniqueId`` protocol), are the only exceptions.
nitpicky = True
_STDLIB = [
    "Any",
    "IO",
    "Path",
    "dataclasses.replace",
    "datetime",
    "datetime.datetime",
    "datetime.timedelta",
    "fnmatch",
    "json.dumps",
    "json.loads",
    "os.fsdecode",
    "pathlib.Path",
    "pickle",
    "pickle.UnpicklingError",
    "pickle.load",
    "pickle.loads",
    "pickle.dumps",
    "shlex.join",
    "sqlite3",
    "sys.argv",
    "RuntimeError",
    "ValueError",
    "TypeError",
    "typing.Any",
    "typing.IO",
    "typing.Iterable",
    "typing.Protocol",
]
_ROLES = ("py:class", "py:data", "py:obj", "py:func", "py:exc", "py:mod")
nitpick_ignore = [(role, name) for name in _STDLIB for role in _ROLES]
nitpick_ignore += [
    ("py:class", "tango_stepinfo._record._T"),
    ("py:class", "tango_stepinfo.step_info._S"),
    ("py:class", "tango_stepinfo.step_info._HasUniqueId"),
    ("py:class", "tango_stepinfo._privacy._R"),
]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"

doctest_global_setup = """
import datetime
import json
from pathlib import Path
"""

# --- fields as attributes ----------------------------------------------------------------------
# The classes describe their fields with ``:ivar name: text`` (short, and readable in ``help()``).
# Turned into ``.. attribute::`` entries here, each field gets an anchor, its type from the
# annotations, and can be cross-referenced (``:attr:`StepInfo.start_time```).

_IVAR = re.compile(r"^:ivar (\w+):\s?(.*)$")


def _type_text(tp: Any) -> str:
    """The type as the source writes it: ``Optional[datetime]``, not ``typing.Optional[...]``."""
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return re.sub(r"\b(?:typing|datetime|pathlib|tango_stepinfo\.\w+)\.", "", repr(tp))


def _ivars_to_attributes(*args: Any) -> None:
    _app, what, _name, obj, _options, lines = args
    if what not in ("class", "exception"):
        return
    try:
        hints = typing.get_type_hints(obj)
    except Exception:
        hints = {}
    out: List[str] = []
    i = 0
    while i < len(lines):
        m = _IVAR.match(lines[i])
        if m is None:
            out.append(lines[i])
            i += 1
            continue
        field, text = m.groups()
        body = [text]
        i += 1
        while i < len(lines) and lines[i].startswith("    "):
            body.append(lines[i].strip())
            i += 1
        out += ["", f".. attribute:: {field}"]
        if field in hints:
            out.append(f"   :type: {_type_text(hints[field])}")
        out += ["", *("   " + line for line in body), ""]
    lines[:] = out


def _factory_defaults(*args: Any) -> Optional[Tuple[str, Optional[str]]]:
    # dataclasses show a default factory as ``<factory>``, which is not Python, so Sphinx would
    # parse the signature naively and split ``Tuple[str, str]`` at its comma. ``...`` reads as
    # "computed when the object is made" (a probe of the machine, for the metadata fields).
    signature, return_annotation = args[5], args[6]
    if signature is not None and "<factory>" in signature:
        return signature.replace("<factory>", "..."), return_annotation
    return None


def setup(app: Any) -> None:
    """Connect the two docstring hooks above."""
    app.connect("autodoc-process-docstring", _ivars_to_attributes)
    app.connect("autodoc-process-signature", _factory_defaults)
