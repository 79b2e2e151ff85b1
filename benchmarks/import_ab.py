"""Interleaved A/B of ``import tango_stepinfo`` over the baseline, between two source trees.

Usage::

    python benchmarks/import_ab.py A_SRC B_SRC [--python PY] [--runs N] [--cwd DIR]

Runs ``bench.py``'s own fresh-process workers (this checkout's ``bench.py`` for both trees, so
that only the library differs) under ``PY`` with ``A_SRC`` or ``B_SRC`` (folders holding
``tango_stepinfo``) on ``PYTHONPATH``, N times each, alternating A, B then B, A, so that a drift
in the machine's load hits both alike. Figures: ``import`` (each span after ``gc.collect()``, as
``bench.py`` now measures it), ``import, collector as it falls`` (without), and the first
``StepInfo`` with ``TANGO_STEPINFO_GIT_DIRTY=0``; CPU time of the process, medians, and the
median of the paired differences (B minus A, run by run). Byte-code is cached (a
``PYTHONPYCACHEPREFIX`` of each tree's own) and warmed first. Interpreters without ``pytz`` need
it on ``PYTHONPATH`` (it is passed on). Only the standard library is used.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

BENCH = Path(__file__).resolve().parent / "bench.py"
# (label, bench.py worker mode, key in its output, extra environment)
FIGURES: List[Tuple[str, str, str, Dict[str, str]]] = [
    ("import (over baseline)", "import", "import", {}),
    ("import, collector as it falls", "import_as_is", "import_as_is", {}),
    ("first StepInfo, GIT_DIRTY=0", "first", "", {"TANGO_STEPINFO_GIT_DIRTY": "0"}),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("a", help="source folder A (the reference)")
    parser.add_argument("b", help="source folder B")
    parser.add_argument("--python", default=sys.executable, help="the interpreter measured")
    parser.add_argument("--runs", type=int, default=21, help="processes of each kind (21)")
    parser.add_argument("--cwd", default=".", help="the folder to run in (a git checkout)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="import-ab-") as tmp:
        envs = {}
        for side, src in (("A", args.a), ("B", args.b)):
            env = {k: v for k, v in os.environ.items() if not k.startswith("TANGO_STEPINFO_")}
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPATH"] = os.pathsep.join(
                filter(None, [os.path.abspath(src), os.environ.get("PYTHONPATH")])
            )
            env["PYTHONPYCACHEPREFIX"] = os.path.join(tmp, side)
            envs[side] = env

        def run(side: str, mode: str, key: str, extra: Dict[str, str]) -> Dict[str, float]:
            out = subprocess.run(
                [args.python, str(BENCH), "--worker", mode, "--lib", "ours"],
                env={**envs[side], **extra},
                cwd=args.cwd,
                check=True,
                stdout=subprocess.PIPE,
            ).stdout
            found = json.loads(out)
            return found[key] if key else found  # type: ignore[no-any-return]

        for side in envs:  # byte-code and page cache
            for _, mode, key, extra in FIGURES:
                run(side, mode, key, extra)
        cpu: Dict[Tuple[str, str], List[float]] = {}
        for n in range(args.runs):
            for _, mode, key, extra in FIGURES:
                for side in ("A", "B") if n % 2 == 0 else ("B", "A"):
                    cpu.setdefault((side, mode), []).append(run(side, mode, key, extra)["cpu"])
    print(f"{args.python}, {args.runs} runs each, CPU time, medians (ms); A={args.a} B={args.b}")
    for label, mode, _, _ in FIGURES:
        a, b = cpu[("A", mode)], cpu[("B", mode)]
        diff = statistics.median(y - x for x, y in zip(a, b)) * 1e3
        ma, mb = statistics.median(a) * 1e3, statistics.median(b) * 1e3
        print(f"{label:32s} A {ma:6.3f}  B {mb:6.3f}  B/A {mb / ma:5.3f}  paired B-A {diff:+6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
