"""Write the two example records that README.md's ``diff`` example compares.

``good.json`` is the run that worked: Tango 1.3.2's own record of a completed step
(``tests/data/tango_1_3_2/json/completed.json``), read and written again by tango_stepinfo.
``bad.json`` is a later run of the same step that did not: another Python, host and commit, one
package upgraded, one added, one removed. Both are decoded from JSON, never probed, so this script
writes the same bytes on every machine::

    python examples/records/make_records.py
    tango-stepinfo diff examples/records/good.json examples/records/bad.json
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from tango_stepinfo import StepInfo

HERE = Path(__file__).resolve().parent
TANGO_RECORD = HERE.parent.parent / "tests" / "data" / "tango_1_3_2" / "json" / "completed.json"


def good() -> StepInfo:
    """The completed run, as Tango 1.3.2 wrote it."""
    return StepInfo.from_json_dict(json.loads(TANGO_RECORD.read_text(encoding="utf-8")))


def bad() -> StepInfo:
    """The same step run again a week later, in a changed environment, failing."""
    info = good()
    week = dt.timedelta(days=7)
    assert info.start_time is not None
    info.start_time += week
    info.end_time = info.start_time + dt.timedelta(seconds=3)
    info.error = "RuntimeError: CUDA error: no kernel image is available for execution"
    info.platform.host = "gpu-node-12"
    env = info.environment
    env.python = "3.11.7"
    env.executable = Path("/opt/conda/envs/new/bin/python")
    packages = dict(env.packages or [])
    packages["torch"] = "2.2.0"
    packages["accelerate"] = "0.27.2"
    del packages["numpy"]
    env.packages = sorted(packages.items())
    assert env.git is not None
    env.git.commit = "9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c"
    return info


def write(info: StepInfo, path: Path) -> None:
    path.write_text(json.dumps(info.to_json_dict(), indent=2) + "\n", encoding="utf-8")


def main() -> None:
    write(good(), HERE / "good.json")
    write(bad(), HERE / "bad.json")


if __name__ == "__main__":
    main()
