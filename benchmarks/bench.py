"""Measure tango_stepinfo against its performance budget (issue 15), beside Tango 1.3.2.

Usage::

    python benchmarks/bench.py [--python PY] [--pythons ci|PY,PY,...] [--tango TANGO_PY]
                               [--runs N] [--cwd DIR] [--json]

Every figure is measured in fresh processes (medians), with wall time and the process's CPU time
side by side, and printed beside its target and, with ``--tango``, Tango's figure:

- ``import``: in a fresh process, ``import dataclasses, datetime, enum, pathlib, typing`` is
  timed first (the baseline; ``pytz`` is not in it: ``import tango_stepinfo`` does not load it),
  then ``import tango_stepinfo`` (Tango: ``import tango.step_info``): the second span is what
  the library adds over the baseline, measured in the same process (the difference of two
  separate processes' medians moved by several ms on a shared host). Each span starts after a
  ``gc.collect()``, so that a collection owed to the objects made before it is not billed to it
  (see ``_collect_first``); ``import, collector as it falls`` is the same span in another fresh
  process without the collections (the figure's method up to 0.2.0's first runs);
- ``first StepInfo``: the first ``StepInfo(...)`` of a process, with the git dirty/diff check
  (``git status``) and with it off (``TANGO_STEPINFO_GIT_DIRTY=0``), and with 569 packages;
- ``later StepInfo``, ``to_json_dict``, ``from_json_dict``: in a warm process, a full record
  (every field set) with 70 packages, and ``from_json_dict`` with 569; each ``from_json_dict``
  call gets its own freshly parsed dict (Tango's empties the dict it is given), parsed before
  the clock starts. Each of these takes the same record's values again and again, so what the
  codec keeps of the last value (a time field's last time and text, a string field's last
  string, the last package rows) answers every call: the two ``new times each call`` figures
  encode, and decode, 64 copies of the record in turn, each with its own start and end times
  (no target: they show what a store of different records pays);
- ``16 threads``: records made per second by 16 threads over those made by one; and, as the
  ceiling of any CPU-bound code under the GIL, the same ratio for a pure-Python function that
  costs what a record costs and makes no system call;
- ``memory``: what one record decoded from JSON, or unpickled, keeps allocated (tracemalloc, 200
  records kept alive, 70 packages);
- ``pickle size``: the 70-package record with ``pickle.HIGHEST_PROTOCOL``.

Ours and Tango alternate round by round (each round runs every figure once for each interpreter,
in turn, the order rotating), so that drifts in the machine's load hit both alike. Installed
packages are padded to 70 (and to 569 for that figure) with empty ``.dist-info`` folders in a
temporary folder put on ``sys.path``, so that the package scan has the same work on every
interpreter, venv or not. Both run in a fresh ``git clone`` of this repository (Tango 1.3.2 raises
without an ``origin``); ``--cwd`` picks another checkout. Byte-code caching is on and warmed up.

``--pythons ci`` measures tango_stepinfo on every Python CI uses (3.9 to 3.13 from ``pyenv``);
interpreters without ``pytz`` get the driver's ``pytz`` through ``PYTHONPATH``. Targets hold for
3.11; 3.9 may be 25% over them. Only the standard library is used.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SRC = REPO / "src"

BASELINE = "dataclasses, datetime, enum, pathlib, typing"
PACKAGES = 70
MANY_PACKAGES = 569
DIRTY_OFF = {"TANGO_STEPINFO_GIT_DIRTY": "0"}

# --- worker side (runs under the measured interpreter: standard library only) -------------------


def _clocks() -> Tuple[float, float]:
    from time import perf_counter, process_time

    return perf_counter(), process_time()


def _since(start: Tuple[float, float]) -> Dict[str, float]:
    wall, cpu = _clocks()
    return {"wall": wall - start[0], "cpu": cpu - start[1]}


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


def _full_record(mod: Any, packages: int) -> Any:
    import datetime as dt

    info = _new(mod)
    rows = [(f"package-{i:03d}", f"{i}.{i % 7}.{i % 3}") for i in range(packages)]
    info.environment.packages = rows
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


def _per_call(func: Callable[[], Any], budget: float = 0.08, repeat: int = 7) -> Dict[str, float]:
    """Median wall and CPU seconds per call; each repeat lasts about ``budget`` seconds."""
    start = _clocks()
    func()
    one = max(_since(start)["wall"], 1e-7)
    number = max(1, int(budget / one))
    walls: List[float] = []
    cpus: List[float] = []
    for _ in range(repeat):
        start = _clocks()
        for _ in range(number):
            func()
        took = _since(start)
        walls.append(took["wall"] / number)
        cpus.append(took["cpu"] / number)
    return {"wall": statistics.median(walls), "cpu": statistics.median(cpus)}


def _decode_each(
    cls: Any, texts: List[str], budget: float = 0.08, repeat: int = 7
) -> Dict[str, float]:
    """``from_json_dict`` per call, each call on its own dict parsed before the clock starts,
    from ``texts`` in turn."""
    import json as _json

    start = _clocks()
    cls.from_json_dict(_json.loads(texts[0]))
    one = max(_since(start)["wall"], 1e-7)
    number = max(1, int(budget / one))
    walls: List[float] = []
    cpus: List[float] = []
    for _ in range(repeat):
        dicts = [_json.loads(texts[i % len(texts)]) for i in range(number)]
        start = _clocks()
        for data in dicts:
            cls.from_json_dict(data)
        took = _since(start)
        walls.append(took["wall"] / number)
        cpus.append(took["cpu"] / number)
    return {"wall": statistics.median(walls), "cpu": statistics.median(cpus)}


def _encode_each(records: List[Any], budget: float = 0.08, repeat: int = 7) -> Dict[str, float]:
    """``to_json_dict`` per call, of ``records`` in turn."""
    start = _clocks()
    records[0].to_json_dict()
    one = max(_since(start)["wall"], 1e-7)
    number = max(1, int(budget / one))
    batch = [records[i % len(records)] for i in range(number)]
    walls: List[float] = []
    cpus: List[float] = []
    for _ in range(repeat):
        start = _clocks()
        for record in batch:
            record.to_json_dict()
        took = _since(start)
        walls.append(took["wall"] / number)
        cpus.append(took["cpu"] / number)
    return {"wall": statistics.median(walls), "cpu": statistics.median(cpus)}


def _new_times(record: Any, count: int = 64) -> List[Any]:
    """``count`` copies of ``record``, each with its own start and end times (new objects)."""
    import copy
    import datetime as dt

    out = []
    for i in range(count):
        one = copy.copy(record)
        one.start_time = record.start_time + dt.timedelta(seconds=i + 1)
        one.end_time = record.end_time + dt.timedelta(seconds=i + 1)
        out.append(one)
    return out


def _kept_bytes(make: Callable[[], Any], count: int = 200) -> float:
    """Bytes that one made object keeps allocated, averaged over ``count`` kept alive."""
    import gc
    import tracemalloc

    make()  # caches filled before measuring
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = [make() for _ in range(count)]
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before - sys.getsizeof(kept)) / count


def _pure(n: int) -> Any:
    """Pure Python, no system call: builds small objects as a record does."""
    kept = []
    for i in range(n):
        kept.append({"name": "s", "index": i, "pair": (i, str(i))})
    return kept


def _threads(mod: Any) -> Dict[str, float]:
    """Records per second made by 16 threads over those made by one (median of 3); and the
    same ratio for a pure-Python function of the same cost that makes no system call
    (``pure``): the ceiling of CPU-bound code under the GIL."""
    import threading

    def ratio(call: Callable[[], Any]) -> float:
        per_thread = _per_call(call, budget=0.02, repeat=3)["wall"]
        each = max(20, int(0.25 / (16 * per_thread)))  # about 0.25 s for one thread

        def make(n: int) -> None:
            for _ in range(n):
                call()

        ratios = []
        for _ in range(3):
            start = _clocks()
            make(16 * each)
            one = _since(start)["wall"]
            barrier = threading.Barrier(17)

            def run(gate: threading.Barrier = barrier) -> None:
                gate.wait()
                make(each)

            threads = [threading.Thread(target=run) for _ in range(16)]
            for t in threads:
                t.start()
            start = _clocks()
            barrier.wait()
            for t in threads:
                t.join()
            many = _since(start)["wall"]
            ratios.append(one / many)
        return statistics.median(ratios)

    cost = _per_call(lambda: _new(mod), budget=0.05, repeat=5)["cpu"]
    unit = _per_call(lambda: _pure(100), budget=0.05, repeat=5)["cpu"]
    size = max(1, round(cost / unit * 100))
    return {"value": ratio(lambda: _new(mod)), "pure": ratio(lambda: _pure(size))}


def _collect_first() -> None:
    """Collect garbage before a timed import span, so that a collection owed to the objects made
    before it (this script's own imports, the baseline's) is not billed to it (``timeit`` goes
    further: it turns the collector off while it times).

    Without it, which span a generation-1 collection falls in depends on how many objects came
    before: on 3.11 one fell in ``import tango_stepinfo`` and cost about 1 ms (a third of the
    figure), scanning the baseline's objects; on 3.9, 3.12 and 3.13 none did. The young
    collections the span's own objects cause are still in it. ``import, collector as it falls``
    is the figure without this.
    """
    import gc

    gc.collect()


def _nothing() -> None:
    pass


def worker(mode: str, lib: str) -> Dict[str, Any]:
    if mode == "count":
        import importlib.metadata as md

        return {"packages": len({d.metadata["Name"] for d in md.distributions()})}
    if mode in ("import", "import_as_is"):
        # "import": each span starts after gc.collect() (see _collect_first); "import_as_is":
        # the collector left as this script's own imports leave it.
        collect = _collect_first if mode == "import" else _nothing
        collect()
        start = _clocks()
        import dataclasses  # noqa: F401
        import datetime  # noqa: F401
        import enum  # noqa: F401
        import pathlib  # noqa: F401
        import typing  # noqa: F401

        baseline = _since(start)
        collect()
        start = _clocks()
        _import_lib(lib)
        took = _since(start)
        return {"baseline": baseline, "import": took} if mode == "import" else {mode: took}
    mod = _import_lib(lib)
    if mode == "first":
        start = _clocks()
        first = _new(mod)
        made: Dict[str, Any] = dict(_since(start))
        git = first.environment.git
        made["packages"] = len(first.environment.packages or [])
        made["git"] = None if git is None else git.commit
        return made
    if mode == "threads":
        return _threads(mod)
    import pickle

    record = _full_record(mod, PACKAGES)
    text = json.dumps(record.to_json_dict())
    blob = pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)
    if mode == "memory":
        out = {
            "mem_json": _kept_bytes(lambda: mod.StepInfo.from_json_dict(json.loads(text))),
            "mem_pickle": _kept_bytes(lambda: pickle.loads(blob)),
        }
        if lib == "ours":
            out["mem_safe"] = _kept_bytes(lambda: mod.loads(blob))
        return out
    many = json.dumps(_full_record(mod, MANY_PACKAGES).to_json_dict())
    renewed = _new_times(record)
    _new(mod)
    return {
        "later": _per_call(lambda: _new(mod)),
        "to_json": _per_call(record.to_json_dict),
        "from_json": _decode_each(mod.StepInfo, [text]),
        "from_json_many": _decode_each(mod.StepInfo, [many]),
        "to_json_new": _encode_each(renewed),
        "from_json_new": _decode_each(
            mod.StepInfo, [json.dumps(r.to_json_dict()) for r in renewed]
        ),
        "pickle": len(blob),
    }


# --- driver side -------------------------------------------------------------------------------


def _fake_packages(folder: Path, count: int) -> Path:
    """A folder of ``count`` minimal ``.dist-info`` folders, to put on ``sys.path``."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        dist = folder / f"bench_fake_{i:04d}-1.{i % 10}.0.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: bench-fake-{i:04d}\nVersion: 1.{i % 10}.0\n",
            encoding="utf-8",
        )
    return folder


class Runner:
    """Runs workers of one library under one interpreter, in ``cwd``, with cached byte-code."""

    def __init__(self, python: str, lib: str, cwd: Path, tmp: Path) -> None:
        self.python = python
        self.lib = lib
        self.cwd = cwd
        self.env = dict(os.environ)
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.env.pop("TANGO_STEPINFO_GIT_DIRTY", None)
        paths = []
        if lib == "ours":
            paths.append(str(SRC))
            if self._probe("import pytz") != 0:
                paths.append(str(_pytz_shim(tmp)))
        self.version = self._output("import sys; print('%d.%d.%d' % sys.version_info[:3])")
        self.env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache" / f"{lib}-{self.version}")
        self.label = ("tango_stepinfo" if lib == "ours" else "Tango 1.3.2") + f" {self.version}"
        old = self.env.get("PYTHONPATH")
        self.env["PYTHONPATH"] = os.pathsep.join(paths + ([old] if old else []))
        installed = self.run("count")["packages"]
        folder = tmp / f"fake-{lib}-{self.version}"
        self.padded = _fake_packages(folder / "few", max(0, PACKAGES - installed))
        self.many = _fake_packages(folder / "many", max(0, MANY_PACKAGES - installed))
        self.results: Dict[str, List[Dict[str, Any]]] = {}

    def _probe(self, code: str) -> int:
        done = subprocess.run(
            [self.python, "-c", code], check=False, env=self.env, capture_output=True
        )
        return done.returncode

    def _output(self, code: str) -> str:
        return subprocess.run(
            [self.python, "-c", code], env=self.env, check=True, capture_output=True, text=True
        ).stdout.strip()

    def run(
        self, mode: str, folder: Optional[Path] = None, extra: Optional[Dict[str, str]] = None
    ) -> Dict[str, Any]:
        env = dict(self.env)
        if folder is not None:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [env["PYTHONPATH"], str(folder)]))
        env.update(extra or {})
        done = subprocess.run(
            [self.python, str(Path(__file__).resolve()), "--worker", mode, "--lib", self.lib],
            cwd=self.cwd,
            env=env,
            check=True,
            stdout=subprocess.PIPE,
        )
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    def record(self, key: str, value: Dict[str, Any]) -> None:
        self.results.setdefault(key, []).append(value)

    def fresh_round(self) -> None:
        for mode in ("import", "import_as_is"):
            for key, value in self.run(mode, self.padded).items():
                self.record(key, value)
        self.record("first", self.run("first", self.padded))
        self.record("first_off", self.run("first", self.padded, DIRTY_OFF))
        self.record("first_many", self.run("first", self.many))

    def warm_round(self) -> None:
        steady = self.run("steady", self.padded)
        for key, value in steady.items():
            self.record(key, value if isinstance(value, dict) else {"value": value})
        for key, value in self.run("memory", self.padded).items():
            self.record(key, {"value": value})
        threads = self.run("threads", self.padded)
        self.record("threads", {"value": threads["value"]})
        self.record("threads_pure", {"value": threads["pure"]})

    def figures(self) -> Dict[str, Dict[str, float]]:
        out: Dict[str, Dict[str, float]] = {}
        for key, values in self.results.items():
            out[key] = {
                part: statistics.median(v[part] for v in values)
                for part in ("wall", "cpu", "value")
                if part in values[0]
            }
        out["import_total"] = {
            part: statistics.median(
                b[part] + i[part] for b, i in zip(self.results["baseline"], self.results["import"])
            )
            for part in ("wall", "cpu")
        }
        out["packages"] = {"value": self.results["first"][-1]["packages"]}
        out["packages_many"] = {"value": self.results["first_many"][-1]["packages"]}
        return out


def _pytz_shim(tmp: Path) -> Path:
    """A folder holding only the driver's ``pytz`` (pure Python), for interpreters without it."""
    shim = tmp / "pytz-shim"
    if not shim.exists():
        try:
            import pytz
        except ImportError:
            sys.exit("the driver's Python needs pytz for interpreters that lack it")
        shim.mkdir()
        (shim / "pytz").symlink_to(Path(pytz.__file__).parent)
    return shim


def _ci_pythons() -> List[str]:
    """The newest pyenv interpreter of each of Python 3.9 to 3.13, as ``.ci/run`` picks them."""
    out = subprocess.run(
        ["pyenv", "versions", "--bare"], check=True, capture_output=True, text=True
    ).stdout.split()
    newest: Dict[Tuple[int, int], Tuple[int, str]] = {}
    for version in out:
        m = re.fullmatch(r"3\.(9|1[0-3])\.(\d+)", version)
        if m:
            key = (3, int(m.group(1)))
            if key not in newest or int(m.group(2)) > newest[key][0]:
                newest[key] = (int(m.group(2)), version)
    root = subprocess.run(
        ["pyenv", "root"], check=True, capture_output=True, text=True
    ).stdout.strip()
    return [f"{root}/versions/{newest[k][1]}/bin/python" for k in sorted(newest)]


# key, label, unit, target (in the unit; for "x" a minimum), has CPU time
ROWS: List[Tuple[str, str, str, Optional[float], bool]] = [
    ("import", "import (over baseline)", "ms", 2.5, True),
    ("import_total", "import (total)", "ms", None, True),
    ("import_as_is", "import, collector as it falls", "ms", None, True),
    ("first", "first StepInfo", "ms", 7.0, True),
    ("first_off", "first StepInfo, GIT_DIRTY=0", "ms", 4.0, True),
    ("first_many", f"first StepInfo, {MANY_PACKAGES} packages", "ms", 10.0, True),
    ("later", "later StepInfo", "us", 18.0, True),
    ("to_json", f"to_json_dict ({PACKAGES} packages)", "us", 15.0, True),
    ("from_json", f"from_json_dict ({PACKAGES} packages)", "us", 18.0, True),
    ("from_json_many", f"from_json_dict ({MANY_PACKAGES} packages)", "us", 90.0, True),
    ("to_json_new", "to_json_dict, new times each call", "us", None, True),
    ("from_json_new", "from_json_dict, new times each call", "us", None, True),
    ("threads", "16 threads / 1 thread", "x", 1.0, False),
    ("threads_pure", "16 threads / 1, pure Python (ceiling)", "x", None, False),
    ("mem_json", "memory, decoded from JSON", "KB", 5.0, False),
    ("mem_pickle", "memory, unpickled", "KB", 5.0, False),
    ("mem_safe", "memory, safe loads()", "KB", 5.0, False),
    ("pickle", "pickle size (HIGHEST_PROTOCOL)", "KB", None, False),
]
SCALE = {"ms": 1e3, "us": 1e6, "KB": 1e-3, "x": 1.0}


def _show(value: Optional[float], unit: str) -> str:
    if value is None:
        return "-"
    value *= SCALE[unit]
    if unit == "ms":
        return f"{value:.2f} ms"
    if unit == "us":
        return f"{value:.1f} us"
    if unit == "KB":
        return f"{value:.2f} KB"
    return f"{value:.2f}x"


def _main_value(figure: Optional[Dict[str, float]]) -> Optional[float]:
    if figure is None:
        return None
    return figure.get("wall", figure.get("value"))


def _ok(value: Optional[float], unit: str, target: Optional[float], version: str) -> str:
    if target is None or value is None:
        return ""
    slack = 1.25 if version.startswith("3.9.") else 1.0
    good = value >= target / slack if unit == "x" else value * SCALE[unit] <= target * slack
    return ("yes" if good else "NO") + (" (+25%)" if slack != 1.0 else "")


def _aligned(lines: List[List[str]]) -> str:
    """Rows as text in aligned columns, the first row a header underlined with dashes."""
    widths = [max(len(r[i]) for r in lines) for i in range(len(lines[0]))]
    out = []
    for n, r in enumerate(lines):
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _table(ours: Runner, tango: Optional[Runner]) -> str:
    mine = ours.figures()
    theirs = tango.figures() if tango is not None else None
    head = ["figure", "target", "wall", "CPU", "ok"]
    if theirs is not None:
        head += ["Tango wall", "Tango CPU", "Tango / ours"]
    lines = [head]
    for key, label, unit, target, cpu in ROWS:
        fig = mine.get(key)
        value = _main_value(fig)
        shown_target = ""
        if target is not None:
            shown_target = (">= " if unit == "x" else "<= ") + _show(target / SCALE[unit], unit)
        row = [
            label,
            shown_target,
            _show(value, unit),
            _show(fig["cpu"], unit) if cpu and fig else "",
            _ok(value, unit, target, ours.version),
        ]
        if theirs is not None:
            tfig = theirs.get(key)
            tvalue = _main_value(tfig)
            ratio = ""
            if value and tvalue and unit != "x":
                ratio = f"{tvalue / value:.1f}x"
            row += [
                _show(tvalue, unit),
                _show(tfig["cpu"], unit) if cpu and tfig else "",
                ratio,
            ]
        lines.append(row)
    return _aligned(lines)


def _summary(runners: List[Runner]) -> str:
    """One line per figure, one column per interpreter: the wall time (or value) only."""
    figs = [(r, r.figures()) for r in runners]
    head = ["figure", "target"] + [r.label.replace("tango_stepinfo ", "") for r in runners]
    lines = [head]
    for key, label, unit, target, _cpu in ROWS:
        row = [label, "" if target is None else _show(target / SCALE[unit], unit)]
        for runner, fig in figs:
            value = _main_value(fig.get(key))
            verdict = _ok(value, unit, target, runner.version) if runner.lib == "ours" else ""
            over = verdict.startswith("NO")
            row.append(_show(value, unit) + (" !" if over else ""))
        lines.append(row)
    return _aligned(lines)


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


def _load() -> str:
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "load average unknown"
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--python", help="interpreter for tango_stepinfo (default: this one)")
    parser.add_argument(
        "--pythons",
        help="'ci' (Python 3.9 to 3.13 from pyenv, as CI uses) or interpreters, comma-separated",
    )
    parser.add_argument("--tango", help="an interpreter with ai2-tango 1.3.2 installed")
    parser.add_argument("--runs", type=int, default=21, help="rounds of fresh processes")
    parser.add_argument("--warm-runs", type=int, default=5, help="rounds of warm-process figures")
    parser.add_argument("--cwd", help="the git checkout to run in (default: a clone of this repo)")
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--lib", default="ours", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.lib)))
        return 0
    if args.pythons == "ci":
        pythons = _ci_pythons()
    elif args.pythons:
        pythons = args.pythons.split(",")
    else:
        pythons = [args.python or sys.executable]
    if args.python and args.pythons:
        pythons.insert(0, args.python)
    load_before = _load()
    with tempfile.TemporaryDirectory(prefix="tango-stepinfo-bench-") as name:
        tmp = Path(name)
        cwd = _checkout(tmp, args.cwd)
        ours = [Runner(py, "ours", cwd, tmp) for py in pythons]
        tango = Runner(args.tango, "tango", cwd, tmp) if args.tango else None
        runners = ours + ([tango] if tango is not None else [])
        for runner in runners:  # warm up: byte-code, page cache
            runner.fresh_round()
            runner.results.clear()
        for n in range(args.runs):  # round by round, the order rotating
            for runner in runners[n % len(runners) :] + runners[: n % len(runners)]:
                runner.fresh_round()
        for n in range(args.warm_runs):
            for runner in runners[n % len(runners) :] + runners[: n % len(runners)]:
                runner.warm_round()
        git = ours[0].results["first"][-1]["git"]
        print(f"in {cwd} ({'git commit ' + git[:12] if git else 'no git'}),")
        print(
            f"{os.cpu_count()} CPUs, {args.runs} rounds of fresh processes and {args.warm_runs} "
            "of warm ones, medians; wall time, and the process's own CPU time (children such as "
            "git status not included)"
        )
        print(f"{load_before} before, {_load()} after")
        print(f"baseline import: {BASELINE}")
        for runner in runners:
            figs = runner.figures()
            print(
                f"{runner.label}: {runner.python}, {int(figs['packages']['value'])} packages "
                f"({int(figs['packages_many']['value'])} for the {MANY_PACKAGES}-package figure), "
                f"baseline import {figs['baseline']['wall'] * 1e3:.2f} ms"
            )
        for runner in ours:
            print()
            print(f"== {runner.label} ==")
            print(_table(runner, tango))
        if len(runners) > 1:
            print()
            print("== summary (wall time or value; ! = tango_stepinfo over its target) ==")
            print(_summary(runners))
        if args.json:
            print(json.dumps({r.label: r.figures() for r in runners}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
