"""EnvironmentMetadata.variables, through fresh processes with a controlled environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Optional

import pytest

from tango_stepinfo import EnvironmentMetadata, StepInfo, _variables

RECORD = """
import json, sys, tango_stepinfo
info = tango_stepinfo.StepInfo("a", "A", set(), True)
print(json.dumps(info.to_json_dict()["environment"].get("variables", "missing")))
"""


def run_python(
    tmp_path: Path, script: str, extra: Dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter whose environment is only ``extra`` plus basics."""
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "GIT_CEILING_DIRECTORIES": str(tmp_path.parent),
        "LC_ALL": "C.UTF-8",
        **extra,
    }
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def variables_of(tmp_path: Path, extra: Dict[str, str]) -> Optional[Dict[str, Any]]:
    done = run_python(tmp_path, RECORD, extra)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_default_list_when_unset(tmp_path: Path) -> None:
    found = variables_of(
        tmp_path,
        {
            "CUDA_VISIBLE_DEVICES": "0,1",
            "OMP_NUM_THREADS": "4",
            "PYTHONHASHSEED": "0",
            "TOKENIZERS_PARALLELISM": "false",
            "UNRELATED": "x",
            "CUDA_HOME": "/usr/local/cuda",
        },
    )
    assert found == {
        "CUDA_VISIBLE_DEVICES": "0,1",
        "OMP_NUM_THREADS": "4",
        "PYTHONHASHSEED": "0",
        "TOKENIZERS_PARALLELISM": "false",
    }


def test_default_list_with_none_set_is_empty(tmp_path: Path) -> None:
    assert variables_of(tmp_path, {}) == {}


def test_default_list_holds_the_issue_names() -> None:
    for name in (
        "CUDA_VISIBLE_DEVICES",
        "CUDA_DEVICE_ORDER",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "PYTHONHASHSEED",
        "TOKENIZERS_PARALLELISM",
        "CUBLAS_WORKSPACE_CONFIG",
    ):
        assert name in _variables.DEFAULT
    assert not any(set("*?[") & set(name) for name in _variables.DEFAULT)


def test_patterns_choose_by_name(tmp_path: Path) -> None:
    found = variables_of(
        tmp_path,
        {
            "TANGO_STEPINFO_VARIABLES": " MY_*, EXACT ,, SEED? ",
            "MY_A": "1",
            "MY_B": "two words",
            "EXACT": "e",
            "SEED1": "s",
            "SEED12": "no",
            "my_lower": "case matters",
            "OMP_NUM_THREADS": "4",  # not in the patterns: the default list no longer applies
        },
    )
    assert found == {"EXACT": "e", "MY_A": "1", "MY_B": "two words", "SEED1": "s"}


@pytest.mark.parametrize("setting", ["", " ", ", ,"])
def test_empty_setting_records_nothing(tmp_path: Path, setting: str) -> None:
    found = variables_of(tmp_path, {"TANGO_STEPINFO_VARIABLES": setting, "OMP_NUM_THREADS": "4"})
    assert found is None


def test_secret_names_are_never_recorded(tmp_path: Path) -> None:
    secrets = {
        "HF_TOKEN": "hf_x",
        "GITHUB_TOKEN": "x",
        "HFTOKEN": "x",
        "PGPASSWORD": "x",
        "MYSQL_PWD": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "WANDB_API_KEY": "x",
        "SSH_KEY": "x",
        "DB_CREDENTIALS": "x",
        "MY_AUTH": "x",
    }
    kept = {"TOKENIZERS_PARALLELISM": "false", "MAX_TOKENS": "5", "KEYBOARD": "us", "PWD_X": "y"}
    found = variables_of(tmp_path, {"TANGO_STEPINFO_VARIABLES": "*", **secrets, **kept})
    assert found is not None
    assert not set(secrets) & set(found)
    for name, value in kept.items():
        assert found[name] == value


def test_values_are_redacted_by_shape(tmp_path: Path) -> None:
    found = variables_of(
        tmp_path,
        {
            "TANGO_STEPINFO_VARIABLES": "MY_*",
            "MY_URL": "https://user:s3cret@example.com/x",
            "MY_GH": "ghp_" + "a" * 36,
            "MY_AWS": "AKIA" + "B" * 16,
            "MY_PLAIN": "https://example.com/x",
        },
    )
    assert found == {
        "MY_AWS": "***",
        "MY_GH": "***",
        "MY_PLAIN": "https://example.com/x",
        "MY_URL": "https://example.com/x",
    }


PER_PROCESS = """
import json, os, tango_stepinfo
first = tango_stepinfo.StepInfo("a", "A", set(), True).environment.variables
os.environ["OMP_NUM_THREADS"] = "8"
second = tango_stepinfo.EnvironmentMetadata().variables
second["OMP_NUM_THREADS"] = "mutated"  # a fresh copy: the next record does not see this
third = tango_stepinfo.EnvironmentMetadata().variables
tango_stepinfo.clear_cache()
fourth = tango_stepinfo.EnvironmentMetadata().variables
info = tango_stepinfo.StepInfo("b", "B", set(), True)
os.environ["OMP_NUM_THREADS"] = "16"
info.refresh()
print(json.dumps([first, third, fourth, info.environment.variables]))
"""


def test_read_once_per_process(tmp_path: Path) -> None:
    done = run_python(tmp_path, PER_PROCESS, {"OMP_NUM_THREADS": "4"})
    assert done.returncode == 0, done.stderr
    first, third, fourth, refreshed = json.loads(done.stdout)
    assert first == third == {"OMP_NUM_THREADS": "4"}
    assert fourth == {"OMP_NUM_THREADS": "8"}
    assert refreshed == {"OMP_NUM_THREADS": "16"}


def test_json_round_trip_and_tango_compat() -> None:
    env = EnvironmentMetadata(
        "3.11.7",
        Path("/usr/bin/python3"),
        "run.py",
        Path("/src"),
        [],
        None,
        None,
        implementation="cpython",
        job=None,
        variables={"OMP_NUM_THREADS": "4", "CUDA_VISIBLE_DEVICES": "0"},
        privacy=None,
        fallbacks=None,
    )
    data = env.to_json_dict()
    assert data["variables"] == {"CUDA_VISIBLE_DEVICES": "0", "OMP_NUM_THREADS": "4"}
    assert list(data["variables"]) == sorted(data["variables"])
    assert EnvironmentMetadata.from_json_dict(data) == env
    assert "variables" not in env.to_json_dict(tango_compat=True)
    old = {k: v for k, v in data.items() if k not in ("variables", "privacy", "fallbacks")}
    assert EnvironmentMetadata.from_json_dict(old).variables is None  # written before 0.2.0
    info = StepInfo("a", "A", set(), True, environment=env)
    assert StepInfo.from_json_dict(info.to_json_dict()).environment.variables == env.variables


def test_environment_only_credential_names_are_never_recorded(tmp_path: Path) -> None:
    # is_secret_name keeps these (``--pw``, ``--keys`` on a command line), but in an
    # environment they hold a password or keys: sshpass -e reads SSHPASS, ldap tools a *_PW
    secrets = {"SSHPASS": "x", "LDAP_BIND_PW": "x", "REDIS_PW": "x", "APP_KEYS": "a,b"}
    kept = {"PWD": "/w", "KEYBOARD": "us", "KEYS_DIR": "/k"}
    found = variables_of(tmp_path, {"TANGO_STEPINFO_VARIABLES": "*", **secrets, **kept})
    assert found is not None
    assert not set(secrets) & set(found)
    for name, value in kept.items():
        assert found[name] == value
