"""Measure tango_stepinfo against its speed targets (issue 3), and Tango too, in fresh processes.

Usage::

    python benchmarks/bench.py [--python PY] [--tango TANGO_PY] [--runs N] [--cwd DIR]

Figures (medians):

- ``import``: ``import tango_stepinfo`` (Tango: ``from tango.step_info import StepInfo``) minus
  ``import dataclasses, datetime, enum, pathlib, typing, pytz``, each in its own fresh process;
- ``first StepInfo``: the first ``StepInfo(...)`` of a fresh process, ``git status`` included;
- ``later StepInfo``: each later one, in a warm process;
- ``to_json_dict`` / ``from_json_dict``: a full record (every field set, 70 packages);
- ``pickle size``: that record pickled with ``pickle.HIGHEST_PROTOCOL``.

Both libraries are measured in the same git checkout (by default a fresh ``git clone`` of this
repository, so that it has an ``origin``; Tango 1.3.2 raises without one), with byte-code caching
on (``PYTHONDONTWRITEBYTECODE`` is removed and ``PYTHONPYCACHEPREFIX`` points at a temporary
folder, warmed up first). ``--python`` picks the interpreter for tango_stepinfo (its ``src`` is
put on ``PYTHONPATH``); give it the Tango virtualenv's interpreter to measure both against the
same installed packages. Only the standard library is used.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SRC = REPO / "src"

BASELINE = "dataclasses, datetime, enum, pathlib, typing, pytz"

# --- worker side (runs under the measured interpreter: standard library only) -------------------


def _import_lib(lib: str) -> Any:
    if lib == "ours":
        import tango_stepinfo

        return tango_stepinfo
    import importlib

    return importlib.import_module("tango.step_info")


def _new(mod: Any) -> Any:
    return mod.StepInfo(
        unique_id="step-1", step_class_name="Step", dependencies=set(), cacheable=True
    )


def _full_record(mod: Any) -> Any:
    import datetime as dt

    info = _new(mod)
    packages = [(f"package-{i:02d}", f"{i}.{i % 7}.{i % 3}") for i in range(70)]
    info.environment.packages = packages
    info.step_name = "train"
    info.version = "003"
    info.dependencies = {"dep-a", "dep-b", "dep-c"}
    info.start_time = dt.datetime(2024, 3, 10, 6, 59, 58, tzinfo=dt.timezone.utc)
    info.end_time = dt.datetime(2024, 3, 10, 7, 5, 1, tzinfo=dt.timezone.utc)
    info.error = None
    info.result_location = "/results/step-1"
    info.config = {
        "type": "train",
        "lr": 0.001,
        "layers": [64, 64, 32],
        "data": {"type": "ref", "ref": "dep-a"},
    }
    info.metadata = {"owner": "me", "tags": ["a", "b"]}
    return info


def _median_per_call(func: Any, number: int, repeat: int = 9) -> float:
    import timeit

    return statistics.median(timeit.repeat(func, number=number, repeat=repeat)) / number


def worker(mode: str, lib: str) -> Dict[str, Any]:
    from time import perf_counter

    if mode == "baseline":
        t0 = perf_counter()
        import dataclasses  # noqa: F401
        import datetime  # noqa: F401
        import enum  # noqa: F401
        import pathlib  # noqa: F401
        import typing  # noqa: F401

        import pytz  # noqa: F401

        return {"seconds": perf_counter() - t0}
    if mode == "import":
        t0 = perf_counter()
        _import_lib(lib)
        return {"seconds": perf_counter() - t0}
    mod = _import_lib(lib)
    t0 = perf_counter()
    first = _new(mod)
    elapsed = perf_counter() - t0
    if mode == "first":
        git = first.environment.git
        return {
            "seconds": elapsed,
            "packages": len(first.environment.packages or []),
            "git": None if git is None else git.commit,
        }
    import pickle

    record = _full_record(mod)
    data = record.to_json_dict()
    return {
        "later": _median_per_call(lambda: _new(mod), 200),
        "to_json": _median_per_call(record.to_json_dict, 500),
        "from_json": _median_per_call(lambda: mod.StepInfo.from_json_dict(data), 500),
        "pickle": len(pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)),
    }


# --- driver side -------------------------------------------------------------------------------


class Runner:
    """Runs workers of one library under one interpreter, in ``cwd``, with cached byte-code."""

    def __init__(self, python: str, lib: str, cwd: Path, pycache: Path) -> None:
        self.python = python
        self.lib = lib
        self.cwd = cwd
        self.env = dict(os.environ)
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.env["PYTHONPYCACHEPREFIX"] = str(pycache / lib)
        if lib == "ours":
            old = self.env.get("PYTHONPATH")
            self.env["PYTHONPATH"] = str(SRC) + (os.pathsep + old if old else "")

    def run(self, mode: str) -> Dict[str, Any]:
        done = subprocess.run(
            [self.python, str(Path(__file__).resolve()), "--worker", mode, "--lib", self.lib],
            cwd=self.cwd,
            env=self.env,
            check=True,
            stdout=subprocess.PIPE,
        )
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    def measure(self, runs: int) -> Dict[str, Any]:
        for mode in ("baseline", "import", "first"):  # warm up: byte-code, page cache
            self.run(mode)
        base: List[float] = []
        imp: List[float] = []
        first: List[float] = []
        info: Dict[str, Any] = {}
        for _ in range(runs):  # interleaved, so that drifts in machine load hit all alike
            base.append(self.run("baseline")["seconds"])
            imp.append(self.run("import")["seconds"])
            info = self.run("first")
            first.append(info["seconds"])
        # Steady-state figures: the median over several warm processes, not one.
        steadies = [self.run("steady") for _ in range(min(runs, 7))]
        steady = {
            key: statistics.median(s[key] for s in steadies)
            for key in ("later", "to_json", "from_json", "pickle")
        }
        return {
            "import": statistics.median(imp) - statistics.median(base),
            "import_total": statistics.median(imp),
            "baseline": statistics.median(base),
            "first": statistics.median(first),
            "later": steady["later"],
            "to_json": steady["to_json"],
            "from_json": steady["from_json"],
            "pickle": steady["pickle"],
            "packages": info["packages"],
            "git": info["git"],
        }


ROWS = [
    # key, label, unit, target
    ("import", "import (over baseline)", "ms", 3.0),
    ("import_total", "import (total)", "ms", None),
    ("first", "first StepInfo", "ms", 10.0),
    ("later", "later StepInfo", "us", 30.0),
    ("to_json", "to_json_dict (70 packages)", "us", 20.0),
    ("from_json", "from_json_dict (70 packages)", "us", 30.0),
    ("pickle", "pickle size (HIGHEST_PROTOCOL)", "B", None),
]


def _show(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value * 1e3:.2f} ms"
    if unit == "us":
        return f"{value * 1e6:.1f} us"
    return f"{int(value)} B"


def _table(ours: Dict[str, Any], tango: Optional[Dict[str, Any]]) -> str:
    head = ["figure", "tango_stepinfo", "target", "ok"]
    if tango is not None:
        head += ["Tango 1.3.2", "Tango / ours"]
    lines = [head]
    for key, label, unit, target in ROWS:
        value = ours[key]
        scale = {"ms": 1e-3, "us": 1e-6, "B": 1}[unit]
        row = [
            label,
            _show(value, unit),
            "" if target is None else f"<= {target:g} {unit}",
            "" if target is None else ("yes" if value <= target * scale else "NO"),
        ]
        if tango is not None:
            row += [_show(tango[key], unit), f"{tango[key] / value:.1f}x" if value > 0 else "n/a"]
        lines.append(row)
    widths = [max(len(r[i]) for r in lines) for i in range(len(head))]
    out = []
    for n, r in enumerate(lines):
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _checkout(tmp: Path, cwd: Optional[str]) -> Path:
    if cwd is not None:
        return Path(cwd).resolve()
    target = tmp / "checkout"
    git = shutil.which("git")
    if git is not None and (REPO / ".git").exists():
        subprocess.run([git, "clone", "-q", str(REPO), str(target)], check=True)
        return target
    target.mkdir()  # no git: measure outside a repository and say so
    return target


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter for tango_stepinfo")
    parser.add_argument("--tango", help="an interpreter with ai2-tango 1.3.2 installed")
    parser.add_argument("--runs", type=int, default=21, help="fresh processes per figure")
    parser.add_argument("--cwd", help="the git checkout to run in (default: a clone of this repo)")
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--lib", default="ours", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.lib)))
        return 0
    with tempfile.TemporaryDirectory(prefix="tango-stepinfo-bench-") as tmp:
        cwd = _checkout(Path(tmp), args.cwd)
        pycache = Path(tmp) / "pycache"
        ours = Runner(args.python, "ours", cwd, pycache).measure(args.runs)
        tango = None
        if args.tango:
            tango = Runner(args.tango, "tango", cwd, pycache).measure(args.runs)
    print(f"in {cwd} ({'git commit ' + ours['git'][:12] if ours['git'] else 'no git'}),")
    print(f"{os.cpu_count()} CPUs, {args.runs} fresh processes per figure, medians")
    print(f"tango_stepinfo: {args.python}, {ours['packages']} packages")
    if tango is not None:
        print(f"Tango:          {args.tango}, {tango['packages']} packages")
    print(f"baseline import ({BASELINE}): {ours['baseline'] * 1e3:.2f} ms")
    print()
    print(_table(ours, tango))
    if args.json:
        print(json.dumps({"ours": ours, "tango": tango}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
