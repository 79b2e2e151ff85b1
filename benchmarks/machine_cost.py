"""What the machine, GPU and job facts add to the first record of a process, and to later ones.

Each run is a fresh process (byte-code cached in a temporary folder) that times, with
``perf_counter``:

- ``first``: importing ``_machine``, ``_gpu`` and ``_job`` and probing every fact they give once
  (CPU model, usable CPUs, memory, container, GPUs, job, implementation), as the first record
  does inside ``_probe._probe_fixed_facts``;
- ``later``: the default factories of the new fields of a later record (cached facts, fresh
  ``GpuMetadata``/``JobMetadata``, and both ``fallbacks`` fields), per record.

and, to tell the machine's load, a whole later ``StepInfo`` and the baseline import of
``benchmarks/bench.py`` (12.5 ms on the quiet development machine). Prints the medians over
``--runs`` processes (default 21)::

    python benchmarks/machine_cost.py
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

WORKER = r"""
import json, sys, time, timeit
import tango_stepinfo
from tango_stepinfo import metadata
t0 = time.perf_counter()
from tango_stepinfo import _gpu, _job, _machine
groups = _machine.cgroups()
_machine.cpu_model(); _machine.cpu_usable(groups); _machine.memory(groups)
_machine.container(groups)
_gpu.start()(); _job.job(); sys.implementation.name
first = time.perf_counter() - t0
tango_stepinfo.PlatformMetadata()  # fill the cache
fields = [f for cls in (metadata.PlatformMetadata, metadata.EnvironmentMetadata)
          for f in cls.__dataclass_fields__.values() if f.metadata.get("since") == "0.2.0"]
factories = [f.default_factory for f in fields]
def later():
    for factory in factories:
        factory()
n = 20000
later_s = min(timeit.repeat(later, number=n, repeat=5)) / n
new = lambda: tango_stepinfo.StepInfo("a", "A", set(), True)
record = min(timeit.repeat(new, number=2000, repeat=5)) / 2000
print(json.dumps({"first": first, "later": later_s, "record": record,
                  "fields": [f.name for f in fields]}))
"""

BASELINE = r"""
import time
t0 = time.perf_counter()
import dataclasses, datetime, enum, pathlib, typing, pytz
print(time.perf_counter() - t0)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    src = str(Path(__file__).resolve().parent.parent / "src")
    env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # byte-code cached, as in real use
    env["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="machine-cost-pycache-")
    results = []
    for _ in range(args.runs + 1):  # the first run warms the byte-code cache
        done = subprocess.run(
            [sys.executable, "-c", WORKER], env=env, capture_output=True, text=True, check=True
        )
        results.append(json.loads(done.stdout))
    results = results[1:]
    baseline = []
    for _ in range(args.runs):
        done = subprocess.run(
            [sys.executable, "-c", BASELINE], env=env, capture_output=True, text=True, check=True
        )
        baseline.append(float(done.stdout))
    first = statistics.median(r["first"] for r in results) * 1e3
    later = statistics.median(r["later"] for r in results) * 1e6
    print(f"fields: {', '.join(results[0]['fields'])}")
    print(f"first record: {first:.3f} ms (median of {args.runs} processes)")
    record = statistics.median(r["record"] for r in results) * 1e6
    print(f"each later record: {later:.2f} us for the new fields' default factories")
    print(f"  (a whole later StepInfo: {record:.1f} us)")
    base = statistics.median(baseline) * 1e3
    print(f"baseline import (dataclasses, datetime, enum, pathlib, typing, pytz): {base:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
