"""Sphinx configuration of the tango_stepinfo documentation.

CI builds it with warnings as errors and runs its doctests::

    sphinx-build -W -b html docs <out>
    sphinx-build -W -b doctest docs <out>

The package must be installed (``python -m pip install -e ".[docs]"``). The build needs no
network: no intersphinx.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from typing import Any, Dict, List, Optional, Tuple

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
# library's names cannot be linked; they are the only exceptions.
nitpicky = True
_STDLIB = [
    "Any",
    "IO",
    "ctypes",
    "Path",
    "dataclasses.replace",
    "datetime",
    "datetime.datetime",
    "datetime.timedelta",
    "fnmatch",
    "re",
    "ipaddress",
    "tracemalloc",
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

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
# Long signatures (a record class's fields) one parameter a line, so that none overflows the page.
python_maximum_signature_line_length = 88
# Long lines in code blocks wrap instead of overflowing (``_static/wrap.css``).
html_static_path = ["_static"]
html_css_files = ["wrap.css"]

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


# --- probed defaults ----------------------------------------------------------------------------
# dataclasses show a default factory as ``<factory>``, which says nothing and is not Python (Sphinx
# would then parse the signature naively and split ``Tuple[str, str]`` at its comma). Each one is
# shown as what it probes instead, ``<probed: os.cpu_count()>``: the first code literal of the
# field's ``:ivar`` text when it names a call or attribute, else the text's first clause; a record
# class as ``PlatformMetadata()``. New fields need no change here. The signature carries a
# placeholder name (valid Python) that ``_show_probes`` swaps for the label once it is parsed.

_PROBE_LABELS: Dict[str, str] = {}
# Fields whose description does not start with what is probed.
_LABELS = {"fallbacks": "why probes fell back", "container": "container markers"}
_CODE = re.compile(r"``(\w+(?:\.\w+)+(?:\(\))?|\w+\(\))``")


def _ivar_text(cls: type, name: str) -> str:
    for block in (cls.__doc__ or "").split(":ivar ")[1:]:
        field_name, _, text = block.partition(":")
        if field_name.strip() == name:
            return " ".join(text.split(":ivar")[0].split())
    return ""


def _probe_label(cls: type, f: Any) -> str:
    factory = f.default_factory
    owner = getattr(factory, "__self__", None)
    if isinstance(factory, type) and dataclasses.is_dataclass(factory):
        what = f"{factory.__name__}()"
    elif isinstance(owner, type) and dataclasses.is_dataclass(owner):
        what = f"{owner.__name__}.{factory.__name__}()"
    else:
        text = _ivar_text(cls, f.name)
        code = _CODE.search(text)
        if f.name in _LABELS:
            what = _LABELS[f.name]
        elif code is not None:
            what = code.group(1)
        else:
            what = re.split(r"[,;:.(]| as |``", text)[0].strip() or f.name.replace("_", " ")
    kind = "probed" if f.metadata.get("probe") else "new"
    return f"<{kind}: {what}>"


def _signature(*args: Any) -> Optional[Tuple[str, Optional[str]]]:
    _app, what, _name, obj, _options, signature, return_annotation = args
    if what == "class" and typing.Protocol in getattr(obj, "__mro__", ()):
        return "", None  # a protocol is not instantiated: no ``(*args, **kwargs)``
    if signature is None or "<factory>" not in signature or not dataclasses.is_dataclass(obj):
        return None
    for f in dataclasses.fields(obj):
        if f.init and f.default_factory is not dataclasses.MISSING:
            placeholder = f"_probe_label_{len(_PROBE_LABELS)}_"
            _PROBE_LABELS[placeholder] = _probe_label(obj, f)
            signature = signature.replace("<factory>", placeholder, 1)
    return signature, return_annotation


def _show_probes(_app: Any, doctree: Any) -> None:
    from docutils import nodes
    from sphinx import addnodes

    for sig in doctree.findall(addnodes.desc_signature):
        for text in list(sig.findall(nodes.Text)):
            label = _PROBE_LABELS.get(str(text))
            if label is not None:
                text.parent.replace(text, nodes.Text(label))


# --- no private names -------------------------------------------------------------------------
# Type variables and the protocol of a step's dependencies appear in signatures as references to
# private names. Each is shown as the public class it stands for (a type variable as its bound;
# the dependencies, objects with a ``unique_id``, as steps), wherever the private name is defined.

_PUBLIC = {
    "_T": ("tango_stepinfo.step_info.Record", "Record"),
    "_S": ("tango_stepinfo.StepInfo", "StepInfo"),
    "_R": ("tango_stepinfo.step_info.Record", "Record"),
    "_HasUniqueId": ("tango_stepinfo.StepLike", "StepLike"),
}


def _no_private_names(_app: Any, doctree: Any) -> None:
    from docutils import nodes
    from sphinx import addnodes

    for ref in list(doctree.findall(addnodes.pending_xref)):
        public = _PUBLIC.get(ref.get("reftarget", "").rpartition(".")[2])
        if public is not None and ref.get("refdomain") == "py":
            ref["reftarget"] = public[0]
            ref.children = [nodes.Text(public[1])]
    for text in list(doctree.findall(nodes.Text)):  # the rare unlinked occurrence
        word = str(text)
        if word in _PUBLIC and isinstance(text.parent, addnodes.desc_signature):
            text.parent.replace(text, nodes.Text(_PUBLIC[word][1]))


# --- methods shared by every record ---------------------------------------------------------------
# ``to_json_dict`` and ``from_json_dict`` come from the records' common base class and are
# documented once, on it (api.rst, "Methods of every record"). Each record class says so, and a
# reference to ``StepInfo.to_json_dict`` (or any record class's) leads there.

_RECORD = "tango_stepinfo.step_info.Record"
_SHARED = ("to_json_dict", "from_json_dict")


def _is_record(obj: Any) -> bool:
    from tango_stepinfo.step_info import Record

    return isinstance(obj, type) and issubclass(obj, Record) and obj is not Record


def _note_shared_methods(*args: Any) -> None:
    _app, what, _name, obj, _options, lines = args
    if (
        what == "class"
        and obj.__qualname__ == "Record"
        and obj.__module__.startswith("tango_stepinfo.")
    ):
        lines[:] = []  # how the base is implemented is for contributors; api.rst says what it is
    if what == "class" and _is_record(obj):
        lines += [
            "",
            "Like every record, it has :meth:`~tango_stepinfo.step_info.Record.to_json_dict` and "
            ":meth:`~tango_stepinfo.step_info.Record.from_json_dict` (:ref:`record-methods`), "
            "``==``, ``repr`` and pickling.",
        ]


def _shared_method_reference(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    if node.get("refdomain") != "py" or node.get("reftype") not in ("meth", "obj", "func"):
        return None
    owner, _, method = node["reftarget"].rpartition(".")
    if method not in _SHARED:
        return None
    import tango_stepinfo

    cls = getattr(tango_stepinfo, owner.rpartition(".")[2], None)
    if not _is_record(cls) or method in vars(cls):
        return None
    domain = env.get_domain("py")
    return domain.resolve_xref(
        env, node["refdoc"], app.builder, "meth", f"{_RECORD}.{method}", node, contnode
    )


def setup(app: Any) -> None:
    """Connect the hooks above."""
    app.connect("autodoc-process-docstring", _ivars_to_attributes)
    app.connect("autodoc-process-docstring", _note_shared_methods)
    app.connect("autodoc-process-signature", _signature)
    app.connect("doctree-read", _show_probes)
    app.connect("doctree-read", _no_private_names)
    app.connect("missing-reference", _shared_method_reference)
