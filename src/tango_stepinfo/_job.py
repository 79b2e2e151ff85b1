"""The batch job or CI run this process belongs to, read from the environment variables each
system sets for its jobs.

The first system that matches wins, in this order:

================== ===========================================================================
system             when, and what is read
================== ===========================================================================
``slurm``          ``$SLURM_JOB_ID``: id (``$SLURM_ARRAY_JOB_ID_$SLURM_ARRAY_TASK_ID`` for a
                   task of a job array), name ``$SLURM_JOB_NAME``, attempt
                   ``$SLURM_RESTART_COUNT``
``beaker``         ``$BEAKER_JOB_ID``: id
``github-actions`` ``$GITHUB_ACTIONS`` is ``true`` and ``$GITHUB_RUN_ID`` set: id, attempt
                   ``$GITHUB_RUN_ATTEMPT``, name ``$GITHUB_WORKFLOW``, url
                   ``$GITHUB_SERVER_URL/$GITHUB_REPOSITORY/actions/runs/$GITHUB_RUN_ID``
``gitlab-ci``      ``$GITLAB_CI`` is ``true`` and ``$CI_JOB_ID`` set: id, name ``$CI_JOB_NAME``,
                   url ``$CI_JOB_URL``
``pbs``            ``$PBS_JOBID``: id
``lsf``            ``$LSB_JOBID``: id (``$LSB_JOBID[$LSB_JOBINDEX]`` for an element of a job
                   array, as ``bjobs`` names it)
``sge``            ``$JOB_ID`` with ``$SGE_TASK_ID`` set (by every job, ``undefined`` outside
                   an array; ``$SGE_ROOT`` is set on login nodes too): id
                   (``$JOB_ID.$SGE_TASK_ID`` for an array task, as ``qdel`` names it)
================== ===========================================================================

Empty variables count as unset. URLs pass through :func:`tango_stepinfo.redact.redact_url`.
Reading the environment cannot fail, so this probe never falls back: no job is ``None``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Mapping, Optional, Tuple

from . import _fallbacks
from .redact import redact_url

if TYPE_CHECKING:  # type aliases only for the checker: subscripting typing costs at import
    JobFacts = Tuple[str, str, Optional[str], Optional[str], Optional[str]]
    """``(system, id, name, url, attempt)``, the fields of ``JobMetadata`` in order."""


def _slurm(env: Mapping[str, str]) -> Optional[JobFacts]:
    job = env.get("SLURM_JOB_ID")
    if not job:
        return None
    array, task = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        job = f"{array}_{task}"
    return (
        "slurm",
        job,
        env.get("SLURM_JOB_NAME") or None,
        None,
        env.get("SLURM_RESTART_COUNT") or None,
    )


def _beaker(env: Mapping[str, str]) -> Optional[JobFacts]:
    job = env.get("BEAKER_JOB_ID")
    return ("beaker", job, None, None, None) if job else None


def _github(env: Mapping[str, str]) -> Optional[JobFacts]:
    run = env.get("GITHUB_RUN_ID")
    if env.get("GITHUB_ACTIONS") != "true" or not run:
        return None
    server, repo = env.get("GITHUB_SERVER_URL"), env.get("GITHUB_REPOSITORY")
    url = f"{server.rstrip('/')}/{repo}/actions/runs/{run}" if server and repo else None
    name, attempt = env.get("GITHUB_WORKFLOW") or None, env.get("GITHUB_RUN_ATTEMPT") or None
    return "github-actions", run, name, redact_url(url) if url else None, attempt


def _gitlab(env: Mapping[str, str]) -> Optional[JobFacts]:
    job = env.get("CI_JOB_ID")
    if env.get("GITLAB_CI") != "true" or not job:
        return None
    url = env.get("CI_JOB_URL")
    return "gitlab-ci", job, env.get("CI_JOB_NAME") or None, redact_url(url) if url else None, None


def _id_only(env: Mapping[str, str]) -> Optional[JobFacts]:
    if env.get("PBS_JOBID"):
        return "pbs", env["PBS_JOBID"], None, None, None  # "1234[7].server" for an array task
    job = env.get("LSB_JOBID")
    if job:
        index = env.get("LSB_JOBINDEX", "0")  # 0 outside an array; elements share LSB_JOBID
        return "lsf", job if index in ("", "0") else f"{job}[{index}]", None, None, None
    # SGE_TASK_ID is set by sge_execd in every job ("undefined" outside an array), and only
    # there: SGE_ROOT is in every shell of a login node, and JOB_ID too common a name.
    job, task = env.get("JOB_ID"), env.get("SGE_TASK_ID")
    if job and task:
        return "sge", job if task == "undefined" else f"{job}.{task}", None, None, None
    return None


def job() -> Optional[JobFacts]:
    """The batch job or CI run of this process; ``None`` outside any."""
    _fallbacks.note("job", None)
    env = os.environ
    return _slurm(env) or _beaker(env) or _github(env) or _gitlab(env) or _id_only(env)
