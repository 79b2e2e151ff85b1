"""Run records made on Dask workers, with the user's command handed down to them.

The client (the engine) starts a ``LocalCluster`` of two worker processes, registers a worker
plugin that sets ``TANGO_STEPINFO_COMMAND`` on every worker (those that join later too), and
runs steps there. Each worker builds its records itself, so they describe the worker: its host,
interpreter, working directory and packages, and the command the client handed down instead of
the worker's own command line. Records travel back to the client as objects (Dask pickles them),
as pickles loaded with the safe loader, or as JSON.

Run it::

    python examples/dask_workers.py

It needs ``distributed`` (``pip install distributed``); the test suite runs it.
"""

from __future__ import annotations

import os
import pickle
import shlex
from typing import Any, Callable, Dict, List

from dask.distributed import Client, LocalCluster, WorkerPlugin

import tango_stepinfo
from tango_stepinfo import EnvironmentMetadata, StepInfo


class HandDownCommand(WorkerPlugin):
    """Set ``TANGO_STEPINFO_COMMAND`` on every worker of the cluster, now and when it joins.

    :param command: the command line to record, shell-quoted (the client's own, typically).
    """

    def __init__(self, command: str) -> None:
        self.command = command

    def setup(self, worker: Any) -> None:
        """Called by Dask in each worker process, when registered and when a worker starts."""
        os.environ["TANGO_STEPINFO_COMMAND"] = self.command


def run_step(info: StepInfo, work: Callable[[], Any]) -> StepInfo:
    """Run ``work`` as the step ``info`` describes, on whichever process this is called in.

    The record was built before, so probing is not counted in the step's duration. A failure is
    recorded, not raised: the record says what happened.
    """
    try:
        with info.running():
            work()
    except Exception:
        pass  # recorded by running(): info.error holds the traceback
    return info


def new_step_on_worker(unique_id: str, fail: bool = False) -> StepInfo:
    """Build a record on the worker (probing the worker's machine and process), then run it."""
    info = StepInfo(unique_id=unique_id, step_class_name="Step", dependencies=set(), cacheable=True)
    return run_step(info, (lambda: 1 / 0) if fail else (lambda: None))


def new_step_as_pickle(unique_id: str) -> bytes:
    """Like :func:`new_step_on_worker`, returned as a pickle (as a store would keep it)."""
    return pickle.dumps(new_step_on_worker(unique_id))


def new_step_as_json(unique_id: str) -> Dict[str, Any]:
    """Like :func:`new_step_on_worker`, returned as the record's JSON dict."""
    return new_step_on_worker(unique_id).to_json_dict()


def run_on_dask(client: Client) -> List[StepInfo]:
    """Run steps on the workers of ``client``'s cluster and bring their records back."""
    command = EnvironmentMetadata().command  # the client's command line, redacted
    client.register_plugin(HandDownCommand(command))
    workers = sorted(client.scheduler_info()["workers"])
    records = []
    for i, worker in enumerate(workers):
        # Built on the worker, returned as an object.
        made = client.submit(new_step_on_worker, f"Made-{i}", workers=[worker], pure=False)
        records.append(made.result())
        # Built on the worker, returned as a pickle: loaded without running code.
        blob = client.submit(new_step_as_pickle, f"Pickled-{i}", workers=[worker], pure=False)
        records.append(tango_stepinfo.loads(blob.result()))
        # Built on the worker, returned as JSON.
        data = client.submit(new_step_as_json, f"Json-{i}", workers=[worker], pure=False)
        records.append(StepInfo.from_json_dict(data.result()))
    # Built here (probing this process), run there: the record keeps the client's environment.
    here = StepInfo(
        unique_id="Client-0", step_class_name="Step", dependencies=set(), cacheable=True
    )
    records.append(client.submit(run_step, here, lambda: None, pure=False).result())
    return records


def main() -> None:
    cluster = LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None, host="127.0.0.1"
    )
    with cluster, Client(cluster) as client:
        for info in run_on_dask(client):
            print(info.unique_id, info.state, shlex.quote(info.environment.command))


if __name__ == "__main__":
    main()
