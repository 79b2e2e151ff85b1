"""A real distributed engine: records made on dask.distributed worker processes and sent back.

One ``LocalCluster`` (two worker processes, one thread each, loopback only, no dashboard) for
the module, running ``examples/dask_workers.py`` as the docs show it.
"""

from __future__ import annotations

import importlib
import os
import pickle
import socket
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, Iterator, Tuple

import pytest
from dask.distributed import Client, LocalCluster

import tango_stepinfo
from tango_stepinfo import EnvironmentMetadata, StepInfo, StepState, TangoMetadata

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NANNY_COMMAND = "python -m engine run --password hunter2 'exp 1.jsonnet'"


@pytest.fixture(scope="module")
def dask() -> Iterator[Tuple[ModuleType, Client]]:
    """The example module and a client of a fresh two-process cluster."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(EXAMPLES))  # before the workers spawn: they inherit sys.path
        example = importlib.import_module("dask_workers")
        cluster = LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            dashboard_address=None,
            # No dashboard, but the scheduler still serves HTTP (health routes), by default on
            # port 8787: a free port instead, so that another cluster on this machine (another
            # test run) cannot make the start warn, which the test settings turn into an error.
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            host="127.0.0.1",
            env={"TANGO_STEPINFO_COMMAND": NANNY_COMMAND},  # as docs/distributed.rst shows
        )
        with cluster, Client(cluster) as client:
            yield example, client


def on_worker() -> Dict[str, Any]:
    return {"pid": os.getpid(), "command": os.environ.get("TANGO_STEPINFO_COMMAND")}


def test_workers_are_other_processes_given_the_nanny_environment(
    dask: Tuple[ModuleType, Client],
) -> None:
    example, client = dask
    facts = client.run(on_worker)
    assert len(facts) == 2
    assert all(f["pid"] != os.getpid() for f in facts.values())
    assert len({f["pid"] for f in facts.values()}) == 2
    assert "TANGO_STEPINFO_COMMAND" not in os.environ
    # Records made before the plugin is registered carry what Nanny(env=...) set.
    worker = sorted(facts)[0]
    info = client.submit(example.new_step_on_worker, "Nanny-0", workers=[worker], pure=False)
    assert info.result().environment.command == (
        "python -m engine run --password '***' 'exp 1.jsonnet'"
    )


def test_records_made_on_workers_and_sent_back(dask: Tuple[ModuleType, Client]) -> None:
    example, client = dask
    client_command = EnvironmentMetadata().command
    records = example.run_on_dask(client)
    assert [r.unique_id for r in records] == [
        "Made-0",
        "Pickled-0",
        "Json-0",
        "Made-1",
        "Pickled-1",
        "Json-1",
        "Client-0",
    ]
    for info in records:
        assert type(info) is StepInfo
        assert info.state is StepState.COMPLETED
        assert info.start_time is not None and info.end_time is not None
        assert info.start_time <= info.end_time
        # The worker's machine and process (on this machine, loopback cluster).
        assert info.platform.host == socket.gethostname()
        assert info.environment.executable == Path(sys.executable)
        assert info.environment.root == Path(os.getcwd())
        assert info.environment.tango == TangoMetadata()
        assert ("distributed", importlib.import_module("distributed").__version__) in (
            info.environment.packages or []
        )
        # The plugin handed the client's command down (it was set in the workers only).
        assert info.environment.command == client_command
    facts = client.run(on_worker)
    assert {f["command"] for f in facts.values()} == {client_command}


def test_records_sent_to_workers_come_back_equal(dask: Tuple[ModuleType, Client]) -> None:
    example, client = dask
    info = StepInfo("Sent-0", "Step", {"Dep-1"}, True, config={"lr": 0.1}, metadata={"x": [1]})
    for worker in sorted(client.scheduler_info()["workers"]):
        echoed = client.submit(lambda i: i, info, workers=[worker], pure=False).result()
        assert echoed == info and echoed is not info
        done = client.submit(example.run_step, info, lambda: None, workers=[worker], pure=False)
        back = done.result()
        assert back.state is StepState.COMPLETED and info.state is StepState.INCOMPLETE
        assert (back.platform, back.environment) == (info.platform, info.environment)


def test_a_failure_on_a_worker_is_recorded_with_its_traceback(
    dask: Tuple[ModuleType, Client],
) -> None:
    example, client = dask
    failed = client.submit(example.new_step_on_worker, "Fails-0", True, pure=False).result()
    assert failed.state is StepState.FAILED
    assert failed.error is not None
    assert failed.error.startswith("Traceback (most recent call last):\n")
    assert "dask_workers.py" in failed.error
    assert failed.error.endswith("ZeroDivisionError: division by zero\n")


def test_worker_made_pickles_load_with_the_safe_loader(dask: Tuple[ModuleType, Client]) -> None:
    example, client = dask
    blobs = [
        client.submit(example.new_step_as_pickle, f"P-{w}", workers=[w], pure=False).result()
        for w in sorted(client.scheduler_info()["workers"])
    ]
    for blob in blobs:
        assert isinstance(blob, bytes)
        info = tango_stepinfo.loads(blob)
        assert info == pickle.loads(blob)
        assert info.state is StepState.COMPLETED
