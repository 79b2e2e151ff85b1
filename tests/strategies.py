"""Hypothesis strategies for records: the one home for them."""

from __future__ import annotations

import copy
import copyreg
import datetime as dt
import io
import pickle
from pathlib import Path
from typing import Any, Dict

from hypothesis import strategies as st

from tango_stepinfo import (
    EnvironmentMetadata,
    GitMetadata,
    GpuMetadata,
    JobMetadata,
    PlatformMetadata,
    StepInfo,
    TangoMetadata,
)

texts = st.text(max_size=20)

# JSON values as json.loads returns them (no NaN/inf: they are not JSON).
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(texts, json_values, max_size=5)

# Fixed offsets from -23:59 to +23:59, with seconds, plus UTC both ways.
offsets = st.one_of(
    st.just(dt.timezone.utc),
    st.timedeltas(
        min_value=-dt.timedelta(hours=23, minutes=59, seconds=59),
        max_value=dt.timedelta(hours=23, minutes=59, seconds=59),
    ).map(lambda d: dt.timezone(dt.timedelta(seconds=int(d.total_seconds())))),
)


def _pytz_utc() -> st.SearchStrategy[dt.tzinfo]:
    import pytz

    return st.just(pytz.utc)


aware_times = st.datetimes(
    min_value=dt.datetime(1900, 1, 2),
    max_value=dt.datetime(2200, 12, 30),
    timezones=st.one_of(offsets, _pytz_utc()),
)
naive_times = st.datetimes(min_value=dt.datetime(1900, 1, 2), max_value=dt.datetime(2200, 12, 30))

paths = texts.filter(lambda t: "\x00" not in t).map(Path)
packages = st.lists(st.tuples(texts, texts), max_size=8)

git_metadata = st.builds(
    GitMetadata,
    commit=st.none() | texts,
    remote=st.none() | texts,
    branch=st.none() | texts,
    dirty=st.none() | st.booleans(),
)
tango_metadata = st.builds(TangoMetadata, version=texts)
gpu_metadata = st.builds(
    GpuMetadata,
    name=texts,
    uuid=st.none() | texts,
    bus=st.none() | texts,
    driver=st.none() | texts,
    memory=st.none() | st.integers(min_value=0, max_value=2**50),
)
job_metadata = st.builds(
    JobMetadata,
    system=texts,
    id=texts,
    name=st.none() | texts,
    url=st.none() | texts,
    attempt=st.none() | texts,
)
fallbacks = st.none() | st.dictionaries(texts, texts, min_size=1, max_size=3)

platform_metadata = st.builds(
    PlatformMetadata,
    operating_system=texts,
    cpu_count=st.none() | st.integers(min_value=0, max_value=4096),
    user=texts,
    host=texts,
    cpu_model=st.none() | texts,
    cpu_usable=st.none() | st.integers(min_value=1, max_value=4096),
    memory=st.none() | st.integers(min_value=0, max_value=2**50),
    gpus=st.none() | st.lists(gpu_metadata, max_size=3),
    container=st.none() | texts,
    fallbacks=fallbacks,
)
environment_metadata = st.builds(
    EnvironmentMetadata,
    python=texts,
    executable=paths,
    command=texts,
    root=paths,
    packages=st.none() | packages,
    git=st.none() | git_metadata,
    tango=st.none() | tango_metadata,
    implementation=st.none() | texts,
    job=st.none() | job_metadata,
    fallbacks=fallbacks,
)


@st.composite
def step_infos(draw: Any, times: st.SearchStrategy[dt.datetime] = aware_times) -> StepInfo:
    """Any StepInfo whose config and metadata are JSON values; never probes this machine."""
    return StepInfo(
        unique_id=draw(texts),
        step_class_name=draw(texts),
        dependencies=draw(st.sets(texts, max_size=5)),
        cacheable=draw(st.booleans()),
        step_name=draw(st.none() | texts),
        version=draw(st.none() | texts),
        start_time=draw(st.none() | times),
        end_time=draw(st.none() | times),
        error=draw(st.none() | texts),
        result_location=draw(st.none() | texts),
        config=draw(st.none() | json_objects),
        metadata=draw(st.none() | json_objects),
        platform=draw(platform_metadata),
        environment=draw(environment_metadata),
    )


DELETE = object()
"""Passed as ``value`` to :func:`changed`: delete the key instead."""


def changed(data: Dict[str, Any], path: str, value: Any) -> Dict[str, Any]:
    """A deep copy of a record's JSON with the value at dotted ``path`` replaced (or deleted)."""
    out = copy.deepcopy(data)
    *parents, last = path.split(".")
    target: Any = out
    for part in parents:
        target = target[part]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return out


def old_pickle(cls: type, state: Dict[str, Any], protocol: int = 4) -> bytes:
    """A pickle of a ``cls`` with exactly ``state``: what an older version would have written."""
    obj = object.__new__(cls)
    buffer = io.BytesIO()

    class OldPickler(pickle.Pickler):
        def reducer_override(self, o: Any) -> Any:
            if o is obj:
                return (copyreg.__newobj__, (cls,), state)
            return NotImplemented

    OldPickler(buffer, protocol=protocol).dump(obj)
    return buffer.getvalue()


def full_record(n_packages: int = 70) -> StepInfo:
    """A realistic, fully filled record (fixed values, no probing)."""
    utc = dt.timezone.utc
    return StepInfo(
        unique_id="TrainStep-abc123",
        step_class_name="TrainStep",
        dependencies={"DataStep-111", "TokenizeStep-222"},
        cacheable=True,
        step_name="train",
        version="002",
        start_time=dt.datetime(2024, 3, 10, 6, 59, 58, 123456, utc),
        end_time=dt.datetime(2024, 3, 10, 7, 42, 3, 654321, utc),
        error=None,
        result_location="/data/ws/cache/TrainStep-abc123",
        config={"type": "train", "lr": 0.001, "data": {"type": "ref", "ref": "DataStep-111"}},
        metadata={"owner": "nlp-team"},
        platform=PlatformMetadata(
            "Linux-5.15.0-x86_64-with-glibc2.35",
            32,
            "researcher",
            "gpu-7",
            cpu_model="Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz",
            cpu_usable=8,
            memory=68719476736,
            gpus=[
                GpuMetadata(
                    "NVIDIA GeForce RTX 2080 Ti",
                    "GPU-5d49bdf4-b8d0-21ce-9260-a89c66748d92",
                    "0000:1a:00.0",
                    "465.19.01",
                    11554717696,
                )
            ],
            container="docker",
            fallbacks=None,
        ),
        environment=EnvironmentMetadata(
            python="3.10.12",
            executable=Path("/opt/conda/bin/python"),
            command="tango run experiment.jsonnet -w /data/ws",
            root=Path("/home/researcher/project"),
            packages=[(f"package-{i:02d}", f"1.{i}.0") for i in range(n_packages)],
            git=GitMetadata(
                commit="3f9c2d1e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e",
                remote="https://github.com/example/project.git",
                branch="main",
                dirty=False,
            ),
            tango=TangoMetadata("1.3.2"),
            implementation="cpython",
            job=JobMetadata("slurm", "4242_7", "train", None, "0"),
            fallbacks=None,
        ),
    )
