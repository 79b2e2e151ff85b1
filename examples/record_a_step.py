"""Record one step as a workflow engine would, and print the record as JSON (README.md)."""

import datetime as dt
import json

from tango_stepinfo import StepInfo

info = StepInfo(
    unique_id="TrainStep-4f2c",
    step_class_name="TrainStep",
    dependencies={"DataStep-91ab"},
    cacheable=True,
    step_name="train",
    version="002",
    config={"type": "train", "lr": 0.001, "data": {"type": "ref", "ref": "DataStep-91ab"}},
)
info.start_time = dt.datetime.now(dt.timezone.utc)
# ... the step runs ...
info.end_time = dt.datetime.now(dt.timezone.utc)
print(info.state, info.duration)
print(json.dumps(info.to_json_dict(), indent=2))
