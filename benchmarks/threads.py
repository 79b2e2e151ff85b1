"""Look into the 16-thread figure of ``bench.py``: throughput, CPU time and context switches.

Usage::

    python benchmarks/threads.py [--src DIR ...] [--off] [--held] [--one] [--pure]
                                 [--rounds N] [--chunks C]

For each source tree (``--src``, default this checkout's ``src``; give ``/work/main/src`` and
``src`` for an A/B), and for the first tree also: with ``--off``, its re-checks turned off
(``_probe.STALE_AFTER`` raised: the ceiling); with ``--held``, the system calls of its re-checks
(``stat``, ``getcwd``) answered from memory once the first record is made (the re-checks' Python
code runs and their locks are taken, but the GIL is never let go: what a re-check that kept the
GIL would reach); with ``--one``, the same but for ``getcwd``, the first call of each re-check,
made as usual (does one release of the GIL per re-check cost what seven do?); with ``--pure``, a
pure-Python function that makes no system call and takes as long as a record in one thread
(calibrated in each process: the ceiling of any CPU-bound Python code under the GIL).
A fresh process per round makes records with one thread and with 16, in ``C`` alternating
chunks of 9,600 records each (about 0.1 s), so that a drift in the machine's load hits both modes
alike; the 16 threads live for the whole process and wait on barriers between chunks. The trees
alternate round by round. Printed, as medians over the rounds: records per second of 16 threads
over one (``bench.py``'s figure), the process's CPU time for 16 threads over one, and context
switches per millisecond with 16 threads (voluntary and involuntary, ``getrusage``), which count
the GIL handoffs. On a loaded machine the throughput ratio is noisy, and biased upwards (the
scheduler shares the CPUs among threads, so 16 threads get more of them than one: above 1x for
any code); the CPU ratio and the switches are steadier.

Runs in the current folder (a git checkout, for the git facts), with 60 extra empty
distributions on ``sys.path``. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

HERE = Path(__file__).resolve().parent
EACH = 600  # records per thread and chunk: 16 x 600 = 9,600 records, about 0.1 s
OFF = 1e9


def _switches() -> int:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_nvcsw + usage.ru_nivcsw


def _pure(n: int) -> Any:
    """Pure Python, no system call: builds small objects as a record does."""
    kept = []
    for i in range(n):
        kept.append({"name": "s", "index": i, "pair": (i, str(i))})
    return kept


def _hold_the_gil(cwd: bool) -> None:
    """Answer ``os.stat`` (and with ``cwd`` ``os.getcwd``) from memory (the answers they gave
    first): the probes' re-checks then run without letting go of the GIL. For this benchmark
    only; the library's own calls that keep the GIL (``_held``) are turned off."""
    try:
        from tango_stepinfo import _held

        _held._calls = False
    except ImportError:  # a tree from before it
        pass
    real_stat, where = os.stat, os.getcwd()
    seen: Dict[Any, Any] = {}

    def stat(path: Any, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs:
            return real_stat(path, *args, **kwargs)
        try:
            return seen[path]
        except KeyError:
            answer = seen[path] = real_stat(path)
            return answer

    os.stat = stat
    if cwd:
        os.getcwd = lambda: where


def _calibrated(record: Any) -> Any:
    """A call of :func:`_pure` taking as much CPU time as ``record()`` in one thread."""

    def per_call(call: Any, count: int = 2000) -> float:
        best = float("inf")
        for _ in range(5):
            cpu = time.process_time()
            for _ in range(count):
                call()
            best = min(best, (time.process_time() - cpu) / count)
        return best

    target = per_call(record)
    n = max(1, round(target / per_call(lambda: _pure(100)) * 100))
    return lambda: _pure(n)


def worker(chunks: int, mode: str) -> Dict[str, float]:
    import tango_stepinfo
    from tango_stepinfo import _probe

    if mode == "off":
        _probe.STALE_AFTER = OFF

    def record() -> Any:
        return tango_stepinfo.StepInfo(
            unique_id="s", step_class_name="S", dependencies=set(), cacheable=True
        )

    if mode in ("held", "one"):
        record()
        _hold_the_gil(cwd=mode == "held")

    new = _calibrated(record) if mode == "pure" else record

    start, done = threading.Barrier(17), threading.Barrier(17)

    def work() -> None:
        while True:
            start.wait()
            for _ in range(EACH):
                new()
            done.wait()

    for _ in range(16):
        threading.Thread(target=work, daemon=True).start()
    new()
    one = many = one_cpu = many_cpu = 0.0
    switched = 0
    for _ in range(chunks):
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(16 * EACH):
            new()
        one += time.perf_counter() - wall
        one_cpu += time.process_time() - cpu
        wall, cpu, before = time.perf_counter(), time.process_time(), _switches()
        start.wait()
        done.wait()
        many += time.perf_counter() - wall
        many_cpu += time.process_time() - cpu
        switched += _switches() - before
    return {"ratio": one / many, "cpu": many_cpu / one_cpu, "switches": switched / many / 1000}


def _padded(folder: Path) -> Path:
    for i in range(60):
        dist = folder / f"threads_fake_{i:04d}-1.0.dist-info"
        dist.mkdir(parents=True)
        (dist / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: threads-fake-{i:04d}\nVersion: 1.0\n", encoding="utf-8"
        )
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", action="append", help="a tree holding tango_stepinfo")
    parser.add_argument("--off", action="store_true", help="also the first tree, re-checks off")
    parser.add_argument("--held", action="store_true", help="also the first tree, GIL kept")
    parser.add_argument("--one", action="store_true", help="also the first tree, one release")
    parser.add_argument("--pure", action="store_true", help="also a pure-Python control")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--chunks", type=int, default=10)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(args.chunks, args.worker)))
        return
    trees = [str(Path(s).resolve()) for s in (args.src or [HERE.parent / "src"])]
    configs = [(tree, "on") for tree in trees] + [(trees[0], "off")] * args.off
    configs += [(trees[0], "held")] * args.held + [(trees[0], "one")] * args.one
    configs += [(trees[0], "pure")] * args.pure
    results: Dict[int, List[Dict[str, float]]] = {i: [] for i in range(len(configs))}
    with tempfile.TemporaryDirectory() as tmp:
        padded = _padded(Path(tmp) / "padded")
        for r in range(args.rounds):
            order = list(range(len(configs)))
            order = order[r % len(order) :] + order[: r % len(order)]
            for i in order:
                tree, mode = configs[i]
                paths = [tree, str(padded), os.environ.get("PYTHONPATH", "")]
                env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, paths)))
                argv = [sys.executable, __file__, "--worker", mode]
                argv += ["--chunks", str(args.chunks)]
                out = subprocess.run(argv, env=env, check=True, stdout=subprocess.PIPE).stdout
                results[i].append(json.loads(out))
    print(f"Python {sys.version.split()[0]}, {args.rounds} rounds of {args.chunks} chunks, medians")
    print(f"{'tree':<40} {'16t/1t records/s':>17} {'16t/1t CPU':>11} {'switches/ms':>12}")
    labels = {
        "on": "",
        "off": " (re-checks off)",
        "held": " (GIL kept)",
        "one": " (one release)",
        "pure": " (pure Python)",
    }
    for i, (tree, mode) in enumerate(configs):
        rows = results[i]
        label = tree + labels[mode]
        ratio, cpu, sw = (statistics.median(row[k] for row in rows) for k in rows[0])
        print(f"{label[-40:]:<40} {ratio:>16.3f}x {cpu:>10.3f}x {sw:>12.2f}")


if __name__ == "__main__":
    main()
