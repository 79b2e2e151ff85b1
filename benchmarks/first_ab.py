"""Interleaved A/B of the first ``StepInfo`` of a process, between two source trees.

Usage::

    python benchmarks/first_ab.py A_SRC B_SRC [--runs N] [--cwd DIR] [--dirty] [--bench-imports]
                                  [--packages DIR]

Runs N fresh interpreters (this one) for each of ``A_SRC`` and ``B_SRC`` (folders holding
``tango_stepinfo``, put on ``PYTHONPATH``), alternating A, B then B, A, so that a drift in the
machine's load hits both alike. Each process times ``import tango_stepinfo`` (CPU, with the
standard library modules it loads), its first ``StepInfo(...)`` (CPU and wall) and the mean of
200 later ones (CPU), and prints the medians, the minimums and the median of the paired
differences (B minus A, run by run), which moves less with the load than the difference of the
medians. ``TANGO_STEPINFO_GIT_DIRTY=0`` is set
unless ``--dirty``; ``--bench-imports`` first imports what ``bench.py``'s worker has loaded
(``argparse``, ``json``, ``re``, ``subprocess``...); ``--packages`` puts a folder of
distributions on ``sys.path`` too (``bench.py`` pads to 569 so). Byte-code should be compiled first
(``python -m compileall -q A_SRC B_SRC``). Only the standard library is used.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from typing import Dict, List

CODE = """{pre}import time
t0 = time.process_time()
import tango_stepinfo
t1 = time.process_time(); w1 = time.perf_counter()
tango_stepinfo.StepInfo(unique_id="s", step_class_name="S", dependencies=set(), cacheable=True)
t2 = time.process_time(); w2 = time.perf_counter()
for _ in range(200):
    tango_stepinfo.StepInfo(unique_id="s", step_class_name="S", dependencies=set(), cacheable=True)
t3 = time.process_time()
print(t1 - t0, t2 - t1, w2 - w1, (t3 - t2) / 200)
"""
BENCH_IMPORTS = "import argparse, json, os, re, shutil, statistics, subprocess, sys, tempfile\n"
FIGURES = [("import CPU", 1e3, "ms"), ("first CPU", 1e3, "ms"), ("first wall", 1e3, "ms")]
FIGURES.append(("later CPU", 1e6, "us"))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("a", help="source folder A (the reference)")
    parser.add_argument("b", help="source folder B")
    parser.add_argument("--runs", type=int, default=101, help="processes for each (default 101)")
    parser.add_argument("--cwd", default=".", help="the folder to run in (a git checkout)")
    parser.add_argument("--dirty", action="store_true", help="leave the git dirty check on")
    parser.add_argument("--bench-imports", action="store_true", help="import as bench.py does")
    parser.add_argument(
        "--packages", help="a folder of distributions put on PYTHONPATH after the source folder"
    )
    args = parser.parse_args()
    code = CODE.format(pre=BENCH_IMPORTS if args.bench_imports else "")
    runs: Dict[str, List[List[float]]] = {args.a: [], args.b: []}
    for n in range(args.runs):
        for src in (args.a, args.b) if n % 2 == 0 else (args.b, args.a):
            path = [os.path.abspath(src)] + ([args.packages] if args.packages else [])
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
            if not args.dirty:
                env["TANGO_STEPINFO_GIT_DIRTY"] = "0"
            out = subprocess.run(
                [sys.executable, "-c", code],
                cwd=args.cwd,
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            runs[src].append([float(x) for x in out.split()])
    print(f"{args.runs} runs each, A = {args.a}, B = {args.b}")
    for i, (label, scale, unit) in enumerate(FIGURES):
        a = [r[i] * scale for r in runs[args.a]]
        b = [r[i] * scale for r in runs[args.b]]
        paired = statistics.median(y - x for x, y in zip(a, b))
        print(
            f"{label:10s}  A median {statistics.median(a):8.3f} min {min(a):8.3f}  "
            f"B median {statistics.median(b):8.3f} min {min(b):8.3f} {unit}  "
            f"B - A paired median {paired:+.3f} {unit}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
