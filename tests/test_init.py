"""What ``import tango_stepinfo`` loads: nothing heavy, no codec, and every public name for real.

Each check runs in a fresh interpreter, after the benchmark's baseline
(``import dataclasses, datetime, enum, pathlib, typing``), and compares ``sys.modules``: no
timing here (the import's cost is measured in ``benchmarks/bench.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any, Dict

import pytest

BASELINE = "import dataclasses, datetime, enum, pathlib, typing"

# The package modules the import may load: the record classes and what their default factories
# and the public functions anonymize and clear_cache live in.
ALLOWED = {
    "tango_stepinfo",
    "tango_stepinfo._fallbacks",
    "tango_stepinfo._privacy",
    "tango_stepinfo._probe",
    "tango_stepinfo._proc",
    "tango_stepinfo._record",
    "tango_stepinfo.errors",
    "tango_stepinfo.metadata",
    "tango_stepinfo.step_info",
}

# Loaded on the path that needs them, never by the import (some of the standard library ones
# are loaded by the baseline on some Pythons: then the import must not be what loads them).
LAZY = [
    "linecache",
    "tokenize",
    "urllib.parse",
    "ipaddress",
    "subprocess",
    "logging",
    "threading",
    "socket",
    "platform",
    "traceback",
    "json",
    "pickle",
    "importlib.metadata",
    "pytz",
    "tango_stepinfo._clock",
    "tango_stepinfo._times",
    "tango_stepinfo._errors",
    "tango_stepinfo._hiding",
    "tango_stepinfo._limits",
    "tango_stepinfo._json_default",
    "tango_stepinfo._kinds",
    "tango_stepinfo._plans",
    "tango_stepinfo.pickling",
    "tango_stepinfo.redact",
]

# The public names a module __getattr__ provides on first use: the safe loader (and pickle), and
# the redaction functions (their tables load with the first record's probes).
LOADED_ON_USE = {
    "CorruptPickleError",
    "UnsafePickleError",
    "load",
    "loads",
    "redact_command",
    "redact_url",
}


def _added_by_import(statement: str) -> Dict[str, Any]:
    code = (
        "import sys, json\n"
        f"{BASELINE}\n"
        "before = set(sys.modules)\n"
        f"{statement}\n"
        "import tango_stepinfo as t\n"
        "print(json.dumps({'added': sorted(set(sys.modules) - before),\n"
        "                  'public': sorted(t.__all__), 'defined': sorted(vars(t))}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANGO_STEPINFO_")}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, stdout=subprocess.PIPE, text=True
    )
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "statement", ["import tango_stepinfo", "from tango_stepinfo import StepInfo, StepState"]
)
def test_import_loads_only_the_record_modules(statement: str) -> None:
    added = _added_by_import(statement)["added"]
    ours = {m for m in added if m.split(".")[0] == "tango_stepinfo"}
    assert ours <= ALLOWED, sorted(ours - ALLOWED)
    # Of the standard library, only the module behind ``from __future__ import annotations``.
    assert set(added) - ours <= {"__future__"}, sorted(set(added) - ours)


@pytest.fixture(scope="module")
def plain_import() -> Dict[str, Any]:
    return _added_by_import("import tango_stepinfo")


@pytest.mark.parametrize("module", LAZY)
def test_import_does_not_load_a_lazy_module(plain_import: Dict[str, Any], module: str) -> None:
    assert module not in plain_import["added"]


def test_every_public_name_but_the_safe_loader_is_defined_by_the_import(
    plain_import: Dict[str, Any],
) -> None:
    # No module __getattr__ stands in for the record classes, errors or the other functions:
    # engines run ``from tango_stepinfo import StepInfo``, which must cost what the import costs.
    missing = set(plain_import["public"]) - set(plain_import["defined"])
    assert missing == LOADED_ON_USE


@pytest.mark.parametrize("name", sorted(LOADED_ON_USE))
def test_a_name_loaded_on_use_is_the_module_function(name: str) -> None:
    import tango_stepinfo
    from tango_stepinfo import pickling, redact

    assert getattr(tango_stepinfo, name) is getattr(redact, name, getattr(pickling, name, None))


def test_an_unknown_name_is_an_attribute_error() -> None:
    import tango_stepinfo

    with pytest.raises(AttributeError, match="no_such_name"):
        tango_stepinfo.no_such_name  # noqa: B018


@pytest.mark.parametrize("commits", [0, 1])
def test_the_first_record_loads_no_heavy_module(tmp_path: Any, commits: int) -> None:
    # The first record of a process, in a git checkout with the dirty check on, imports only
    # our probe modules and small C modules: no subprocess, logging, platform or socket, no
    # struct (with a commit, the start of the git index is read, with int.from_bytes), and
    # threading only where NVIDIA's driver is (its memory query runs in a thread).
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    if commits:
        (tmp_path / "a.txt").write_text("a\n")
        # Dated before the index git writes next, so that the entry is not "racily clean": a
        # racy index is refreshed once, and that refresh is logged (loading logging).
        old = time.time() - 10
        os.utime(tmp_path / "a.txt", (old, old))
        git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@example.com"]
        subprocess.run([*git, "add", "a.txt"], check=True)
        subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    code = (
        "import sys, json\n"
        "import tango_stepinfo\n"
        "before = set(sys.modules)\n"
        "tango_stepinfo.StepInfo(unique_id='a', step_class_name='S', dependencies=set(),\n"
        "                        cacheable=True)\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANGO_STEPINFO_")}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, check=True, stdout=subprocess.PIPE
    )
    added = set(json.loads(done.stdout))
    heavy = {"subprocess", "logging", "platform", "socket", "importlib.metadata", "json", "struct"}
    heavy.add("tango_stepinfo._hiding")  # the rules of anonymous records: not for a full one
    if not os.path.exists("/proc/driver/nvidia/gpus"):
        heavy.add("threading")
    assert not added & heavy, sorted(added & heavy)
