"""Load many records at once: plain, with ``gc.freeze()`` + ``gc.disable()``, and with pickle.

Usage: ``python benchmarks/bulk_load.py [COUNT]`` (default 100,000 records of 70 packages). Prints
wall and CPU seconds for each way; see ``docs/performance.rst`` for what they mean.
"""

from __future__ import annotations

import gc
import json
import pickle
import sys
import time
from typing import Any, Callable, List

import tango_stepinfo
from tango_stepinfo import StepInfo


def _record() -> StepInfo:
    info = StepInfo(unique_id="step-1", step_class_name="Step", dependencies={"a"}, cacheable=True)
    info.environment.packages = [(f"package-{i:03d}", f"{i}.{i % 7}.0") for i in range(70)]
    info.config = {"type": "train", "lr": 0.001, "layers": [64, 64, 32]}
    return info


def _timed(name: str, load: Callable[[], List[Any]]) -> None:
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    kept = load()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{name:<44} {len(kept):>7} records  {wall:6.2f} s wall  {cpu:6.2f} s CPU")
    del kept
    gc.collect()


def _frozen(load: Callable[[], List[Any]]) -> Callable[[], List[Any]]:
    def run() -> List[Any]:
        gc.freeze()  # what is alive now is never scanned again by the collector
        gc.disable()  # no collection while the new records pile up
        try:
            return load()
        finally:
            gc.enable()
            gc.unfreeze()

    return run


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    lines = [json.dumps(_record().to_json_dict())] * count
    blobs = [pickle.dumps(_record(), protocol=pickle.HIGHEST_PROTOCOL)] * count

    def from_json() -> List[Any]:
        return [StepInfo.from_json_dict(json.loads(line)) for line in lines]

    def from_pickle() -> List[Any]:
        return [pickle.loads(blob) for blob in blobs]

    def from_safe_pickle() -> List[Any]:
        return [tango_stepinfo.loads(blob) for blob in blobs]

    _timed("JSON lines, gc on", from_json)
    _timed("JSON lines, gc.freeze() + gc.disable()", _frozen(from_json))
    _timed("pickle.loads, gc on", from_pickle)
    _timed("pickle.loads, gc.freeze() + gc.disable()", _frozen(from_pickle))
    _timed("tango_stepinfo.loads, gc.freeze() + disable", _frozen(from_safe_pickle))


if __name__ == "__main__":
    main()
