"""A/B of ``from_json_dict`` and ``to_json_dict`` between two source trees, in fresh processes.

Usage::

    nice -n 5 python benchmarks/rows_ab.py A_SRC B_SRC [--python PY] [--rounds N]

Runs this script as a worker under ``PY`` with ``A_SRC`` or ``B_SRC`` (folders holding
``tango_stepinfo``) first on ``PYTHONPATH``, alternating A, B then B, A, ``N`` times each, so that
a drift in the machine's load hits both alike. Each worker decodes the same JSON texts (made once
by the driver's tree from ``bench._full_record``): ``from_json_dict`` of fresh ``json.loads``
dicts with 70 and 569 packages, of two 70-package lists that differ in two versions in turn
(``70, two lists in turn``: a store of records of two environments), and ``to_json_dict`` of the
70-package record. Prints CPU time (``time.process_time``) per call, medians (and best) over the
rounds, and the median of the per-round ratios B / A. Interpreters without ``pytz`` need it on
``PYTHONPATH`` (it is passed on). Only the standard library is used.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

HERE = Path(__file__).resolve().parent
FIGURES = {
    "from70": "from_json_dict, 70 packages",
    "from569": "from_json_dict, 569 packages",
    "from70alt": "from_json_dict, 70, two lists in turn",
    "to70": "to_json_dict, 70 packages",
}


def _decode(mod: Any, texts: List[str], number: int, repeat: int = 7) -> float:
    mod.StepInfo.from_json_dict(json.loads(texts[0]))
    cpus = []
    for _ in range(repeat):
        dicts = [json.loads(texts[i % len(texts)]) for i in range(number)]
        start = time.process_time()
        for data in dicts:
            mod.StepInfo.from_json_dict(data)
        cpus.append((time.process_time() - start) / number)
    return statistics.median(cpus)


def _encode(record: Any, number: int, repeat: int = 7) -> float:
    record.to_json_dict()
    cpus = []
    for _ in range(repeat):
        start = time.process_time()
        for _ in range(number):
            record.to_json_dict()
        cpus.append((time.process_time() - start) / number)
    return statistics.median(cpus)


def worker(texts_file: str) -> Dict[str, float]:
    import tango_stepinfo as mod

    texts = json.loads(Path(texts_file).read_text(encoding="utf-8"))
    record = mod.StepInfo.from_json_dict(json.loads(texts["70"]))
    return {
        "from70": _decode(mod, [texts["70"]], 1500),
        "from569": _decode(mod, [texts["569"]], 300),
        "from70alt": _decode(mod, [texts["70"], texts["70b"]], 1500),
        "to70": _encode(record, 1500),
    }


def _texts(src: str) -> Dict[str, str]:
    sys.path[:0] = [src, str(HERE)]
    import bench

    import tango_stepinfo as mod

    one = bench._full_record(mod, 70).to_json_dict()
    other = json.loads(json.dumps(one))
    for i in (5, 40):
        other["environment"]["packages"][i][1] = "9.9.9"
    return {
        "70": json.dumps(one),
        "70b": json.dumps(other),
        "569": json.dumps(bench._full_record(mod, 569).to_json_dict()),
    }


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        print(json.dumps(worker(sys.argv[2])))
        return 0
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("a_src")
    parser.add_argument("b_src")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        texts_file = Path(tmp) / "texts.json"
        texts_file.write_text(json.dumps(_texts(args.b_src)), encoding="utf-8")
        got: Dict[str, List[Dict[str, float]]] = {"A": [], "B": []}
        for i in range(args.rounds):
            for side in ("A", "B") if i % 2 == 0 else ("B", "A"):
                src = args.a_src if side == "A" else args.b_src
                path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
                out = subprocess.run(
                    [args.python, __file__, "--worker", str(texts_file)],
                    env={**os.environ, "PYTHONPATH": path},
                    capture_output=True,
                    text=True,
                    check=True,
                )
                got[side].append(json.loads(out.stdout))
    print(f"{args.python}: A {args.a_src}, B {args.b_src}, {args.rounds} rounds, CPU per call")
    for key, label in FIGURES.items():
        a = [r[key] * 1e6 for r in got["A"]]
        b = [r[key] * 1e6 for r in got["B"]]
        ratio = statistics.median(y / x for x, y in zip(a, b))
        print(
            f"  {label:40} A {statistics.median(a):7.1f} us (best {min(a):6.1f})"
            f"  B {statistics.median(b):7.1f} us (best {min(b):6.1f})  B/A {ratio:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
