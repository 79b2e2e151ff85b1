"""Interleaved in-process A/B of the JSON codec: another checkout's package against this one.

The other checkout's ``src/tango_stepinfo`` (``MAIN``, default ``/work/main/src/tango_stepinfo``)
is loaded as ``tango_stepinfo.zz_main`` beside this tree's package; each round times both, in
alternating order, on the benchmark's full record (``bench._full_record``): ``to_json_dict``
with 70 packages, ``from_json_dict`` of fresh ``json.loads`` dicts with 70 and 569 packages.
Prints CPU time (``time.process_time``) best and median per call, and the median of the
per-round ratios. Usage::

    ROUNDS=21 nice -n 5 python benchmarks/codec_ab.py
    PYENV_VERSION=3.9.18 PYTHONPATH=/tmp/pytz-39 python3.9 benchmarks/codec_ab.py
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

import bench  # noqa: E402

import tango_stepinfo as new  # noqa: E402

MAIN = os.environ.get("MAIN", "/work/main/src/tango_stepinfo")
ROUNDS = int(os.environ.get("ROUNDS", "21"))


def _load_other() -> Any:
    # Under tango_stepinfo's name, so that its record classes count as the library's own.
    spec = importlib.util.spec_from_file_location(
        "tango_stepinfo.zz_main", MAIN + "/__init__.py", submodule_search_locations=[MAIN]
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _encode(record: Any, n: int) -> float:
    f = record.to_json_dict
    start = time.process_time()
    for _ in range(n):
        f()
    return (time.process_time() - start) / n


def _decode(cls: Any, text: str, n: int) -> float:
    dicts = [json.loads(text) for _ in range(n)]
    f = cls.from_json_dict
    start = time.process_time()
    for d in dicts:
        f(d)
    return (time.process_time() - start) / n


def main() -> None:
    cases = []
    for name, mod in (("main", _load_other()), ("new", new)):
        record = bench._full_record(mod, 70)
        text = json.dumps(record.to_json_dict())
        many = json.dumps(bench._full_record(mod, 569).to_json_dict())
        cases.append((name, mod, record, text, many))
    assert cases[0][3] == cases[1][3] and cases[0][4] == cases[1][4], "different JSON"
    times: Dict[Tuple[str, str], List[float]] = {}
    for i in range(ROUNDS):
        for name, mod, record, text, many in cases if i % 2 == 0 else cases[::-1]:
            gc.disable()
            times.setdefault((name, "to_json"), []).append(_encode(record, 3000))
            times.setdefault((name, "from_json"), []).append(_decode(mod.StepInfo, text, 2000))
            times.setdefault((name, "from_569"), []).append(_decode(mod.StepInfo, many, 400))
            gc.enable()
    print(sys.version.split()[0], "rounds", ROUNDS, "(CPU us per call)")
    for what in ("to_json", "from_json", "from_569"):
        a, b = times[("main", what)], times[("new", what)]
        ratio = statistics.median([y / x for x, y in zip(a, b)])
        print(
            f"{what:9s} main best {min(a) * 1e6:6.2f} median {statistics.median(a) * 1e6:6.2f}"
            f" | new best {min(b) * 1e6:6.2f} median {statistics.median(b) * 1e6:6.2f}"
            f" | new/main {ratio:.3f}"
        )


if __name__ == "__main__":
    main()
