"""What the safe loader costs: ``tango_stepinfo.loads`` against ``pickle.loads``, and its time
and memory on hostile inputs of up to 1 MB.

Usage (from the repository root, with the package installed in the running Python)::

    python benchmarks/loader.py [--rounds 40] [--ratio-only]
    python benchmarks/loader.py --memory [PACKAGES ...]

1. The ratio ``loads / pickle.loads`` on one record with 70 packages
   (``tests/strategies.py: full_record()``), pickled with the default protocol. Both are timed
   alternately, ``--rounds`` times, in CPU time of the process, and the best time of each is
   kept: on a shared machine the best is the least disturbed.
2. Each hostile input (up to 1 MB) is loaded in a fresh interpreter, which prints how long
   ``loads`` took, how it ended, and the peak of memory allocated during a second, traced run
   (``tracemalloc``: everything allocated through Python's allocators, the C unpickler's
   objects included).
3. With ``--memory``: the peak of memory allocated (``tracemalloc``) while loading records with
   more and more packages (70, 600 and 5,000 by default), how much of it is beyond the loaded
   value itself, the peak of ``pickle.loads`` on the same pickle, and the peaks of the scan
   alone and of a template's match alone.
4. With ``--against PICKLING_PY``: an A/B in one process. That other ``pickling.py`` (say, main's)
   is imported beside the installed one as a second module of the package, and the two
   ``loads`` (or, with ``--scan``, the two scans) and ``pickle.loads`` are timed alternately,
   ``--rounds`` times, in CPU time: best and median of each, and of new / old. Only
   ``pickling.py`` comes from the other file; the rest of the package is the installed one.
   ``--records values`` loads, in turn, 50 records of that one shape with other values (other
   strings, of other lengths, numbers and times), ``--records shapes`` 400 records each of a
   shape of its own (0 to 99 packages, 1 to 4 dependencies: more shapes than templates are
   kept, so each load misses them); times are per record.
"""

from __future__ import annotations

import argparse
import pickle
import platform
import struct
import subprocess
import sys
import time
import timeit
from pathlib import Path
from typing import Callable, Dict, List

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MB = 1_000_000
P2 = b"\x80\x02"
STOP = b"."


def g(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def u(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def filled_after_use() -> bytes:
    level = b"q\x020" + b"h\x00]q\x01\x85" + b"h\x01h\x02a0" + b"R"
    n = (MB - 40) // len(level)
    return P2 + b"}" + g("__builtin__", "tuple") + b"q\x000" + b")" + level * n + b"Ns" + STOP


def hostile_inputs() -> Dict[str, Callable[[], bytes]]:
    """The attacks of issue 10 at (up to) 1 MB, and the most containers 1 MB can make."""
    modulus = 2**61 - 1
    return {
        "list filled after use -> deep tuple key": filled_after_use,
        "tuple nested 1,000,000 deep": lambda: P2 + b")" + b"\x85" * (MB - 4) + STOP,
        "9-byte memo index": lambda: b"N" + b"r" + struct.pack("<I", 2**27) + STOP,
        "990 KB string referenced 3,000 times": lambda: (
            P2 + u("x" * 990_000) + b"q\x00(" + b"h\x00" * 3000 + b"l" + STOP
        ),
        "ints hashing to 0 in a set (1 MB)": lambda: pickle.dumps(
            {modulus * (i + 1) for i in range(MB // 11)}, protocol=4
        ),
        "1,000,000 empty lists in a list": lambda: P2 + b"(" + b"]" * (MB - 5) + b"l" + STOP,
        "1,000,000 None in a list": lambda: P2 + b"(" + b"N" * (MB - 5) + b"l" + STOP,
        "500,000 None appended one by one": lambda: P2 + b"]" + b"Na" * (MB // 2 - 3) + STOP,
        "333,333 None appended by APPENDS": lambda: P2 + b"]" + b"(Ne" * (MB // 3 - 2) + STOP,
        "500,000 None pushed and popped": lambda: P2 + b"]" + b"N0" * (MB // 2 - 3) + STOP,
        "500,000 MARK and POP_MARK": lambda: P2 + b"]" + b"(1" * (MB // 2 - 3) + STOP,
        "500,000 None memoized": lambda: P2 + b"]" + b"N\x94" * (MB // 2 - 3) + STOP,
        "record with a 1 MB config of small lists": _record_with_config,
    }


def _record_with_config() -> bytes:
    from tests.strategies import full_record

    info = full_record()
    info.config = {"rows": [[i, "x"] for i in range(MB // 14)]}
    return pickle.dumps(info)


CHILD = """
import sys, time, tracemalloc
from tango_stepinfo import loads
data = open(sys.argv[1], "rb").read()
def run():
    try:
        loads(data)
        return "loaded"
    except Exception as e:
        return type(e).__name__ + ": " + str(e)[:70]
start = time.perf_counter()
outcome = run()
took = time.perf_counter() - start
tracemalloc.start()  # a second run, traced: the peak of memory allocated above the baseline
run()
peak = tracemalloc.get_traced_memory()[1]
print(f"{took:.3f}\t{peak / 1e6:.1f}\t{outcome}")
"""


def ratio(rounds: int) -> None:
    from tests.strategies import full_record

    import tango_stepinfo

    data = pickle.dumps(full_record(70))
    tango_stepinfo.loads(data)
    number = 200
    best_plain = best_safe = float("inf")
    # CPU time of this process (time.process_time), not wall time: on a machine shared with
    # other work, time spent waiting for a core does not count against either loader.
    plain_timer = timeit.Timer(lambda: pickle.loads(data), timer=time.process_time)
    safe_timer = timeit.Timer(lambda: tango_stepinfo.loads(data), timer=time.process_time)
    for _ in range(rounds):
        best_plain = min(best_plain, plain_timer.timeit(number))
        best_safe = min(best_safe, safe_timer.timeit(number))
    plain, safe = best_plain / number * 1e6, best_safe / number * 1e6
    print(
        f"full_record(70), {len(data)} bytes: pickle.loads {plain:.1f} us, "
        f"tango_stepinfo.loads {safe:.1f} us, ratio {safe / plain:.2f}",
        flush=True,
    )


def _records(how: str) -> List[bytes]:
    import datetime as dt

    from tests.strategies import full_record

    if how == "one":
        return [pickle.dumps(full_record(70))]
    blobs = []
    for i in range(50 if how == "values" else 400):
        info = full_record(70 if how == "values" else i % 100)
        if how == "shapes":
            info.dependencies = {f"Step-{j}" for j in range(i // 100 + 1)}
        else:
            info.unique_id = f"Step{i}-" + "x" * i
            info.environment.packages = [(f"pkg{i}-{j}", f"{i}.{j}") for j in range(70)]
            info.platform.cpu_count = i + 1
            info.start_time = dt.datetime(2024, 1, 1 + i % 28, tzinfo=dt.timezone.utc)
        blobs.append(pickle.dumps(info))
    return blobs


def against(other: Path, rounds: int, scan: bool, records: str = "one") -> None:
    import importlib.util
    import statistics

    from tango_stepinfo import pickling as new

    spec = importlib.util.spec_from_file_location("tango_stepinfo._pickling_other", other)
    assert spec is not None and spec.loader is not None
    old = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = old
    spec.loader.exec_module(old)
    blobs = _records(records)
    for data in blobs:
        assert old.loads(data) == new.loads(data) == pickle.loads(data)
    what = "_scan" if scan else "loads"

    def each(load: Callable[[bytes], object]) -> Callable[[], None]:
        return lambda: [load(data) for data in blobs] and None

    timers = {
        "pickle.loads": timeit.Timer(each(pickle.loads), timer=time.process_time),
        f"old {what}": timeit.Timer(each(getattr(old, what)), timer=time.process_time),
        f"new {what}": timeit.Timer(each(getattr(new, what)), timer=time.process_time),
    }
    times: Dict[str, List[float]] = {name: [] for name in timers}
    number = max(1, 200 // len(blobs))
    for i in range(rounds):
        for name in list(timers)[:: 1 if i % 2 else -1]:  # each order half of the time
            times[name].append(timers[name].timeit(number) / number / len(blobs) * 1e6)
    best = {name: min(values) for name, values in times.items()}
    median = {name: statistics.median(values) for name, values in times.items()}
    for name in timers:
        print(f"{name:<14} best {best[name]:7.1f} us  median {median[name]:7.1f} us")
    b = best[f"new {what}"] / best[f"old {what}"]
    m = median[f"new {what}"] / median[f"old {what}"]
    print(f"new / old: best {b:.3f}, median {m:.3f}", flush=True)


def memory(sizes: List[int]) -> None:
    """Peak memory of ``loads`` (``tracemalloc``) on records with more and more packages, and
    how much of it is beyond the loaded value (which stays alive) and in the scan."""
    import tracemalloc

    from tests.strategies import full_record

    import tango_stepinfo
    from tango_stepinfo import pickling

    print(
        "packages  pickle bytes  result KB  peak KB  beyond result KB  pickle.loads peak KB"
        "  scan peak KB  template peak KB"
    )
    for n in sizes:
        data = pickle.dumps(full_record(n))
        for _ in range(3):  # caches filled, imports done, its template learned (if it may be)
            tango_stepinfo.loads(data)
            pickle.loads(data)
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        value = pickle.loads(data)
        plain = tracemalloc.get_traced_memory()[1] - base
        del value
        tracemalloc.stop()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        value = tango_stepinfo.loads(data)
        kept, peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        start = tracemalloc.get_traced_memory()[0]
        pickling._scan(data)
        scan = tracemalloc.get_traced_memory()[1] - start
        tracemalloc.reset_peak()
        start = tracemalloc.get_traced_memory()[0]
        matched = pickling._matched(data, data.count(0x94)) >= 0
        template = tracemalloc.get_traced_memory()[1] - start
        tracemalloc.stop()
        result, peak = (kept - base) / 1e3, (peak - base) / 1e3
        print(
            f"{n:>8}  {len(data):>12}  {result:>9.1f}  {peak:>7.1f}  {peak - result:>16.1f}"
            f"  {plain / 1e3:>20.1f}  {scan / 1e3:>12.1f}  "
            + (f"{template / 1e3:>16.1f}" if matched else f"{'(none)':>16}"),
            flush=True,
        )
        del value


def hostile(folder: Path) -> None:
    print("input                                      bytes   seconds  MB above base  outcome")
    for name, make in hostile_inputs().items():
        data = make()
        path = folder / "input.pickle"
        path.write_bytes(data)
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(path)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            print(f"{name:<42} {len(data):>7}  CRASHED ({done.returncode}) {done.stderr[-200:]}")
            continue
        took, memory, outcome = done.stdout.strip().split("\t")
        print(f"{name:<42} {len(data):>7}  {took:>7}  {memory:>13}  {outcome}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--ratio-only", action="store_true", help="skip the hostile inputs")
    parser.add_argument(
        "--memory",
        type=int,
        nargs="*",
        metavar="PACKAGES",
        help="instead: peak memory of loads on records with these many packages",
    )
    parser.add_argument(
        "--against",
        type=Path,
        metavar="PICKLING_PY",
        help="instead: an A/B in one process against this other pickling.py",
    )
    parser.add_argument("--scan", action="store_true", help="with --against: the scans only")
    parser.add_argument(
        "--records",
        choices=["one", "values", "shapes"],
        default="one",
        help="with --against: one record, 50 of its shape with other values, or 400 shapes",
    )
    args = parser.parse_args()
    print(f"Python {platform.python_version()} on {platform.platform()}", flush=True)
    if args.against is not None:
        against(args.against, args.rounds, args.scan, args.records)
        return
    if args.memory is not None:
        memory(args.memory or [70, 600, 5000])
        return
    ratio(args.rounds)
    if args.ratio_only:
        return
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        hostile(Path(folder))


if __name__ == "__main__":
    main()
