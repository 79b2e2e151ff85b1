"""The documentation stays true: examples run, every public name is documented and referenced.

CI also builds the site with Sphinx (warnings as errors) and runs its doctests there, on one
Python; these tests need no Sphinx, so they run on every supported Python.
"""

from __future__ import annotations

import dataclasses
import datetime
import doctest
import enum
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

import tango_stepinfo

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
PAGES = sorted(DOCS.glob("*.rst"))
API = (DOCS / "api.rst").read_text(encoding="utf-8")


def public_names() -> List[str]:
    return sorted(tango_stepinfo.__all__)


def test_the_docs_have_pages() -> None:
    names = {page.stem for page in PAGES}
    assert {
        "index",
        "quickstart",
        "concepts",
        "format",
        "api",
        "engine",
        "backend",
        "migrating",
        "security",
        "performance",
        "changelog",
    } <= names


def test_every_page_is_in_the_table_of_contents() -> None:
    index = (DOCS / "index.rst").read_text(encoding="utf-8")
    listed = set(re.findall(r"^   (\w+)$", index, re.MULTILINE))
    assert listed == {page.stem for page in PAGES} - {"index"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_doctests_in_page_pass(page: Path) -> None:
    globs = {"datetime": datetime, "json": json, "Path": Path}  # as doctest_global_setup
    result = doctest.testfile(
        str(page),
        module_relative=False,
        globs=globs,
        optionflags=doctest.ELLIPSIS,
        raise_on_error=False,
        verbose=False,
        report=True,
    )
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {page.name} (see output)"


def test_quickstart_gives_the_readme_commands() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    quickstart = (DOCS / "quickstart.rst").read_text(encoding="utf-8")
    for command in (
        "python -m pip install . && python -m tango_stepinfo",
        'python -m pip install -e ".[test]" && python -m pytest',
    ):
        assert command in readme
        assert command in quickstart


@pytest.mark.parametrize("name", public_names())
def test_public_name_is_in_the_api_reference(name: str) -> None:
    directives = ("autoclass", "autofunction", "autoexception", "data")
    pattern = rf"^\.\. (?:{'|'.join(directives)}):: {re.escape(name)}$"
    assert re.search(pattern, API, re.MULTILINE), f"{name} is not in docs/api.rst"


@pytest.mark.parametrize("name", [n for n in public_names() if n != "__version__"])
def test_public_name_has_a_docstring(name: str) -> None:
    obj = getattr(tango_stepinfo, name)
    assert (inspect.getdoc(obj) or "").strip(), f"{name} has no docstring"


def _public_members(cls: type) -> List[str]:
    names = []
    for name, value in inspect.getmembers(cls):
        if name.startswith("_") or isinstance(value, enum.Enum):
            continue
        if dataclasses.is_dataclass(cls) and name in {f.name for f in dataclasses.fields(cls)}:
            continue  # fields are documented as :ivar: (checked below)
        if isinstance(value, BaseException) or name in ("args", "with_traceback", "add_note"):
            continue
        if callable(value) or isinstance(value, property):
            names.append(name)
    return names


CLASSES = [
    getattr(tango_stepinfo, n)
    for n in public_names()
    if inspect.isclass(getattr(tango_stepinfo, n, None))
]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_no_undocumented_member(cls: type) -> None:
    if issubclass(cls, BaseException):
        members = [n for n in vars(cls) if not n.startswith("_")]
    elif issubclass(cls, enum.Enum):
        members = []  # members are documented by the string after each one in the source
    else:
        members = _public_members(cls)
    undocumented = [n for n in members if not (inspect.getdoc(getattr(cls, n)) or "").strip()]
    assert undocumented == []


@pytest.mark.parametrize(
    "cls", [c for c in CLASSES if dataclasses.is_dataclass(c)], ids=lambda c: c.__name__
)
def test_every_field_is_described(cls: type) -> None:
    doc = inspect.getdoc(cls) or ""
    missing = [f.name for f in dataclasses.fields(cls) if f":ivar {f.name}:" not in doc]
    assert missing == []


def test_security_page_lists_every_secret_word() -> None:
    from tango_stepinfo import redact

    page = (DOCS / "security.rst").read_text(encoding="utf-8")
    for word in redact._SECRET_WORDS:
        assert f"``{word}``" in page
    for first, second in redact._SECRET_PAIRS:
        assert f"``{first}`` + ``{second}``" in page


def test_literalinclude_targets_exist() -> None:
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for path, obj in re.findall(
            r"^\.\. literalinclude:: (\S+)\n   :pyobject: (\w+)$", text, re.MULTILINE
        ):
            source = (DOCS / path).read_text(encoding="utf-8")
            assert re.search(rf"^(?:class|def) {obj}\b", source, re.MULTILINE), (page, obj)


README = (REPO / "README.md").read_text(encoding="utf-8")
README_COMMANDS = re.findall(
    r"^```console\n\$ (tango-stepinfo [^\n]*)\n(.*?)^```$", README, re.M | re.S
)


def test_readme_shows_commands_with_their_output() -> None:
    assert {command.split()[1] for command, _ in README_COMMANDS} >= {"show", "diff"}


@pytest.mark.parametrize("command, output", README_COMMANDS, ids=lambda c: c.split("\n")[0])
def test_readme_command_output_is_real(command: str, output: str) -> None:
    # Run as the README shows it, from the repository's root, on files in the repository.
    args = command.split()[1:]
    env = {**os.environ, "TZ": "UTC"}
    done = subprocess.run(
        [sys.executable, "-m", "tango_stepinfo", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.stderr == ""
    assert done.stdout == output


def test_readme_record_example_is_the_example_file() -> None:
    source = (REPO / "examples" / "record_a_step.py").read_text(encoding="utf-8")
    body = source.split('"""\n\n', 1)[1].rstrip("\n")
    assert f"```python\n{body}\n```" in README
