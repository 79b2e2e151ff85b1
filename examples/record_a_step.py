"""Record one step as a workflow engine would, and print the record as JSON (README.md)."""

import json

from tango_stepinfo import StepInfo

# Built before the step starts: probing the machine never lands inside the step's duration.
info = StepInfo(
    unique_id="TrainStep-4f2c",
    step_class_name="TrainStep",
    dependencies={"DataStep-91ab"},
    cacheable=True,
    step_name="train",
    version="002",
    config={"type": "train", "lr": 0.001, "data": {"type": "ref", "ref": "DataStep-91ab"}},
)
with info.running():  # start time now; end time when the block ends, or the error it raised
    ...  # the step runs
print(info.state, info.duration)
print(json.dumps(info.to_json_dict(), indent=2))
