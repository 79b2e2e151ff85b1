"""Anonymous records: the probes in fresh processes with a controlled environment, and
``anonymize()`` on records already made."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import tango_stepinfo
from tango_stepinfo import (
    EnvironmentMetadata,
    GitMetadata,
    GpuMetadata,
    InvalidSettingError,
    JobMetadata,
    PlatformMetadata,
    StepInfo,
    TangoMetadata,
    anonymize,
)
from tango_stepinfo._privacy import WITHHELD

from .conftest import TANGO_DATA, import_fails
from .strategies import identity_texts, step_infos

GIT = shutil.which("git")

RECORD = """
import json, sys, tango_stepinfo
from tango_stepinfo import _fallbacks
info = tango_stepinfo.StepInfo("a", "A", set(), True)
_fallbacks.note("user", "no passwd entry for uid 1234; recorded the uid")
_fallbacks.note("gpus", "cannot read /proc/driver/nvidia/gpus")
out = info.to_json_dict()
out["reasons"] = _fallbacks.collect(["user", "gpus"])
print(json.dumps(out))
"""

ARGS = ("/home/alice/proj/train.py", "--out=/home/alice/runs/7", "DATA=/srv/alice/d", "-v", "rel/x")


def hidden(key: str, value: str) -> str:
    return "anon:" + hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()[:12]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git checkout with an ``origin``, in which the records are made."""
    if GIT is None:
        pytest.skip("the git CLI makes the test repository")
    where = tmp_path / "alice-project"
    where.mkdir()
    for args in (
        ["init", "-q", "-b", "main"],
        ["remote", "add", "origin", "https://user:pw@git.example.com/alice/secret-paper.git"],
    ):
        subprocess.run([GIT, *args], cwd=where, env=git_env(tmp_path), check=True)
    return where


def git_env(tmp_path: Path) -> Dict[str, str]:
    empty = tmp_path / "empty-gitconfig"
    empty.write_text("")
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "GIT_CONFIG_GLOBAL": str(empty),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CEILING_DIRECTORIES": str(tmp_path.parent),
        "LC_ALL": "C.UTF-8",
    }


def record(repo: Path, extra: Dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RECORD, *ARGS],
        cwd=repo,
        env={**git_env(repo.parent), **extra},
        capture_output=True,
        text=True,
        check=False,
    )


def made(repo: Path, extra: Dict[str, str]) -> Dict[str, Any]:
    done = record(repo, extra)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_full_is_the_default(repo: Path) -> None:
    for extra in ({}, {"TANGO_STEPINFO_PRIVACY": "full"}, {"TANGO_STEPINFO_PRIVACY": " "}):
        out = made(repo, {"TANGO_STEPINFO_PRIVACY_KEY": "ignored in full mode", **extra})
        env = out["environment"]
        assert env["privacy"] is None
        assert env["root"] == str(repo)
        assert env["git"]["remote"] == "https://git.example.com/alice/secret-paper.git"
        assert env["executable"] == sys.executable
        assert "/home/alice/proj/train.py" in env["command"]
        assert out["reasons"]["user"] == "no passwd entry for uid 1234; recorded the uid"


def test_anonymous_hides_who_and_where(repo: Path) -> None:
    full = made(repo, {})
    out = made(repo, {"TANGO_STEPINFO_PRIVACY": "Anonymous", "TANGO_STEPINFO_VARIABLES": "MY_*"})
    env, platform = out["environment"], out["platform"]
    assert (platform["user"], platform["host"]) == ("anonymous", "anonymous")
    assert env["root"] == "anonymous"
    assert env["git"]["remote"] == "anonymous"
    assert env["privacy"] == "anonymous"
    assert env["executable"] == ".../" + Path(sys.executable).name
    assert env["command"] == "-c .../train.py --out=.../7 DATA=.../d -v rel/x"
    text = json.dumps(out)
    for secret in ("alice", str(repo), full["platform"]["host"], "secret-paper"):
        assert secret not in text
    assert out["reasons"] == {
        "gpus": "cannot read /proc/driver/nvidia/gpus",
        "user": WITHHELD,  # the reason could name the uid or the user
    }
    assert platform["operating_system"] == full["platform"]["operating_system"]


def test_a_key_gives_stable_pseudonyms(repo: Path) -> None:
    full = made(repo, {})
    extra = {"TANGO_STEPINFO_PRIVACY": "anonymous", "TANGO_STEPINFO_PRIVACY_KEY": "k3y"}
    one, two = made(repo, extra), made(repo, extra)
    assert one["platform"] == two["platform"]
    assert one["platform"]["user"] == hidden("k3y", full["platform"]["user"])
    assert one["platform"]["host"] == hidden("k3y", full["platform"]["host"])
    assert one["environment"]["root"] == hidden("k3y", str(repo))
    assert one["environment"]["git"]["remote"] == hidden(
        "k3y", "https://git.example.com/alice/secret-paper.git"
    )
    other = made(repo, {**extra, "TANGO_STEPINFO_PRIVACY_KEY": "another"})
    assert other["platform"]["user"] != one["platform"]["user"]


@pytest.mark.parametrize("mode", ["anon", "none", "off", "Anonymised"])
def test_an_unknown_mode_is_an_error_at_the_first_record(repo: Path, mode: str) -> None:
    done = record(repo, {"TANGO_STEPINFO_PRIVACY": mode})
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        "tango_stepinfo.errors.InvalidSettingError: TANGO_STEPINFO_PRIVACY: unknown privacy mode"
        f" {mode!r}; expected 'full' or 'anonymous'"
    )
    imported = subprocess.run(
        [sys.executable, "-c", "import tango_stepinfo"],
        env={**git_env(repo.parent), "TANGO_STEPINFO_PRIVACY": mode},
        check=False,
    )
    assert imported.returncode == 0  # an error at the first record, not at import


def test_unknown_mode_error_type() -> None:
    assert issubclass(InvalidSettingError, ValueError)


# --- anonymize() ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Job:
    name: str
    url: Optional[str]


@dataclasses.dataclass
class WithJob:
    job: Job
    platform: PlatformMetadata


def full_record() -> StepInfo:
    return StepInfo(
        unique_id="TrainStep-1",
        step_class_name="TrainStep",
        dependencies={"DataStep-1"},
        cacheable=True,
        step_name="train",
        start_time=dt.datetime(2024, 3, 10, 6, 59, 58, tzinfo=dt.timezone.utc),
        config={"data": "/home/alice/data"},  # the user's own data: never changed
        platform=PlatformMetadata(
            "Linux", 8, "alice", "alice-laptop", None, None, None, None, None, fallbacks=None
        ),
        environment=EnvironmentMetadata(
            "3.11.7",
            Path("/home/alice/venv/bin/python"),
            "/home/alice/proj/train.py --out=/home/alice/runs 'two words'"
            " 'sh -c \"/home/alice/x\"'",
            Path("/home/alice/proj"),
            [("torch", "2.2.0")],
            GitMetadata("3f9c2d1e", "https://github.com/alice/paper.git", "main", True, "ab" * 32),
            TangoMetadata("0.2.0"),
            implementation="cpython",
            job=JobMetadata("github-actions", "42", "ci", "https://github.com/alice/x/runs/42"),
            variables={"OMP_NUM_THREADS": "4", "HF_HOME": "/home/alice/.cache/hf"},
            privacy=None,
            fallbacks={"root": "the working directory was deleted; used /home/alice/proj"},
        ),
    )


def test_anonymize_a_step_info() -> None:
    info = full_record()
    before = copy.deepcopy(info)
    out = anonymize(info)
    assert info == before  # the record given is left as it is
    assert (out.platform.user, out.platform.host) == ("anonymous", "anonymous")
    env = out.environment
    assert env.root == Path("anonymous")
    assert env.executable == Path(".../python")
    assert env.command == """.../train.py --out=.../runs 'two words' 'sh -c ".../x"'"""
    assert env.git is not None and env.git.remote == "anonymous"
    assert (env.git.commit, env.git.diff) == ("3f9c2d1e", "ab" * 32)
    assert env.variables == {"OMP_NUM_THREADS": "4", "HF_HOME": ".../hf"}
    assert env.privacy == "anonymous"
    assert env.job is not None and (env.job.id, env.job.url) == ("42", None)
    assert env.fallbacks == {"root": WITHHELD}
    assert out.config == {"data": "/home/alice/data"}
    assert (out.unique_id, out.start_time, out.platform.cpu_count) == (
        info.unique_id,
        info.start_time,
        8,
    )
    assert StepInfo.from_json_dict(out.to_json_dict()) == out
    assert anonymize(out) == out  # anonymizing twice changes nothing


def test_anonymize_with_a_key() -> None:
    out = anonymize(full_record(), key="k3y")
    assert out.platform.user == hidden("k3y", "alice")
    assert out.platform.host == hidden("k3y", "alice-laptop")
    assert out.environment.root == Path(hidden("k3y", "/home/alice/proj"))
    assert out.environment.git is not None
    assert out.environment.git.remote == hidden("k3y", "https://github.com/alice/paper.git")
    assert anonymize(out, key="k3y") == out


def test_anonymize_each_kind_of_record() -> None:
    platform = anonymize(PlatformMetadata("Linux", 2, "alice", "box"))
    assert (platform.user, platform.host, platform.operating_system) == (
        "anonymous",
        "anonymous",
        "Linux",
    )
    git = anonymize(GitMetadata("abc", "git@github.com:alice/x.git", "main", False))
    assert (git.commit, git.remote, git.branch, git.dirty) == ("abc", "anonymous", "main", False)
    assert anonymize(GitMetadata("abc", None)).remote is None  # nothing to hide
    assert anonymize(TangoMetadata("0.2.0")) == TangoMetadata("0.2.0")
    holder = WithJob(Job("train", "https://ci.example.com/alice/42"), platform)
    out = anonymize(holder)
    assert out.job == Job("train", None)  # job.url dropped, whatever class holds it
    with pytest.raises(TypeError, match="anonymize\\(\\) takes a record, got dict"):
        anonymize({"user": "alice"})


@dataclasses.dataclass
class WithReasons:
    user: str
    fallbacks: Optional[Dict[str, str]]


def test_anonymize_withholds_reasons_of_hidden_fields() -> None:
    reasons = {
        "user": "no passwd entry for uid 1234; recorded the uid",
        "root": "the working directory was deleted; used /home/alice",
        "git.remote": "x",
        "job.url": "y",
        "git.dirty": "git status timed out after 2 s; recorded dirty and diff as None",
    }
    out = anonymize(WithReasons("alice", dict(reasons)))
    assert out.fallbacks == {
        "user": WITHHELD,
        "root": WITHHELD,
        "git.remote": WITHHELD,
        "job.url": WITHHELD,
        "git.dirty": reasons["git.dirty"],
    }


def test_package_exports() -> None:
    assert tango_stepinfo.anonymize is anonymize
    assert "anonymize" in tango_stepinfo.__all__
    assert "InvalidSettingError" in tango_stepinfo.__all__


def test_anonymous_shortens_a_command_given_by_the_environment(repo: Path) -> None:
    extra = {
        "TANGO_STEPINFO_PRIVACY": "anonymous",
        "TANGO_STEPINFO_COMMAND": "/home/alice/x.py --out=/home/alice/y",
    }
    assert made(repo, extra)["environment"]["command"] == ".../x.py --out=.../y"


# --- names, GPUs and addresses in free text -----------------------------------------------------

WHO = {
    "LOGNAME": "alicez",
    "USER": "alicez",
    "HOSTNAME": "alicez-box.corp.example.com",
    "SLURM_JOB_ID": "12",
    "SLURM_JOB_NAME": "alicez-train",
    "TANGO_STEPINFO_VARIABLES": "MY_*",
    "MY_OUT": "~alicez/runs",
    "MY_NODES": "node-alicez01",
    "MY_ADDR": "10.1.2.3",
    "MY_GPU": "GPU-8d8b1c2e-1234-5678-9abc-def012345678",
    "MY_THREADS": "4",
}

SCRUBBED = """
import json, sys, tango_stepinfo
info = tango_stepinfo.StepInfo("a", "A", set(), True)
info.mark_started()
info.mark_failed(OSError("cannot open /home/alicez/data/x.csv on alicez-box.corp.example.com"))
print(json.dumps([info.to_json_dict(), repr(info)]))
"""


PLAIN = """
import json, tango_stepinfo
print(json.dumps(tango_stepinfo.StepInfo("a", "A", set(), True).to_json_dict()))
"""


def run(repo: Path, script: str, extra: Dict[str, str], *args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=repo,
        env={**git_env(repo.parent), **extra},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_anonymous_scrubs_user_host_gpu_and_addresses_from_free_text(repo: Path) -> None:
    args = ("--entity", "Alicez", "--peer", "zqpeer7.corp.example.com", "--ip=10.1.2.3", "~alicez")
    extra = {**WHO, "TANGO_STEPINFO_PRIVACY": "anonymous"}
    out, text = run(repo, SCRUBBED, extra, *args)
    env = out["environment"]
    assert env["command"] == (
        "-c --entity anonymous --peer zqpeer7.anonymous --ip=anonymous '~anonymous'"
    )
    assert env["job"]["name"] == "anonymous-train"
    assert env["variables"] == {
        "MY_ADDR": "anonymous",
        "MY_GPU": "anonymous",
        "MY_NODES": "node-anonymous01",
        "MY_OUT": "~anonymous/runs",
        "MY_THREADS": "4",  # not identifying: kept
    }
    assert out["error"].endswith("OSError: cannot open .../x.csv on anonymous\n")
    everything = (json.dumps(out) + text).lower()
    for name in ("alicez", "corp.example", "10.1.2.3", "8d8b1c2e"):
        assert name not in everything
    keyed = run(repo, SCRUBBED, {**extra, "TANGO_STEPINFO_PRIVACY_KEY": "k3y"}, *args)[0]
    user = keyed["platform"]["user"]
    assert user == hidden("k3y", "alicez")  # the same stand-in wherever the name is, any case
    assert keyed["environment"]["command"].startswith(f"-c --entity {user} ")
    assert keyed["environment"]["job"]["name"] == f"{user}-train"
    full = run(repo, SCRUBBED, WHO, *args)[0]
    assert "--entity Alicez" in full["environment"]["command"]  # full mode: as it was


def test_anonymous_command_with_a_tab_or_a_newline(repo: Path) -> None:
    # a word with whitespace other than spaces made shortening recurse until RecursionError
    extra = {"TANGO_STEPINFO_PRIVACY": "anonymous"}
    out = run(
        repo,
        "import json, tango_stepinfo as t\n"
        "print(json.dumps(t.StepInfo('a', 'A', set(), True).to_json_dict()))",
        extra,
        "a\t/home/alicez/x",
        "b\n/srv/y z",
    )
    assert out["environment"]["command"] == "-c 'a\t.../x' 'b\n.../y z'"
    info = full_record()
    info.environment.command = "sh -c 'cd /home/alice/p\tpython t.py'"
    assert anonymize(info).environment.command == "sh -c 'cd .../p\tpython t.py'"


def test_anonymize_scrubs_names_from_every_free_text_field() -> None:
    info = full_record()
    env = info.environment
    assert env.git is not None and env.job is not None and env.variables is not None
    env.git.branch = "alice/fix"
    env.job.name = "Alice-nightly"
    env.variables.update(USER="alice", MASTER_ADDR="10.1.2.3", MY_GPU="GPU-" + UUID)
    env.command += " --entity alice --peer alice-laptop"
    env.fallbacks = {"git.dirty": "git status in /home/alice/p timed out"}
    info.platform.gpus = [GpuMetadata("A100", "GPU-" + UUID, "0000:3b:00.0")]
    info.error = 'Traceback:\n  File "/srv/lab/train.py", line 3\nOSError: ALICE-LAPTOP down'
    for key in (None, "k3y"):
        out = anonymize(info, key=key)
        user = "anonymous" if key is None else hidden(key, "alice")
        host = "anonymous" if key is None else hidden(key, "alice-laptop")
        env = out.environment
        assert env.git is not None and env.job is not None and env.variables is not None
        assert out.platform.user == user and out.platform.host == host
        assert (env.git.branch, env.job.name) == (f"{user}/fix", f"{user}-nightly")
        assert env.command.endswith(f" --entity {user} --peer {host}")
        assert env.variables["USER"] == user
        stand_ins = (
            {"anonymous"} if key is None else {hidden(key, "10.1.2.3"), hidden(key, "GPU-" + UUID)}
        )
        assert {env.variables["MASTER_ADDR"], env.variables["MY_GPU"]} == stand_ins
        assert out.platform.gpus is not None
        assert out.platform.gpus[0].uuid == env.variables["MY_GPU"]
        assert out.platform.gpus[0].bus == "0000:3b:00.0"
        assert env.fallbacks == {"git.dirty": f"git status in /home/{user}/p timed out"}
        assert out.error == f'Traceback:\n  File ".../train.py", line 3\nOSError: {host} down'
        assert anonymize(out, key=key) == out
        assert StepInfo.from_json_dict(json.loads(json.dumps(out.to_json_dict()))) == out
        assert tango_stepinfo.loads(pickle.dumps(out)) == out
        left = (json.dumps(out.to_json_dict(), sort_keys=True) + repr(out)).lower()
        assert left.count("alice") == 2  # config's own /home/alice/data, in JSON and repr
        assert UUID not in left and "10.1.2.3" not in left
    assert (info.environment.variables or {})["USER"] == "alice"  # the record given: as it is


UUID = "8d8b1c2e-1234-5678-9abc-def012345678"


def test_anonymize_with_a_key_takes_any_string() -> None:
    # a lone surrogate (JSON's "\ud800") made the keyed HMAC raise UnicodeEncodeError
    platform = PlatformMetadata("L", 1, "\ud800", "h\udcff", None, None, None, None, None, None)
    out = anonymize(platform, key="k3y")
    assert out.user.startswith("anon:") and out.host.startswith("anon:")
    assert out.host == hidden_bytes("k3y", b"h\xff")  # as the OS gave it


def hidden_bytes(key: str, value: bytes) -> str:
    return "anon:" + hmac.new(key.encode(), value, hashlib.sha256).hexdigest()[:12]


def test_anonymize_tangos_records() -> None:
    for path in sorted((TANGO_DATA / "json").glob("*.json")):
        info = StepInfo.from_json_dict(json.loads(path.read_text()))
        out = anonymize(info, key="k3y")
        assert anonymize(out, key="k3y") == out
        assert StepInfo.from_json_dict(out.to_json_dict()) == out
        assert out.platform.user.startswith("anon:")


@pytest.mark.parametrize(
    "remote",
    [
        "git@github.com:alice-gh/paper.git",
        "https://github.com/alice-gh/paper.git",
        "ssh://git@gitlab.example.com:2222/alice-gh/paper.git",
        "/home/alice-gh/src/paper.git",
    ],
)
def test_anonymize_hides_the_remotes_owner_elsewhere(remote: str) -> None:
    info = full_record()
    assert info.environment.git is not None
    info.environment.git.remote = remote
    info.environment.command = "train.py --wandb-entity alice-gh --project paper"
    out = anonymize(info)
    assert out.environment.command == "train.py --wandb-entity anonymous --project paper"


def test_a_pbs_job_id_loses_its_server(repo: Path) -> None:
    # PBS ids are NUMBER.SERVER: the server's host name names the site
    extra = {"TANGO_STEPINFO_PRIVACY": "anonymous", "PBS_JOBID": "1234.pbs01.cs.uni.edu"}
    out = made(repo, extra)
    assert out["environment"]["job"] == {
        "system": "pbs",
        "id": "1234.anonymous",
        "name": None,
        "url": None,
        "attempt": None,
    }
    info = full_record()
    info.environment.job = JobMetadata("pbs", "77.pbs01.cs.uni.edu")
    info.environment.command = "qsub -q gpu@pbs01 job.sh"
    out_record = anonymize(info)
    assert out_record.environment.job is not None
    assert out_record.environment.job.id == "77.anonymous"
    assert out_record.environment.command == "qsub -q gpu@anonymous job.sh"


def test_anonymous_variables_shorten_every_absolute_path(repo: Path) -> None:
    # a value that was not a path list was kept whole: --out /data/secret-project/x stayed
    extra = {
        "TANGO_STEPINFO_PRIVACY": "anonymous",
        "TANGO_STEPINFO_VARIABLES": "MY_*",
        "MY_OPTS": "--out /data/secret-project/x --seed 1",
        "MY_UNC": "\\\\fileserver\\share\\proj",
        "MY_LIST": "/data/a:/data/b",
        "MY_URL": "https://example.com/x",
        "MY_N": "4",
    }
    out = made(repo, extra)
    assert out["environment"]["variables"] == {
        "MY_LIST": ".../a:.../b",
        "MY_N": "4",
        "MY_OPTS": "--out .../x --seed 1",
        "MY_UNC": ".../proj",
        "MY_URL": "https://example.com/x",
    }
    info = full_record()
    info.environment.variables = {"MY_OPTS": extra["MY_OPTS"], "MY_UNC": extra["MY_UNC"]}
    assert anonymize(info).environment.variables == {
        "MY_OPTS": "--out .../x --seed 1",
        "MY_UNC": ".../proj",
    }


@settings(max_examples=150, deadline=None)
@given(step_infos(), st.sampled_from([None, "k3y"]))
def test_anonymize_any_record_is_stable_and_round_trips(info: StepInfo, key: Optional[str]) -> None:
    out = anonymize(info, key=key)
    assert anonymize(out, key=key) == out
    assert StepInfo.from_json_dict(json.loads(json.dumps(out.to_json_dict()))) == out
    assert tango_stepinfo.loads(pickle.dumps(out)) == out
    if info.platform is not None and out.platform is not None:
        user = info.platform.user
        if key is None:
            assert out.platform.user == "anonymous"
        elif user != "anonymous" and not user.startswith("anon:"):
            assert out.platform.user == hidden(key, user)


@settings(max_examples=300, deadline=None)
@given(
    st.tuples(*[identity_texts] * 7),
    st.sampled_from([None, "k3y"]),
)
@example(texts=("", "", "/1'::'", "", "", "", ""), key=None)  # shortened, it read as an address
def test_anonymize_twice_changes_nothing_whatever_the_names(
    texts: Tuple[str, ...], key: Optional[str]
) -> None:
    # names overlapping names, stand-ins next to addresses, unbalanced quotes in a command: a
    # second anonymize() found what the first had made (1.2.3.4.5 as a user and the error
    # fe80::11.2.3.4.5 became fe80::11.anonymous, then anonymous.anonymous)
    user, host, command, branch, remote, value, error = texts
    info = full_record()
    info.platform.user, info.platform.host = user, host
    info.environment.command = command
    info.environment.git = GitMetadata("abc", remote or None, branch or None, False)
    info.environment.variables = {"USER": value, "X": f"{value}:{error}", "HOSTNAME": host}
    info.environment.job = JobMetadata("pbs", "1." + host, value or None)
    info.error = error or None
    info.environment.fallbacks = {"gpus": error} if error else None
    out = anonymize(info, key=key)
    assert anonymize(out, key=key) == out
    assert StepInfo.from_json_dict(json.loads(json.dumps(out.to_json_dict()))) == out
    assert tango_stepinfo.loads(pickle.dumps(out)) == out


def test_anonymous_hides_the_remotes_owner_in_the_command(repo: Path) -> None:
    # the probe knew the user and host, not the owner of a fork it was cloned from
    subprocess.run(
        [GIT, "remote", "set-url", "origin", "git@github.com:alice-gh/secret-paper.git"],
        cwd=repo,
        env=git_env(repo.parent),
        check=True,
    )
    extra = {"TANGO_STEPINFO_PRIVACY": "anonymous"}
    out = run(repo, PLAIN, extra, "--wandb-entity", "Alice-GH", "--project", "paper")
    assert out["environment"]["command"] == "-c --wandb-entity anonymous --project paper"


def test_anonymous_rules_that_cannot_load_hide_everything_and_say_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tango_stepinfo import _fallbacks, _privacy

    monkeypatch.setenv("TANGO_STEPINFO_PRIVACY", "anonymous")
    _privacy.clear()
    _fallbacks.clear()
    try:
        with monkeypatch.context() as m:
            import_fails(m, "tango_stepinfo._hiding")
            policy = _privacy.current()
            assert policy is not None
            assert policy.hide("alice") == policy.scrub("--entity alice") == "anonymous"
            assert policy.variable("OUT", "/home/alice/x") == ("OUT", "anonymous")
            assert _privacy.free_text("no passwd entry for alice") == "anonymous"
            assert policy.scrub(_privacy.BLANK_REASON + " (alice)") == "anonymous"
            why = (_fallbacks.collect(["privacy"]) or {}).get("privacy", "")
            assert why.startswith("the rules of anonymous records could not load (Too many open")
        policy = _privacy.current()  # the rules load now: kept, and the reason is gone
        assert policy is _privacy.current() and type(policy).__name__ == "Policy"
        assert _fallbacks.collect(["privacy"]) is None
    finally:
        _privacy.clear()
        _fallbacks.clear()


def test_free_text_never_raises_when_the_mode_is_unknown_and_the_rules_cannot_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tango_stepinfo import _privacy

    monkeypatch.setenv("TANGO_STEPINFO_PRIVACY", "bogus")
    _privacy.clear()
    try:
        import_fails(monkeypatch, "tango_stepinfo._hiding")
        assert _privacy.free_text("no passwd entry for alice") == "anonymous"
    finally:
        _privacy.clear()


@pytest.mark.parametrize(
    ("word", "shortened"),
    [
        ("\\\\fs01.corp.example\\share\\lr=0.1\\x", ".../x"),  # kept its server name
        ("C:\\Users\\bob\\lr=0.1\\x", ".../x"),
        ("/srv/runs/lr=0.1/x", ".../x"),
        ("OUT=C:\\Users\\bob\\x", "OUT=.../x"),
        ("--out=\\\\fs01\\share\\x", "--out=.../x"),
    ],
)
def test_a_windows_path_holding_an_equals_sign_is_shortened_whole(
    word: str, shortened: str
) -> None:
    from tango_stepinfo._privacy import shorten_word

    assert shorten_word(word) == shortened


class _Array:
    """Stands for a numpy array in a config: comparing two raises."""

    def __eq__(self, other: object) -> bool:
        raise ValueError("The truth value of an array with more than one element is ambiguous")

    __hash__ = None  # type: ignore[assignment]


def test_anonymize_never_compares_config_values() -> None:
    # a00bcaf compared the whole copy with another pass's, config included: a numpy array in
    # config made anonymize() raise
    info = full_record()
    info.config = {"w": _Array()}
    info.environment.command = "/1'::' --entity x"
    out = anonymize(info)
    assert out.environment.command == ".../anonymous --entity x"
    assert isinstance(out.config["w"], _Array)
