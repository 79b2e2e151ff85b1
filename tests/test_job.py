"""The job probe: each batch system and CI service, read from its environment variables."""

from __future__ import annotations

import sys
from typing import Dict, Iterator, Optional, Tuple

import pytest

import tango_stepinfo
from tango_stepinfo import EnvironmentMetadata, JobMetadata, _fallbacks, _job

JOB_VARIABLES = (
    "SLURM_JOB_ID",
    "SLURM_ARRAY_JOB_ID",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_JOB_NAME",
    "SLURM_RESTART_COUNT",
    "BEAKER_JOB_ID",
    "GITHUB_ACTIONS",
    "GITHUB_RUN_ID",
    "GITHUB_RUN_ATTEMPT",
    "GITHUB_WORKFLOW",
    "GITHUB_SERVER_URL",
    "GITHUB_REPOSITORY",
    "GITLAB_CI",
    "CI_JOB_ID",
    "CI_JOB_NAME",
    "CI_JOB_URL",
    "PBS_JOBID",
    "LSB_JOBID",
    "JOB_ID",
    "SGE_TASK_ID",
    "SGE_ROOT",
    "LSB_JOBINDEX",
)

GITHUB = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_RUN_ID": "1658821493",
    "GITHUB_RUN_ATTEMPT": "2",
    "GITHUB_WORKFLOW": "CI",
    "GITHUB_SERVER_URL": "https://github.com",
    "GITHUB_REPOSITORY": "octo-org/octo-repo",
}
GITLAB = {
    "GITLAB_CI": "true",
    "CI_JOB_ID": "50",
    "CI_JOB_NAME": "test:unit",
    "CI_JOB_URL": "https://gitlab.example.com/gitlab-org/gitlab/-/jobs/50",
}
Facts = Tuple[str, str, Optional[str], Optional[str], Optional[str]]
GITHUB_FACTS: Facts = (
    "github-actions",
    "1658821493",
    "CI",
    "https://github.com/octo-org/octo-repo/actions/runs/1658821493",
    "2",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in JOB_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    tango_stepinfo.clear_cache()
    yield
    tango_stepinfo.clear_cache()


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({}, None),
        ({"SLURM_JOB_ID": "4242"}, ("slurm", "4242", None, None, None)),
        (
            {"SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "train", "SLURM_RESTART_COUNT": "1"},
            ("slurm", "4242", "train", None, "1"),
        ),
        (
            {"SLURM_JOB_ID": "4250", "SLURM_ARRAY_JOB_ID": "4242", "SLURM_ARRAY_TASK_ID": "7"},
            ("slurm", "4242_7", None, None, None),
        ),
        ({"BEAKER_JOB_ID": "01HXYZ"}, ("beaker", "01HXYZ", None, None, None)),
        (GITHUB, GITHUB_FACTS),
        ({**GITHUB, "GITHUB_ACTIONS": "false"}, None),
        (
            {**GITHUB, "GITHUB_SERVER_URL": "https://user:ghp_secret@ghe.example.com"},
            (
                "github-actions",
                "1658821493",
                "CI",
                "https://ghe.example.com/octo-org/octo-repo/actions/runs/1658821493",
                "2",
            ),
        ),
        (
            GITLAB,
            (
                "gitlab-ci",
                "50",
                "test:unit",
                "https://gitlab.example.com/gitlab-org/gitlab/-/jobs/50",
                None,
            ),
        ),
        ({"PBS_JOBID": "1234.pbsserver"}, ("pbs", "1234.pbsserver", None, None, None)),
        ({"LSB_JOBID": "5678"}, ("lsf", "5678", None, None, None)),
        ({"JOB_ID": "91", "SGE_TASK_ID": "undefined"}, ("sge", "91", None, None, None)),
        ({"JOB_ID": "91"}, None),  # JOB_ID alone is too common a name
        ({"SLURM_JOB_ID": ""}, None),  # empty is unset
        # First match wins: a CI job submitting to Slurm, Slurm inside Beaker...
        ({**GITHUB, "SLURM_JOB_ID": "1"}, ("slurm", "1", None, None, None)),
        ({"BEAKER_JOB_ID": "b", "SLURM_JOB_ID": "1"}, ("slurm", "1", None, None, None)),
        ({**GITHUB, "BEAKER_JOB_ID": "b"}, ("beaker", "b", None, None, None)),
        ({**GITHUB, **GITLAB}, GITHUB_FACTS),
        (
            {**GITLAB, "PBS_JOBID": "1"},
            ("gitlab-ci", "50", "test:unit", GITLAB["CI_JOB_URL"], None),
        ),
        ({"PBS_JOBID": "1", "LSB_JOBID": "2"}, ("pbs", "1", None, None, None)),
    ],
)
def test_job_systems(
    monkeypatch: pytest.MonkeyPatch, variables: Dict[str, str], expected: Optional[Facts]
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert _job.job() == expected
    assert _fallbacks.collect(["job"]) is None


def test_environment_metadata_job(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in GITLAB.items():
        monkeypatch.setenv(name, value)
    env = EnvironmentMetadata()
    assert env.job == JobMetadata(
        "gitlab-ci", "50", "test:unit", "https://gitlab.example.com/gitlab-org/gitlab/-/jobs/50"
    )
    assert env.implementation == sys.implementation.name
    data = env.to_json_dict()
    assert data["job"] == {
        "system": "gitlab-ci",
        "id": "50",
        "name": "test:unit",
        "url": "https://gitlab.example.com/gitlab-org/gitlab/-/jobs/50",
        "attempt": None,
    }
    assert "job" not in env.to_json_dict(tango_compat=True)
    assert EnvironmentMetadata.from_json_dict(data) == env
    monkeypatch.delenv("GITLAB_CI")
    assert EnvironmentMetadata().job == env.job  # fixed for the process...
    tango_stepinfo.clear_cache()
    assert EnvironmentMetadata().job is None  # ... until clear_cache()


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        # A login node of an SGE cluster: settings.sh exports SGE_ROOT in every shell, and any
        # tool may set JOB_ID. Only sge_execd sets SGE_TASK_ID, in every job ("undefined" outside
        # an array: the ENVIRONMENTAL VARIABLES of qsub(1)).
        ({"JOB_ID": "91", "SGE_ROOT": "/opt/sge"}, None),
        # An array task: qsub(1) gives its index in SGE_TASK_ID; tasks are named
        # <job>.<task> (sge_types(1), job_task_list), as qdel and qalter take them.
        ({"JOB_ID": "91", "SGE_TASK_ID": "3", "SGE_ROOT": "/opt/sge"}, ("sge", "91.3")),
        ({"JOB_ID": "91", "SGE_TASK_ID": "undefined"}, ("sge", "91")),
        # LSF: every element of an array shares LSB_JOBID; LSB_JOBINDEX is its index, 0 for a
        # job outside an array (IBM LSF docs, "Passing arguments on the command line"); bjobs
        # names an element <job>[<index>].
        ({"LSB_JOBID": "5678", "LSB_JOBINDEX": "7"}, ("lsf", "5678[7]")),
        ({"LSB_JOBID": "5678", "LSB_JOBINDEX": "0"}, ("lsf", "5678")),
    ],
)
def test_array_tasks_and_login_nodes(
    monkeypatch: pytest.MonkeyPatch,
    variables: Dict[str, str],
    expected: Optional[Tuple[str, str]],
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    facts = _job.job()
    assert (facts if facts is None else facts[:2]) == expected
