"""Write the pickles of tango_stepinfo 0.1.0 kept as test data forever.

Run once, with tango_stepinfo 0.1.0 installed, from this folder's parent's parent's parent:

    python tests/data/tango_stepinfo_0_1_0/make_pickles.py

Never regenerate these files with a later version: they stand for what 0.1.0 wrote, and every
later version must keep reading them (packaging keeps old releases' pickles the same way).
"""

from __future__ import annotations

import datetime as dt
import json
import pickle
from pathlib import Path

import tango_stepinfo
from tango_stepinfo import (
    EnvironmentMetadata,
    GitMetadata,
    PlatformMetadata,
    StepInfo,
    TangoMetadata,
)

HERE = Path(__file__).parent
UTC = dt.timezone.utc


def records() -> dict[str, StepInfo]:
    platform = PlatformMetadata("Linux-6.1.0-x86_64-with-glibc2.36", 2, "researcher", "node-3")
    environment = EnvironmentMetadata(
        python="3.11.7",
        executable=Path("/opt/venv/bin/python"),
        command="python -m engine run --api-key '***'",
        root=Path("/home/researcher/project"),
        packages=[("numpy", "1.26.4"), ("pytz", "2024.1"), ("tango-stepinfo", "0.1.0")],
        git=GitMetadata(
            commit="0123456789abcdef0123456789abcdef01234567",
            remote="https://github.com/example/project.git",
            branch="main",
            dirty=True,
        ),
        tango=TangoMetadata("0.1.0"),
    )
    start = dt.datetime(2024, 7, 1, 16, 0, 0, 123456, UTC)
    end = dt.datetime(2024, 7, 1, 16, 42, 3, 654321, UTC)
    common = {"step_class_name": "TrainStep", "platform": platform, "environment": environment}
    return {
        "completed": StepInfo(
            unique_id="TrainStep-abc",
            dependencies={"DataStep-1", "TokenizeStep-2"},
            cacheable=True,
            step_name="train",
            version="002",
            start_time=start,
            end_time=end,
            result_location="/ws/cache/TrainStep-abc",
            config={"type": "train", "lr": 0.001, "data": {"type": "ref", "ref": "DataStep-1"}},
            metadata={"owner": "nlp", "tags": ["a", "ü"]},
            **common,
        ),
        "failed": StepInfo(
            unique_id="TrainStep-def",
            dependencies=set(),
            cacheable=True,
            start_time=start,
            end_time=end,
            error="Traceback (most recent call last):\nValueError: boom",
            **common,
        ),
        "running": StepInfo(
            "TrainStep-ghi", dependencies={"x"}, cacheable=True, start_time=start, **common
        ),
        "uncacheable": StepInfo("Print-1", dependencies=set(), cacheable=False, **common),
    }


def main() -> None:
    assert tango_stepinfo.__version__ == "0.1.0", tango_stepinfo.__version__
    expected = {}
    for name, info in records().items():
        for protocol in range(6):
            (HERE / f"{name}.p{protocol}.pickle").write_bytes(pickle.dumps(info, protocol))
        expected[name] = info.to_json_dict()
    (HERE / "expected.json").write_text(json.dumps(expected, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
