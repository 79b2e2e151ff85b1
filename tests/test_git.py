"""The git probe, against real repositories made with the git CLI in ``tmp_path``."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import pytest

import tango_stepinfo
from tango_stepinfo import GitMetadata, StepInfo, _fallbacks, _git, _probe

from .conftest import (
    GIT,
    backdate,
    exit_code_of_forked,
    fake_bin,
    git,
    make_repo,
    no_free_fd,
    run_python,
    run_signalled,
)

pytestmark = pytest.mark.skipif(GIT is None, reason="the git CLI makes the test repositories")


@pytest.fixture(autouse=True)
def clean_git_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No user or system git config, a fixed identity, no cached facts before or after."""
    empty = tmp_path / "empty-gitconfig"
    empty.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for key in ("GIT_DIR", "GIT_WORK_TREE", "GIT_CEILING_DIRECTORIES", "TANGO_STEPINFO_GIT_DIRTY"):
        monkeypatch.delenv(key, raising=False)
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "Test")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "test@example.com")
    tango_stepinfo.clear_cache()
    yield
    tango_stepinfo.clear_cache()


DIFF_COMMAND = [
    "diff",
    "--binary",
    "--no-color",
    "--no-ext-diff",
    "--no-textconv",
    "--no-renames",
    "--src-prefix=a/",
    "--dst-prefix=b/",
    "HEAD",
]
"""The command whose output ``GitMetadata.diff`` hashes, as the format documents it."""


def diff_hash(cwd: Path) -> Optional[str]:
    """What ``sha256sum`` says of the documented ``git diff`` command's output; None if empty."""
    out = subprocess.run([str(GIT), *DIFF_COMMAND], cwd=cwd, check=True, capture_output=True)
    return hashlib.sha256(out.stdout).hexdigest() if out.stdout else None


def three_more_files(repo: Path) -> None:
    """Commit three more old files in ``repo``: an edit to one file of four then leaves the
    index fresh by the probe's sample (see :func:`_git._index_is_stale`)."""
    for name in ("a.txt", "b.txt", "c.txt"):
        (repo / name).write_text(f"{name}\n")
        backdate(repo / name)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "more")


def probe(where: Path, monkeypatch: pytest.MonkeyPatch) -> Optional[GitMetadata]:
    monkeypatch.chdir(where)
    return GitMetadata.check_for_repo()


def test_plain_repo_matches_git_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "repo")
    git(repo, "remote", "add", "origin", "https://example.com/org/x.git")
    meta = probe(repo, monkeypatch)
    assert meta == GitMetadata(
        commit=git(repo, "rev-parse", "HEAD"),
        remote=git(repo, "remote", "get-url", "origin"),
        branch=git(repo, "rev-parse", "--abbrev-ref", "HEAD"),
        dirty=False,
    )


def test_step_info_records_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "repo")
    monkeypatch.chdir(repo)
    info = StepInfo(unique_id="a", step_class_name="A", dependencies=set(), cacheable=True)
    assert info.environment.git is not None
    assert info.environment.git.commit == git(repo, "rev-parse", "HEAD")
    assert info.environment.root == repo.resolve()


def test_subdirectory_of_a_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "repo")
    deep = repo / "a" / "b"
    deep.mkdir(parents=True)
    meta = probe(deep, monkeypatch)
    assert meta is not None
    assert meta.commit == git(deep, "rev-parse", "HEAD")
    assert meta.branch == "main"


def test_not_in_a_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outside = tmp_path / "plain"
    outside.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    with pytest.raises(subprocess.CalledProcessError):
        git(outside, "rev-parse", "HEAD")
    assert probe(outside, monkeypatch) is None
    assert StepInfo("a", "A", set(), True).environment.git is None


def test_ceiling_directories_stop_the_walk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "repo")
    sub = repo / "sub"
    sub.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(repo))
    with pytest.raises(subprocess.CalledProcessError):
        git(sub, "rev-parse", "HEAD")
    assert probe(sub, monkeypatch) is None


def test_detached_head(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "repo")
    git(repo, "checkout", "-q", "--detach")
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "HEAD"
    meta = probe(repo, monkeypatch)
    assert meta is not None
    assert meta.commit == git(repo, "rev-parse", "HEAD")
    assert meta.branch is None


def test_packed_refs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "repo")
    git(repo, "branch", "other")
    git(repo, "pack-refs", "--all")
    assert not (repo / ".git" / "refs" / "heads" / "main").exists()
    meta = probe(repo, monkeypatch)
    assert meta is not None
    assert meta.commit == git(repo, "rev-parse", "HEAD")
    assert meta.branch == "main"


def test_empty_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "repo", commit=False, branch="trunk")
    meta = probe(repo, monkeypatch)
    assert meta is not None
    assert meta.commit is None
    assert meta.remote is None
    assert meta.branch == git(repo, "symbolic-ref", "--short", "HEAD") == "trunk"


def test_an_unborn_branch_is_no_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_repo(tmp_path / "repo", commit=False)
    monkeypatch.chdir(tmp_path / "repo")
    assert git_reasons() is None


@pytest.mark.parametrize(
    ("head", "ref", "reason", "branch"),
    [
        (b"\0" * 41, None, "HEAD holds neither a hash nor a ref", None),  # a crash's zeroes
        (b"", None, "HEAD holds neither a hash nor a ref", None),
        (b"ref: refs/heads/.invalid\n", None, "the reftable ref format is not read", None),
        (b"ref: refs/heads/main\n", b"garbage\n", "refs/heads/main holds neither", "main"),
    ],
    ids=["zeroed", "empty", "reftable", "corrupt-ref"],
)
def test_a_commit_that_cannot_be_read_is_a_noted_fallback(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    head: bytes,
    ref: Optional[bytes],
    reason: str,
    branch: Optional[str],
) -> None:
    # Found by the probes' red team: a corrupt HEAD gave commit None (a repository with no
    # commits says the same) with the reason only in the DEBUG log.
    repo = make_repo(tmp_path / "repo")
    commit = git(repo, "rev-parse", "HEAD")
    (repo / ".git" / "HEAD").write_bytes(head)
    if ref is not None:
        (repo / ".git" / "refs" / "heads" / "main").write_bytes(ref)
    monkeypatch.setenv("TANGO_STEPINFO_GIT_DIRTY", "0")
    meta = probe(repo, monkeypatch)
    assert meta is not None and meta.commit is None and meta.branch == branch
    reasons = git_reasons() or {}
    assert reasons["git.commit"].startswith(reason)
    assert ("git.branch" in reasons) is (branch is None)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")  # repaired: noted no more
    (repo / ".git" / "refs" / "heads" / "main").write_text(commit + "\n")
    meta = probe(repo, monkeypatch)
    assert meta is not None and (meta.commit, meta.branch) == (commit, "main")
    assert git_reasons() is None


def test_no_origin_takes_the_first_remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "repo")
    git(repo, "remote", "add", "upstream", "https://example.com/up.git")
    git(repo, "remote", "add", "fork", "https://example.com/fork.git")
    meta = probe(repo, monkeypatch)
    assert meta is not None
    assert meta.remote == git(repo, "remote", "get-url", "upstream")


def test_origin_wins_over_earlier_remotes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "repo")
    git(repo, "remote", "add", "upstream", "https://example.com/up.git")
    git(repo, "remote", "add", "origin", "git@example.com:org/origin.git")
    meta = probe(repo, monkeypatch)
    assert meta is not None
    assert (
        meta.remote == git(repo, "remote", "get-url", "origin") == "git@example.com:org/origin.git"
    )


def test_credentials_are_removed_from_the_remote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "repo")
    git(repo, "remote", "add", "origin", "https://user:s3cret@example.com/org/x.git")
    meta = probe(repo, monkeypatch)
    assert meta is not None
    assert meta.remote == "https://example.com/org/x.git"
    info = StepInfo("a", "A", set(), True)
    assert "s3cret" not in repr(info.to_json_dict())


def test_worktree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "repo")
    git(repo, "remote", "add", "origin", "https://example.com/x.git")
    tree = tmp_path / "tree"
    git(repo, "worktree", "add", "-q", "-b", "feature", str(tree))
    (tree / "file.txt").write_text("changed\n")
    git(tree, "commit", "-q", "-am", "on feature")
    (tree / "file.txt").write_text("dirty\n")
    assert (tree / ".git").is_file()
    meta = probe(tree, monkeypatch)
    assert meta == GitMetadata(
        commit=git(tree, "rev-parse", "HEAD"),
        remote=git(tree, "remote", "get-url", "origin"),
        branch=git(tree, "rev-parse", "--abbrev-ref", "HEAD"),
        dirty=True,
        diff=diff_hash(tree),
    )
    assert meta.commit != git(repo, "rev-parse", "HEAD")
    main = probe(repo, monkeypatch)
    assert main is not None
    assert (main.branch, main.dirty) == ("main", False)


def test_submodule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inner = make_repo(tmp_path / "inner")
    outer = make_repo(tmp_path / "outer")
    git(outer, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(inner), "sub")
    sub = outer / "sub"
    assert (sub / ".git").is_file()
    meta = probe(sub, monkeypatch)
    assert meta is not None
    assert meta.commit == git(sub, "rev-parse", "HEAD") == git(inner, "rev-parse", "HEAD")
    assert meta.remote == git(sub, "remote", "get-url", "origin") == str(inner)
    assert meta.branch == git(sub, "rev-parse", "--abbrev-ref", "HEAD")
    assert meta.dirty is False
    git(outer, "commit", "-q", "-m", "add sub")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(outer), str(clone))
    git(clone, "-c", "protocol.file.allow=always", "submodule", "update", "-q", "--init")
    assert (clone / ".git" / "modules" / "sub" / "HEAD").is_file()
    detached = probe(clone / "sub", monkeypatch)
    assert detached is not None
    assert git(clone / "sub", "rev-parse", "--abbrev-ref", "HEAD") == "HEAD"
    assert (detached.commit, detached.branch) == (meta.commit, None)


def test_bare_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_repo(tmp_path / "src")
    bare = tmp_path / "bare.git"
    git(tmp_path, "clone", "-q", "--bare", str(src), str(bare))
    meta = probe(bare, monkeypatch)
    assert meta is not None
    assert meta.commit == git(bare, "rev-parse", "HEAD")
    assert meta.dirty is None  # no checkout to compare


def test_sha256_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main", "--object-format=sha256")
    (repo / "f").write_text("x")
    git(repo, "add", "f")
    git(repo, "commit", "-q", "-m", "x")
    meta = probe(repo, monkeypatch)
    assert meta is not None
    assert meta.commit == git(repo, "rev-parse", "HEAD")
    assert meta.commit is not None and len(meta.commit) == 64


def test_invalid_gitfile_is_no_repo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="tango_stepinfo")
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / ".git").write_text("gitdir: ../nowhere\n")
    assert probe(folder, monkeypatch) is None
    assert "not a git directory" in caplog.text


def test_changes_show_up_without_clearing_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "repo")
    first = probe(repo, monkeypatch)
    assert first is not None
    (repo / "file.txt").write_text("two\n")
    git(repo, "commit", "-q", "-am", "second")
    second = GitMetadata.check_for_repo()
    assert second is not None
    assert second.commit == git(repo, "rev-parse", "HEAD") != first.commit
    git(repo, "checkout", "-q", "-b", "topic")
    assert GitMetadata.check_for_repo() == GitMetadata(second.commit, None, "topic", False)
    git(repo, "remote", "add", "origin", "https://example.com/new.git")
    third = GitMetadata.check_for_repo()
    assert third is not None and third.remote == "https://example.com/new.git"
    git(repo, "pack-refs", "--all")
    (repo / "file.txt").write_text("three\n")
    git(repo, "commit", "-q", "-am", "third")
    fourth = GitMetadata.check_for_repo()
    assert fourth is not None and fourth.commit == git(repo, "rev-parse", "HEAD")
    shutil.rmtree(repo / ".git")
    assert GitMetadata.check_for_repo() is None


def test_working_directory_changes_are_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one = make_repo(tmp_path / "one")
    two = make_repo(tmp_path / "two", branch="other")
    a = probe(one, monkeypatch)
    b = probe(two, monkeypatch)
    assert a is not None and b is not None
    assert (a.branch, b.branch) == ("main", "other")


# --- dirty ---------------------------------------------------------------------------------------


def no_posix_spawn(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make this a platform without ``os.posix_spawn`` (subprocess checks its own flag)."""
    monkeypatch.delattr(os, "posix_spawn", raising=False)
    monkeypatch.setattr(subprocess, "_USE_POSIX_SPAWN", False, raising=False)


def counting_git(folder: Path, log: Path) -> Path:
    return fake_bin(folder, "git", f'echo run >> "{log}"\nexec "{GIT}" "$@"\n')


def test_dirty_tracks_tracked_files_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "untracked.txt").write_text("new\n")
    meta = probe(repo, monkeypatch)
    assert meta is not None and meta.dirty is False
    (repo / "file.txt").write_text("changed\n")
    tango_stepinfo.clear_cache()
    meta = GitMetadata.check_for_repo()
    assert meta is not None and meta.dirty is True


def test_git_is_rechecked_within_the_bound_only_while_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, probe_clock: List[float]
) -> None:
    now = probe_clock
    repo = make_repo(tmp_path / "repo")
    first = probe(repo, monkeypatch)
    assert first is not None
    git(repo, "commit", "-q", "--allow-empty", "-m", "second")
    now[0] += 0.0009  # within the bound: the last check is reused
    assert GitMetadata.check_for_repo() == first
    now[0] += 0.0002  # past it: a record's first probe re-checks git with the other facts
    _probe.packages()
    second = git(repo, "rev-parse", "HEAD")
    assert _probe.git() == (second, None, "main", False, None)
    # A process that stops asking for git does not re-read it (nor run its dirty check) at the
    # checks made for the other facts, once the first of them re-read it; the next git probe
    # reads it afresh.
    log = tmp_path / "git.log"
    script = f'echo "$@" >> "{log}"\nexec "{GIT}" "$@"\n'
    monkeypatch.setenv("PATH", str(fake_bin(tmp_path / "bin", "git", script)))
    now[0] += 0.002
    _probe.packages()  # git was asked for since the last check: re-read (the same commit)
    git(repo, "commit", "-q", "--allow-empty", "-m", "third")
    for _ in range(3):
        now[0] += 0.002
        _probe.packages()
        _probe.root()
    assert not log.exists()
    third = GitMetadata.check_for_repo()
    assert third is not None and third.commit == git(repo, "rev-parse", "HEAD") != second
    assert third.dirty is False and " diff " in log.read_text()


def test_dirty_runs_once_per_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "repo")
    log = tmp_path / "git-runs"
    monkeypatch.setenv("PATH", str(counting_git(tmp_path / "bin", log)))
    monkeypatch.chdir(repo)
    for _ in range(5):
        StepInfo("a", "A", set(), True)
    assert log.read_text().count("run") == 1
    (repo / "file.txt").write_text("two\n")
    git(repo, "commit", "-q", "-am", "second")
    meta = GitMetadata.check_for_repo()
    GitMetadata.check_for_repo()
    assert meta is not None and meta.dirty is False
    assert log.read_text().count("run") == 2
    tango_stepinfo.clear_cache()
    GitMetadata.check_for_repo()
    assert log.read_text().count("run") == 3


def test_dirty_check_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "repo")
    log = tmp_path / "git-runs"
    monkeypatch.setenv("PATH", str(counting_git(tmp_path / "bin", log)))
    monkeypatch.setenv("TANGO_STEPINFO_GIT_DIRTY", "0")
    meta = probe(repo, monkeypatch)
    StepInfo("a", "A", set(), True)
    assert meta is not None
    assert meta.commit == git(repo, "rev-parse", "HEAD")
    assert meta.dirty is None
    assert not log.exists()


def test_no_git_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="tango_stepinfo")
    repo = make_repo(tmp_path / "repo")
    git(repo, "remote", "add", "origin", "https://example.com/x.git")
    expected = git(repo, "rev-parse", "HEAD")
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    info = probe(repo, monkeypatch)
    assert info == GitMetadata(expected, "https://example.com/x.git", "main", None)
    assert "no git binary" in caplog.text


FIRST_RECORD = """
import tango_stepinfo
git = tango_stepinfo.StepInfo("s", "S", set(), True).environment.git
print(git.dirty if git else None)
"""


@pytest.mark.parametrize("entry", [None, "", ".", "tools"])
def test_the_first_record_runs_the_git_on_path_never_one_in_the_checkout(
    tmp_path: Path, entry: Optional[str]
) -> None:
    """The first record's git child is looked for on $PATH by the C library (posix_spawnp),
    except when an entry of $PATH is not absolute (empty, ".", relative): that is a folder of
    the working directory to the C library, and an executable named git in the checkout must
    never run (which() looks for git then, in the absolute folders only)."""
    repo = make_repo(tmp_path / "repo")
    (repo / "file.txt").write_text("changed\n")
    marker = tmp_path / "ran"
    fake_bin(repo / (entry or ""), "git", f'touch "{marker}"\nexit 0\n')  # untracked
    real = str(Path(str(GIT)).parent)
    env = dict(os.environ, PATH=real if entry is None else f"{entry}:{real}")
    env.pop("TANGO_STEPINFO_GIT_DIRTY", None)
    done = subprocess.run(
        [sys.executable, "-c", FIRST_RECORD],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        check=True,
        timeout=60,
    )
    assert done.stdout.split() == [b"True"]
    assert not marker.exists()


def test_git_status_failing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="tango_stepinfo")
    repo = make_repo(tmp_path / "repo")
    monkeypatch.setenv("PATH", str(fake_bin(tmp_path / "bin", "git", "echo oops; exit 128\n")))
    meta = probe(repo, monkeypatch)
    assert meta is not None and meta.dirty is None
    assert "exited with 128" in caplog.text


@pytest.mark.parametrize("spawn", [True, False], ids=["posix_spawn", "subprocess"])
def test_git_status_hanging_is_killed(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    spawn: bool,
) -> None:
    caplog.set_level(logging.DEBUG, logger="tango_stepinfo")
    if not spawn:
        no_posix_spawn(monkeypatch)
    repo = make_repo(tmp_path / "repo")
    monkeypatch.setenv(
        "PATH", str(fake_bin(tmp_path / "bin", "git", f"exec {shutil.which('sleep')} 30\n"))
    )
    monkeypatch.setattr(_git, "GIT_TIMEOUT", 0.2)
    meta = probe(repo, monkeypatch)
    assert meta is not None
    assert meta.commit == git(repo, "rev-parse", "HEAD")
    assert meta.dirty is None
    assert "was killed" in caplog.text


def test_subprocess_runner_gives_the_same_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "file.txt").write_text("changed\n")
    no_posix_spawn(monkeypatch)
    meta = probe(repo, monkeypatch)
    assert meta is not None and meta.dirty is True


def test_git_gets_no_locks_and_no_prompts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a fresh index the one child is ``git diff``; with no commits, ``git status``."""
    repo = make_repo(tmp_path / "repo")
    unborn = make_repo(tmp_path / "unborn", commit=False)
    out = tmp_path / "env"
    script = f'{shutil.which("env")} > "{out}"\necho "$@" >> "{out}"\n'
    monkeypatch.setenv("PATH", str(fake_bin(tmp_path / "bin", "git", script)))
    probe(repo, monkeypatch)
    seen = out.read_text()
    assert "GIT_OPTIONAL_LOCKS=0" in seen
    assert "GIT_TERMINAL_PROMPT=0" in seen
    commit = git(repo, "rev-parse", "HEAD")
    assert "-c diff.autoRefreshIndex=false -c diff.relative=false" in seen
    assert f" diff {' '.join(_git.DIFF_OPTIONS)} -O{os.devnull} {commit} --" in seen
    tango_stepinfo.clear_cache()
    probe(unborn, monkeypatch)
    seen = out.read_text()
    assert "GIT_OPTIONAL_LOCKS=0" in seen
    assert "status --porcelain --untracked-files=no" in seen


# --- config parsing ------------------------------------------------------------------------------

TRICKY_CONFIG = r"""
# comment
[core]
	bare = false
[remote "fancy"]  ; trailing comment
	URL = "https://example.com/a b.git" # comment
	fetch = +refs/heads/*:refs/remotes/fancy/*
[Remote "Other"] url = https://example.com/other\
.git
[remote.old]
	url = https://example.com/old.git
[remote "quote\"d"]
	url = "semi;colon#hash"
	url = https://example.com/second-url.git
[include]
	path = extra.config
"""


@pytest.mark.parametrize("only_index", [True, False], ids=["index-only", "all"])
def test_variables_of_another_repository_are_not_passed_to_git(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, only_index: bool
) -> None:
    # Found by the probes' red team: a step run from a git hook of another repository (which
    # sets GIT_DIR and GIT_INDEX_FILE for its own) had its clean checkout recorded as dirty,
    # with the hash of a diff against the other repository's index.
    outer = tmp_path / "outer"
    outer.mkdir()
    git(outer, "init", "-q")
    (outer / "other.txt").write_text("x\n")
    git(outer, "add", "other.txt")
    git(outer, "commit", "-q", "-m", "another history")
    (outer / "staged.txt").write_text("y\n")
    git(outer, "add", "staged.txt")
    repo = make_repo(tmp_path / "repo")
    expected = probe(repo, monkeypatch)
    assert expected is not None and expected.dirty is False
    hook = {
        "GIT_DIR": str(outer / ".git"),
        "GIT_WORK_TREE": str(outer),
        "GIT_INDEX_FILE": str(outer / ".git" / "index"),
        "GIT_OBJECT_DIRECTORY": str(outer / ".git" / "objects"),
        "GIT_COMMON_DIR": str(outer / ".git"),
        "GIT_PREFIX": "sub/",
    }
    if only_index:  # alone, it made the clean checkout dirty (with the objects, unknown)
        hook = {"GIT_INDEX_FILE": hook["GIT_INDEX_FILE"]}
    for name, value in hook.items():
        monkeypatch.setenv(name, value)
    tango_stepinfo.clear_cache()
    assert probe(repo, monkeypatch) == expected
    assert git_reasons() is None
    (repo / "file.txt").write_text("changed\n")
    tango_stepinfo.clear_cache()
    meta = probe(repo, monkeypatch)
    for name in hook:
        monkeypatch.delenv(name)
    assert meta is not None and meta.dirty is True and meta.diff == diff_hash(repo)


def test_config_parsing_matches_git(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    config = repo / ".git" / "config"
    config.write_text(config.read_text() + TRICKY_CONFIG)
    (repo / ".git" / "extra.config").write_text('[remote "included"]\n\turl = /srv/inc.git\n')
    deps: List[Tuple[str, _probe.Sig]] = []
    remotes = _git._read_config(str(config), deps)
    names = [name for name, _ in remotes]
    assert names == ["fancy", "Other", "old", 'quote"d', 'quote"d', "included"]
    for name, url in remotes:
        if name == 'quote"d' and url != "semi;colon#hash":
            continue  # git remote get-url gives the first url only
        assert url == git(repo, "config", "--get-all", f"remote.{name}.url").splitlines()[0]
    assert [d[0] for d in deps] == [str(config), str(repo / ".git" / "extra.config")]


@pytest.mark.parametrize(
    "data",
    [b"", b"ref: refs/heads/main\n", b"[core]\r\n\tx = 1\r\n", b"a\rb\r\n\rc\r", b"\xff\xfeok\n"],
)
def test_read_text_matches_open_in_text_mode(tmp_path: Path, data: bytes) -> None:
    """Read with os.read, a git file gives what open(...).read() gives: line ends translated
    (CRLF and CR), undecodable bytes kept as surrogates."""
    path = tmp_path / "file"
    path.write_bytes(data)
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        expected = f.read()
    assert _git._read_text(str(path)) == expected


def test_read_text_reads_past_the_size_fstat_gave(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that grew between its fstat and its read is read to its end."""
    path = tmp_path / "file"
    path.write_bytes(b"x" * 100_000)
    real_fstat = os.fstat

    def stale_fstat(fd: int) -> os.stat_result:
        st = real_fstat(fd)
        return os.stat_result((st.st_mode, *st[1:6], 10, *st[7:10]))

    monkeypatch.setattr(os, "fstat", stale_fstat)
    assert _git._read_text(str(path)) == "x" * 100_000


def test_parse_config_entries() -> None:
    entries = _git.parse_config('[a "B"]\n\tflag\n\tkey = "x\\ty" ; c\n[c.D]\nk=v')
    assert entries == [("a.B", "flag", "true"), ("a.B", "key", "x\ty"), ("c.d", "k", "v")]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_forked_child_still_gets_dirty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A child forked while ``git status`` runs in a thread of the parent asks again."""
    repo = make_repo(tmp_path / "repo")
    (repo / "file.txt").write_text("changed\n")
    monkeypatch.chdir(repo)
    tango_stepinfo.PlatformMetadata()  # the first probe starts git status in a thread

    def dirty_in_child() -> bool:
        meta = GitMetadata.check_for_repo()
        return meta is not None and meta.dirty is True

    assert exit_code_of_forked(dirty_in_child) == 0
    meta = GitMetadata.check_for_repo()
    assert meta is not None and meta.dirty is True


def test_clear_cache_kills_a_git_status_nobody_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "repo")
    pid_file = tmp_path / "pid"
    script = f'echo $$ > "{pid_file}"\nexec {shutil.which("sleep")} 30\n'
    monkeypatch.setenv("PATH", str(fake_bin(tmp_path / "bin", "git", script)))
    monkeypatch.chdir(repo)
    _probe.prefetch_git()  # starts git status and does not wait for it (as StepInfo() does)
    for _ in range(200):
        if pid_file.exists() and pid_file.read_text().strip():
            break
        threading.Event().wait(0.01)
    pid = int(pid_file.read_text())
    tango_stepinfo.clear_cache()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


REAPED = """
import os, tango_stepinfo
tango_stepinfo._probe.prefetch_git()  # starts git status without waiting, as StepInfo() does
open("go", "w").close()  # git status may end now
os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)  # until it has exited, without reaping it
tango_stepinfo.PlatformMetadata()  # a later probe
try:
    left = os.waitpid(-1, os.WNOHANG)  # a zombie would be reaped here, and show up
except ChildProcessError:
    left = None  # no child at all
meta = tango_stepinfo.GitMetadata.check_for_repo()
print(left, meta.dirty)
"""


@pytest.mark.skipif(not hasattr(os, "waitid"), reason="os.waitid(WNOWAIT) is POSIX")
def test_a_git_status_nobody_reads_is_reaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``git status`` started ahead of need (``StepInfo()`` starts it before probing the
    platform): the next probe after it ended reaps it, and keeps its answer for the git probe."""
    repo = make_repo(tmp_path / "repo")
    (repo / "file.txt").write_text("changed\n")
    log = tmp_path / "git-runs"
    wait = f"while [ ! -e go ]; do {shutil.which('sleep')} 0.01; done\n"  # go: made in the repo
    script = f'echo "$*" >> "{log}"\n{wait}exec "{GIT}" "$@"\n'
    monkeypatch.setenv("PATH", str(fake_bin(tmp_path / "bin", "git", script)))  # and no uname
    done = subprocess.run(
        [sys.executable, "-c", REAPED], cwd=repo, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "True"]
    assert log.read_text().count(" status ") == 1  # and one git diff, the tree being dirty


def test_a_nul_byte_in_a_git_file_does_not_raise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paths read from ``.git`` files reach os.stat and open: a NUL byte makes them raise."""
    repo = make_repo(tmp_path / "repo")
    (repo / ".git" / "commondir").write_text("x\0y\n")
    (repo / ".git" / "config").write_text("[include]\n\tpath = in\0clude\n")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    assert probe(repo, monkeypatch) is None  # no refs or objects where commondir points
    (repo / ".git" / "commondir").unlink()
    tango_stepinfo.clear_cache()  # the repository found is remembered for the directory
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/ma\0in\n")
    meta = probe(repo, monkeypatch)
    assert meta is not None
    assert (meta.commit, meta.branch, meta.remote) == (None, "ma\0in", None)


@pytest.mark.parametrize("include", ["~us\0er/extra", "~\0/extra"])
def test_a_nul_byte_in_the_user_of_an_include_does_not_raise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, include: str
) -> None:
    """``~user/...`` include paths go to ``pwd.getpwnam``, which raises ``ValueError`` on a NUL
    byte (a config file a crash left zero-filled in places): the include is skipped, as one
    that does not exist, and the rest of the config is read."""
    repo = make_repo(tmp_path / "repo")
    commit = git(repo, "rev-parse", "HEAD")  # before: git refuses the config that follows
    (repo / ".git" / "config").write_text(
        f'[include]\n\tpath = {include}\n[remote "origin"]\n\turl = /srv/x.git\n'
    )
    meta = probe(repo, monkeypatch)
    assert meta is not None
    assert (meta.commit, meta.remote) == (commit, "/srv/x.git")


# --- diff: the working tree's hash ---------------------------------------------------------------


def git_reasons() -> Optional[dict]:
    return _fallbacks.collect(["git"])


def test_clean_tree_has_no_diff(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "untracked.txt").write_text("not part of it\n")
    meta = probe(repo, monkeypatch)
    assert meta is not None
    assert (meta.dirty, meta.diff) == (False, None)
    assert git_reasons() is None


@pytest.mark.parametrize("kind", ["unstaged", "staged", "both", "binary", "deleted", "large"])
def test_diff_is_the_sha256_of_the_command_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "blob.bin").write_bytes(bytes(range(256)) * 4)
    git(repo, "add", "blob.bin")
    git(repo, "commit", "-q", "-m", "binary")
    if kind in ("unstaged", "both"):
        (repo / "file.txt").write_text("one\nchanged\n")
    if kind in ("staged", "both"):
        (repo / "new.txt").write_text("added\n")
        git(repo, "add", "new.txt")
    if kind == "binary":
        (repo / "blob.bin").write_bytes(bytes(reversed(range(256))) * 4 + b"\0\1")
    if kind == "deleted":
        git(repo, "rm", "-q", "file.txt")
    if kind == "large":  # several pipe buffers of output, hashed chunk by chunk
        (repo / "file.txt").write_text("".join(f"line {i} {'x' * 60}\n" for i in range(60000)))
    expected = diff_hash(repo)
    assert expected is not None and len(expected) == 64
    meta = probe(repo, monkeypatch)
    assert meta is not None
    assert (meta.dirty, meta.diff) == (True, expected)
    assert git_reasons() is None


def test_subprocess_runner_streams_the_same_diff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "file.txt").write_text("x" * 300_000)
    no_posix_spawn(monkeypatch)
    meta = probe(repo, monkeypatch)
    assert meta is not None and (meta.dirty, meta.diff) == (True, diff_hash(repo))


def test_changes_undone_in_the_working_tree_are_clean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Staged, then reverted in the working tree: git status lists it, git diff HEAD is empty;
    dirty follows the diff, so that the two agree."""
    repo = make_repo(tmp_path / "repo")
    (repo / "file.txt").write_text("two\n")
    git(repo, "add", "file.txt")
    (repo / "file.txt").write_text("one\n")
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == "MM file.txt"
    assert diff_hash(repo) is None
    meta = probe(repo, monkeypatch)
    assert meta is not None and (meta.dirty, meta.diff) == (False, None)


def test_no_commits_has_no_diff(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "repo", commit=False)
    (repo / "a.txt").write_text("a\n")
    git(repo, "add", "a.txt")
    meta = probe(repo, monkeypatch)
    assert meta is not None
    assert (meta.commit, meta.dirty, meta.diff) == (None, True, None)
    assert git_reasons() is None  # no commits is a fact, not a fallback


def test_two_checkouts_with_the_same_edits_give_the_same_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    origin = make_repo(tmp_path / "origin")
    hashes = []
    for name in ("one", "two"):
        clone = tmp_path / name
        git(tmp_path, "clone", "-q", str(origin), str(clone))
        (clone / "file.txt").write_text("one\nedited\n")
        (clone / "staged.txt").write_text("new\n")
        git(clone, "add", "staged.txt")
        tango_stepinfo.clear_cache()
        meta = probe(clone, monkeypatch)
        assert meta is not None
        hashes.append(meta.diff)
    assert hashes[0] is not None and hashes[0] == hashes[1]
    (tmp_path / "two" / "file.txt").write_text("one\nedited differently\n")
    tango_stepinfo.clear_cache()
    other = probe(tmp_path / "two", monkeypatch)
    assert other is not None and other.diff not in (None, hashes[0])


def index_inode(repo: Path, name: str) -> int:
    """The inode git's index records for ``name`` (``git ls-files --debug``)."""
    out = git(repo, "ls-files", "--debug", "--", name)
    field = next(line for line in out.splitlines() if "ino:" in line)
    return int(field.split("ino:")[1].split()[0])


def copied_repo(tmp_path: Path, files: int = 40) -> Tuple[Path, Path]:
    repo = make_repo(tmp_path / "repo")
    for i in range(files):
        (repo / f"f{i:03}.txt").write_text(f"{i}\n")
        backdate(repo / f"f{i:03}.txt")  # not racily clean: only the copy's index is stale
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "files")
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(repo), str(copy)], check=True)
    return repo, copy


def test_a_copied_checkout_is_refreshed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, copy = copied_repo(tmp_path)
    assert index_inode(copy, "f000.txt") != (copy / "f000.txt").stat().st_ino
    assert _git._index_is_stale(_git.find(str(copy)), git(copy, "rev-parse", "HEAD"))  # type: ignore[arg-type]
    log = tmp_path / "git-env"
    script = f'echo "locks=${{GIT_OPTIONAL_LOCKS-unset}}" >> "{log}"\nexec "{GIT}" "$@"\n'
    monkeypatch.setenv("PATH", str(fake_bin(tmp_path / "bin", "git", script)))
    meta = probe(copy, monkeypatch)
    assert meta is not None and (meta.dirty, meta.diff) == (False, None)
    assert log.read_text() == "locks=unset\n"  # a plain git status, which refreshes
    assert index_inode(copy, "f000.txt") == (copy / "f000.txt").stat().st_ino
    assert not (copy / ".git" / "index.lock").exists()
    log.unlink()
    tango_stepinfo.clear_cache()  # as a new process: the index is fresh now
    meta = probe(copy, monkeypatch)
    assert meta is not None and meta.dirty is False
    assert log.read_text() == "locks=0\n"


def test_a_copied_checkout_with_edits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo, copy = copied_repo(tmp_path)
    for where in (repo, copy):
        (where / "f005.txt").write_text("edited\n")
    expected = diff_hash(repo)
    meta = probe(copy, monkeypatch)
    assert meta is not None and (meta.dirty, meta.diff) == (True, expected)
    assert diff_hash(copy) == expected


def test_the_refresh_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, copy = copied_repo(tmp_path)
    monkeypatch.setenv("TANGO_STEPINFO_GIT_REFRESH", "0")
    before = (copy / ".git" / "index").read_bytes()
    meta = probe(copy, monkeypatch)
    assert meta is not None and meta.dirty is False
    assert (copy / ".git" / "index").read_bytes() == before
    assert index_inode(copy, "f000.txt") != (copy / "f000.txt").stat().st_ino


def test_a_fresh_checkout_is_not_stale(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    found = _git.find(str(repo))
    assert found is not None
    assert not _git._index_is_stale(found, git(repo, "rev-parse", "HEAD"))
    (repo / "file.txt").write_text("an edit is a change, and half of one file is not stale\n")
    (repo / "other.txt").write_text("x\n")
    backdate(repo / "other.txt")
    git(repo, "add", "other.txt")
    git(repo, "commit", "-q", "-m", "two")
    (repo / "file.txt").write_text("edited again, one of two\n")
    assert _git._index_is_stale(found, git(repo, "rev-parse", "HEAD"))  # half of the sample
    git(repo, "update-index", "--index-version", "4")
    (repo / "file.txt").write_text("one\n")
    backdate(repo / "file.txt")
    git(repo, "update-index", "--refresh")
    assert not _git._index_is_stale(found, git(repo, "rev-parse", "HEAD"))


def racy_repo(tmp_path: Path, age: float) -> Path:
    """A repository whose files' ``mtime`` is ``age`` seconds old, as is its index's: git
    cannot trust their ``stat`` (racily clean entries), as in a small fresh clone."""
    repo = make_repo(tmp_path / "repo")
    for i in range(5):
        (repo / f"f{i}.txt").write_text(f"{i}\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "files")
    when = int(time.time() - age) + 0.5
    for name in ["file.txt"] + [f"f{i}.txt" for i in range(5)]:
        os.utime(repo / name, (when, when))
    git(repo, "update-index", "--refresh")  # records those times
    os.utime(repo / ".git" / "index", (when + 0.25, when + 0.25))  # the same second
    return repo


def test_a_racily_clean_index_is_refreshed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = racy_repo(tmp_path, 10.0)
    found = _git.find(str(repo))
    assert found is not None
    assert _git._index_is_stale(found, git(repo, "rev-parse", "HEAD"))
    log = tmp_path / "git-env"
    script = f'echo "locks=${{GIT_OPTIONAL_LOCKS-unset}}" >> "{log}"\nexec "{GIT}" "$@"\n'
    monkeypatch.setenv("PATH", str(fake_bin(tmp_path / "bin", "git", script)))
    meta = probe(repo, monkeypatch)
    assert meta is not None and (meta.dirty, meta.diff) == (False, None)
    assert log.read_text() == "locks=unset\n"  # a plain git status, which rewrites the index
    assert (repo / ".git" / "index").stat().st_mtime > time.time() - 5
    assert not _git._index_is_stale(found, git(repo, "rev-parse", "HEAD"))
    log.unlink()
    tango_stepinfo.clear_cache()  # as a new process
    meta = probe(repo, monkeypatch)
    assert meta is not None and meta.dirty is False
    assert log.read_text() == "locks=0\n"


def test_racy_entries_a_rewrite_cannot_cure_are_left_alone(tmp_path: Path) -> None:
    """Files dated in the future stay racy whatever git writes: refreshing would take
    ``index.lock`` in every process for nothing."""
    repo = racy_repo(tmp_path, -100.0)
    found = _git.find(str(repo))
    assert found is not None
    assert not _git._index_is_stale(found, git(repo, "rev-parse", "HEAD"))
    for name in ["file.txt"] + [f"f{i}.txt" for i in range(5)]:
        (repo / name).write_text("edited\n")  # stat data that differ still count
    assert _git._index_is_stale(found, git(repo, "rev-parse", "HEAD"))


def test_index_version_4_copy_is_stale(tmp_path: Path) -> None:
    repo, copy = copied_repo(tmp_path)
    git(repo, "update-index", "--index-version", "4")
    shutil.rmtree(copy)
    subprocess.run(["cp", "-a", str(repo), str(copy)], check=True)
    found = _git.find(str(copy))
    assert found is not None
    assert _git._index_is_stale(found, git(copy, "rev-parse", "HEAD"))


def test_diff_runs_once_per_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dirty tree with a fresh index costs one child, ``git diff``; with a stale index (one
    edit among two sampled files looks like one), ``git status`` and then ``git diff``."""
    repo = make_repo(tmp_path / "repo")
    three_more_files(repo)
    (repo / "file.txt").write_text("changed\n" * 40000)  # a diff larger than a pipe holds
    log = tmp_path / "git-runs"
    script = f'echo "$6" >> "{log}"\nexec "{GIT}" "$@"\n'  # after -C <worktree> ... and a -c
    monkeypatch.setenv("PATH", str(fake_bin(tmp_path / "bin", "git", script)))
    monkeypatch.chdir(repo)
    infos = [StepInfo("a", "A", set(), True) for _ in range(4)]
    assert log.read_text().split() == ["-c"]  # -c diff.relative=false ... diff ...
    assert {i.environment.git.diff for i in infos if i.environment.git} == {diff_hash(repo)}
    (repo / "a.txt").write_text("changed too\n")
    log.unlink()
    tango_stepinfo.clear_cache()
    meta = probe(repo, monkeypatch)
    assert log.read_text().split() == ["status", "-c"]  # git status, then git diff
    assert meta is not None and (meta.dirty, meta.diff) == (True, diff_hash(repo))


def test_dirty_off_turns_diff_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "file.txt").write_text("changed\n")
    monkeypatch.setenv("TANGO_STEPINFO_GIT_DIRTY", "off")
    meta = probe(repo, monkeypatch)
    assert meta is not None and (meta.dirty, meta.diff) == (None, None)
    assert git_reasons() is None  # a setting, not a fallback


FAKE_STATUS_DIRTY = 'case "$*" in *" status "*) echo " M file.txt";; *) {diff};; esac\n'


def test_git_diff_failing_leaves_both_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "repo")
    script = FAKE_STATUS_DIRTY.format(diff="echo partial; exit 3")
    monkeypatch.setenv("PATH", str(fake_bin(tmp_path / "bin", "git", script)))
    meta = probe(repo, monkeypatch)
    assert meta is not None and (meta.dirty, meta.diff) == (None, None)
    reason = "git diff exited with 3; recorded dirty and diff as None"
    assert git_reasons() == {"git.diff": reason, "git.dirty": reason}


def test_git_diff_hanging_is_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The child gets SIGTERM first (git removes its lock files on it), SIGKILL after."""
    repo = make_repo(tmp_path / "repo")
    term = tmp_path / "term"
    sleep = shutil.which("sleep")
    hang = f"trap 'echo term > \"{term}\"; exit 1' TERM; while :; do {sleep} 0.02; done"
    monkeypatch.setenv(
        "PATH", str(fake_bin(tmp_path / "bin", "git", FAKE_STATUS_DIRTY.format(diff=hang)))
    )
    monkeypatch.setattr(_git, "GIT_TIMEOUT", 0.3)
    meta = probe(repo, monkeypatch)
    assert meta is not None and (meta.dirty, meta.diff) == (None, None)
    assert git_reasons() == dict.fromkeys(
        ["git.diff", "git.dirty"], "git diff timed out after 0.3 s; recorded dirty and diff as None"
    )
    assert term.read_text().strip() == "term"


def test_reasons_for_status_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "repo")
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    probe(repo, monkeypatch)
    missing = "no git binary on $PATH; recorded dirty and diff as None"
    assert git_reasons() == {"git.diff": missing, "git.dirty": missing}
    monkeypatch.setenv("PATH", str(fake_bin(tmp_path / "bin", "git", "exit 128\n")))
    tango_stepinfo.clear_cache()
    probe(repo, monkeypatch)
    failed = "git diff exited with 128; recorded dirty and diff as None"
    assert git_reasons() == {"git.diff": failed, "git.dirty": failed}
    tango_stepinfo.clear_cache()
    probe(make_repo(tmp_path / "unborn", commit=False), monkeypatch)  # git status alone
    failed = "git status exited with 128; recorded dirty and diff as None"
    assert git_reasons() == {"git.diff": failed, "git.dirty": failed}
    monkeypatch.chdir(repo)
    monkeypatch.setenv(
        "PATH", os.environ["PATH"].replace(str(tmp_path / "bin"), str(Path(GIT).parent))
    )  # type: ignore[arg-type]
    tango_stepinfo.clear_cache()
    meta = probe(repo, monkeypatch)
    assert meta is not None and meta.dirty is False
    assert git_reasons() is None  # a check that works again clears the reasons


def test_a_refreshing_git_status_gets_the_longer_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopping the one git status that refreshes a copied checkout's index would leave it
    stale for every later process: it may take REFRESH_TIMEOUT, the others GIT_TIMEOUT."""
    repo, copy = copied_repo(tmp_path)
    slow = f'{shutil.which("sleep")} 0.5\nexec "{GIT}" "$@"\n'
    monkeypatch.setenv("PATH", str(fake_bin(tmp_path / "bin", "git", slow)))
    monkeypatch.setattr(_git, "GIT_TIMEOUT", 0.2)
    monkeypatch.setattr(_git, "REFRESH_TIMEOUT", 20.0)
    meta = probe(copy, monkeypatch)
    assert meta is not None and (meta.dirty, meta.diff) == (False, None)
    assert index_inode(copy, "f000.txt") == (copy / "f000.txt").stat().st_ino
    meta = probe(repo, monkeypatch)  # a fresh index: git diff alone, the usual timeout
    assert meta is not None and (meta.dirty, meta.diff) == (None, None)
    assert git_reasons() == dict.fromkeys(
        ["git.diff", "git.dirty"],
        "git diff timed out after 0.2 s; recorded dirty and diff as None",
    )


def test_a_prefetched_diff_bigger_than_a_pipe_is_read_late(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``StepInfo()`` starts ``git diff`` before probing the platform, which may take longer than
    the timeout (a slow ``nvidia-smi``): a diff bigger than the pipe's buffer waits, blocked, for
    its reader meanwhile. That wait is not the child's: its output is still read in full."""
    repo = make_repo(tmp_path / "repo")
    for name in ("a", "b", "c"):
        (repo / name).write_text(name)
        backdate(repo / name)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "more")
    (repo / "file.txt").write_text("changed line\n" * 100_000)  # 1.3 MB of diff
    assert not _git._index_is_stale(_git.find(str(repo)), git(repo, "rev-parse", "HEAD"))
    monkeypatch.setattr(_git, "GIT_TIMEOUT", 1.0)
    monkeypatch.chdir(repo)
    _probe.prefetch_git()
    threading.Event().wait(1.5)  # the platform probe, slower than GIT_TIMEOUT
    meta = GitMetadata.check_for_repo()
    assert meta is not None
    assert (meta.dirty, meta.diff) == (True, diff_hash(repo))
    assert git_reasons() is None


def test_diff_relative_config_does_not_hide_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``diff.relative=true`` in the user's config limits ``git diff`` to the working directory:
    a step run in a subfolder must still see a change outside it, and hash the whole diff."""
    repo = make_repo(tmp_path / "repo")
    (repo / "sub").mkdir()
    for name in ("a", "b", "c"):
        (repo / "sub" / name).write_text(name)
        backdate(repo / "sub" / name)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "sub")
    git(repo, "config", "diff.relative", "true")
    (repo / "file.txt").write_text("changed outside sub\n")
    assert not _git._index_is_stale(_git.find(str(repo)), git(repo, "rev-parse", "HEAD"))
    meta = probe(repo / "sub", monkeypatch)
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == "M file.txt"
    assert meta is not None
    assert (meta.dirty, meta.diff) == (True, diff_hash_at_root(repo))


def diff_hash_at_root(repo: Path) -> Optional[str]:
    """:func:`diff_hash` of the whole tree, whatever ``diff.relative`` says."""
    argv = [str(GIT), "-c", "diff.relative=false", *DIFF_COMMAND]
    out = subprocess.run(argv, cwd=repo, check=True, capture_output=True)
    return hashlib.sha256(out.stdout).hexdigest() if out.stdout else None


SIGNAL_DURING_DIRTY_CHECK = """
import signal, sys
from tango_stepinfo import StepInfo, _probe
handled = []
def handler(signum, frame):  # a SIGTERM handler writing a step's last record, say
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # the handler's own git check signals again
    handled.append(StepInfo("h", "H", set(), True).environment.git is not None)
signal.signal(signal.SIGUSR1, handler)
signal.alarm(20)  # a deadlock ends the process instead of the test run
facts = _probe.git()  # not a StepInfo: its dirty check runs here, under the git lock
print(handled, facts is not None and facts[3] is not None)
"""


@pytest.mark.skipif(not hasattr(os, "posix_spawn"), reason="the signal comes from a child")
def test_a_signal_handler_making_a_record_during_the_dirty_check_does_not_hang(
    tmp_path: Path,
) -> None:
    """A handler runs in the thread it interrupts: one that makes a record while that thread
    waits for ``git status`` (holding the lock of the dirty checks) must not wait for it."""
    repo = make_repo(tmp_path / "repo")
    done = run_signalled(SIGNAL_DURING_DIRTY_CHECK, tmp_path / "bin", "git", GIT, cwd=repo)
    assert done.returncode == 0, "the handler's record deadlocked on the git lock"
    assert done.stdout.decode().split() == ["[True]", "True"]


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_NOFILE is POSIX")
@pytest.mark.parametrize("layout", ["plain", "worktree"])
def test_git_files_not_opened_for_want_of_file_descriptors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    """``EMFILE`` opening the repository's files (a process that leaked its files) is no
    answer: the record's git is ``None`` with the reason noted, not an unborn branch or no
    repository at all, and nothing of it is kept: the next record reads the repository."""
    repo = make_repo(tmp_path / "repo")
    where = repo
    if layout == "worktree":
        where = tmp_path / "tree"
        git(repo, "worktree", "add", "-q", "-b", "feature", str(where))
    monkeypatch.chdir(where)
    expected = (git(where, "rev-parse", "HEAD"), None, "main" if layout == "plain" else "feature")
    with no_free_fd():
        assert _git.facts(str(where)) is None
        reasons = _fallbacks.collect(["git"])
    assert reasons is not None and set(reasons) == {"git"}
    assert "Too many open files" in reasons["git"], reasons
    found = _git.facts(str(where))
    assert found is not None and found[:3] == expected
    assert _fallbacks.collect(["git"]) is None


def test_leaving_a_repository_drops_its_reasons(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reasons of a repository's fallbacks (a failing ``git diff``) belong to records made
    in it: a record made outside any repository afterwards has ``git`` ``None`` and none of
    them."""
    repo = make_repo(tmp_path / "repo")
    outside = tmp_path / "outside"
    outside.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.setenv("PATH", str(fake_bin(tmp_path / "bin", "git", "exit 3\n")))
    found = _git.facts(str(repo))
    assert found is not None and found[3:] == (None, None)
    assert set(_fallbacks.collect(["git"]) or {}) == {"git.dirty", "git.diff"}
    assert _git.facts(str(outside)) is None
    assert _fallbacks.collect(["git"]) is None


INTERRUPT_DURING_DIRTY_CHECK = """
import os, signal
from tango_stepinfo import StepInfo
def handler(signum, frame):  # Ctrl-C, or a SIGTERM handler that raises
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # the next record's git signals again
    raise KeyboardInterrupt
signal.signal(signal.SIGUSR1, handler)
signal.alarm(20)  # a deadlock ends the process instead of the test run
fds = set(os.listdir("/proc/self/fd"))
try:
    StepInfo("a", "A", set(), True)
    print("not-interrupted")
except KeyboardInterrupt:
    print("interrupted")
git = StepInfo("b", "B", set(), True).environment.git
try:
    left = os.waitpid(-1, os.WNOHANG)
except ChildProcessError:
    left = "none"
opened = [f"/proc/self/fd/{n}" for n in sorted(set(os.listdir("/proc/self/fd")) - fds)]
print(git.dirty, git.diff is not None, "children", left, "fds", len(opened),
      *map(os.readlink, filter(os.path.exists, opened)))
"""


@pytest.mark.skipif(not hasattr(os, "posix_spawn"), reason="the signal comes from a child")
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts fds in /proc/self/fd")
@pytest.mark.parametrize("delay", ["0", "0.3"], ids=["at-start", "while-waited-for"])
def test_an_interrupted_dirty_check_leaves_no_child_and_the_next_record_is_right(
    tmp_path: Path, delay: str
) -> None:
    """A ``KeyboardInterrupt`` raised while the first record's ``git diff`` runs, whether it
    comes while the other facts are probed or while the record waits for git, propagates; the
    next record gets the right answer, and no git child is left behind nor its pipe open."""
    repo = make_repo(tmp_path / "repo")
    (repo / "file.txt").write_text("changed\n")
    script = f'sleep {delay}\nkill -USR1 "$PPID"\nsleep 0.5\nexec "{GIT}" "$@"\n'
    done = run_python(
        INTERRUPT_DURING_DIRTY_CHECK,
        cwd=repo,
        PATH=str(fake_bin(tmp_path / "bin", "git", script)),
        GIT_CEILING_DIRECTORIES=str(tmp_path),
    )
    assert done.returncode == 0, done.stderr.decode()
    words = done.stdout.decode().split()
    if words[0] == "not-interrupted":
        # Python itself lost the exception: the handler ran inside a callback whose exceptions
        # are printed and ignored (importlib's module-lock weakref callback, as the first
        # record imports its probe modules; seen once in CI on 3.13). Not ours to propagate.
        lost = done.stderr.decode()
        assert "Exception ignored in" in lost and "KeyboardInterrupt" in lost, lost
        words[0] = "interrupted"
    assert words == [
        "interrupted",
        "True",
        "True",
        "children",
        "none",
        "fds",
        "0",
    ]


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_NOFILE is POSIX")
def test_a_git_child_not_started_for_want_of_file_descriptors_is_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``git diff`` that cannot be started for a passing shortage (no pipe: ``EMFILE``; no
    process: ``EAGAIN`` under ``RLIMIT_NPROC``) is a fallback of that record, not the answer
    for the commit: the next record runs it."""
    repo = make_repo(tmp_path / "repo")
    (repo / "file.txt").write_text("changed\n")
    with no_free_fd(spare=1):  # HEAD and the config are read, one file at a time
        found = _git.facts(str(repo))
        reasons = _fallbacks.collect(["git"])
    assert found is not None and found[0] == git(repo, "rev-parse", "HEAD")
    assert found[3:] == (None, None)
    assert reasons is not None and set(reasons) == {"git.dirty", "git.diff"}
    assert _git.facts(str(repo)) == (found[0], None, "main", True, diff_hash(repo))
    assert _fallbacks.collect(["git"]) is None


FIFO_PROBE = """
import signal, sys
signal.alarm(20)  # a hang ends the process instead of the test run
from tango_stepinfo import _git
found = _git.facts(sys.argv[1])
print(found[:3] if found else None)
"""


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
@pytest.mark.parametrize("where", ["include", "ref", "packed-refs", "config"])
def test_a_fifo_among_the_git_files_is_not_read(tmp_path: Path, where: str) -> None:
    """Opening a FIFO for reading waits for a writer, forever: a FIFO where a git file is read
    (a config include, a ref, ``packed-refs``, ``config``) is skipped as a file that is not
    there, and the record made."""
    repo = make_repo(tmp_path / "repo")
    commit = git(repo, "rev-parse", "HEAD")
    dotgit = repo / ".git"
    expected = [commit, None, "main"]
    if where == "include":
        os.mkfifo(dotgit / "extra")
        with open(dotgit / "config", "a") as f:
            f.write("[include]\n\tpath = extra\n")
    elif where == "ref":
        git(repo, "pack-refs", "--all")  # the commit stays readable from packed-refs
        os.mkfifo(dotgit / "refs" / "heads" / "main")
    elif where == "packed-refs":
        git(repo, "checkout", "-q", "--orphan", "unborn-here")  # read: the loose ref is not there
        os.mkfifo(dotgit / "packed-refs")
        expected = [None, None, "unborn-here"]
    else:
        (dotgit / "config").unlink()
        os.mkfifo(dotgit / "config")
    env = dict(os.environ, GIT_CEILING_DIRECTORIES=str(tmp_path), TANGO_STEPINFO_GIT_DIRTY="0")
    done = subprocess.run(
        [sys.executable, "-c", FIFO_PROBE, str(repo)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, "the probe hung on the FIFO"
    assert done.stdout.strip() == str(tuple(expected))


@pytest.mark.skipif(not hasattr(os, "posix_spawn"), reason="the child started ahead of need")
def test_a_record_made_by_a_handler_while_the_pending_child_is_finished_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signal handler's record, made in the thread about to collect the child started ahead
    of need (while it asks whether output waits), collects it itself; the interrupted thread
    then finds it done and keeps that answer, instead of collecting it again (a closed pipe,
    a reaped pid) and recording a failure over it."""
    import select

    repo = make_repo(tmp_path / "repo")
    (repo / "file.txt").write_text("changed\n")
    monkeypatch.chdir(repo)
    _git.prefetch(str(repo))
    assert _git._pending is not None
    real_poll = select.poll
    nested: List[object] = []

    class HandlerOnFirstPoll:
        def __init__(self) -> None:
            self.real = real_poll()

        def register(self, fd: int, mask: int) -> None:
            self.real.register(fd, mask)

        def poll(self, timeout: float) -> object:
            if not nested:  # as if a signal arrived here, its handler making a record
                nested.append(None)  # once: the handler's own check polls too
                nested[0] = _git.facts(str(repo))
            return self.real.poll(timeout)

    monkeypatch.setattr(select, "poll", HandlerOnFirstPoll)
    with _git._lock:
        _git._finish_pending()
    monkeypatch.setattr(select, "poll", real_poll)
    expected = (git(repo, "rev-parse", "HEAD"), None, "main", True, diff_hash(repo))
    assert nested == [expected]
    assert _git.facts(str(repo)) == expected
    assert _fallbacks.collect(["git"]) is None


EDITS = {
    # (committed, edited): each pair chosen so that the setting named beside it changes the diff
    "algo.txt": (  # diff.algorithm=patience and =histogram each give another diff
        "b\n{\n}\nc\n}\nc\n{\nc\n}\n}\na\n{\n",
        "}\nb\n}\n}\nb\n{\na\n{\nc\n}\n}\nb\n",
    ),
    "indent.py": (  # diff.indentHeuristic=false slides the added block
        "if x:\nif x:\nif x:\n\n\n    y\n    y\n    y\n",
        "if x:\n    y\n    y\nif x:\nif x:\nif x:\n\n\n    y\n    y\n    y\n",
    ),
    "long.txt": (  # diff.context, diff.interHunkContext, diff.suppressBlankEmpty
        "".join(f"{i}\n\n" for i in range(20)),
        "".join(f"{i}\n\n" if i not in (5, 12) else "edit\n\n" for i in range(20)),
    ),
    "caf\u00e9.txt": ("old\n", "new\n"),  # core.quotePath=false
    "zzz.txt": ("z\n", "zz\n"),  # diff.orderFile naming it first
}


def edited_clone(origin: Path, clone: Path) -> Path:
    """A clone of ``origin`` (see :func:`origin_for_edits`) with the edits of :data:`EDITS`."""
    git(origin.parent, "clone", "-q", str(origin), str(clone))
    for name, (_, new) in EDITS.items():
        (clone / name).write_text(new)
        backdate(clone / name)
    (clone / "bin.dat").write_bytes(bytes(range(255, -1, -1)) * 64)  # a binary patch: deflated
    backdate(clone / "bin.dat")
    git(clone, "status")  # a fresh index, as after any git command of the user's
    return clone


def origin_for_edits(path: Path) -> Path:
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    for name, (old, _) in EDITS.items():
        (path / name).write_text(old)
    (path / "bin.dat").write_bytes(bytes(range(256)) * 64)
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "first")
    return path


@pytest.mark.parametrize(
    "settings",
    [
        {"diff.algorithm": "patience"},
        {"diff.algorithm": "histogram"},
        {"diff.indentHeuristic": "false"},
        {"diff.context": "1"},
        {"diff.interHunkContext": "10"},
        {"diff.suppressBlankEmpty": "true"},
        {"core.quotePath": "false"},
        {"core.abbrev": "12"},
        {"core.compression": "9"},
        {"core.loosecompression": "0"},
        {"diff.orderFile": "{order}"},
        {"env:GIT_DIFF_OPTS": "--unified=1"},
        {
            "env:GIT_CONFIG_COUNT": "1",
            "env:GIT_CONFIG_KEY_0": "diff.context",
            "env:GIT_CONFIG_VALUE_0": "0",
        },
        {"env:GIT_CONFIG_PARAMETERS": "'diff.context'='0'"},
    ],
    ids=lambda settings: ",".join(f"{k}={v}" for k, v in settings.items()),
)
def test_the_same_edits_hash_the_same_whatever_the_diff_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: dict
) -> None:
    """The user's or the machine's diff settings change what ``git diff`` writes; the hash must
    not follow them, or two machines never share a cache key. It is that of the documented
    command run with git's defaults (a clone without the setting)."""
    origin = origin_for_edits(tmp_path / "origin")
    expected = diff_hash(edited_clone(origin, tmp_path / "plain"))
    assert expected is not None
    clone = edited_clone(origin, tmp_path / "configured")
    (tmp_path / "order").write_text("zzz.txt\n")
    for key, given in settings.items():
        value = given.replace("{order}", str(tmp_path / "order"))
        if key.startswith("env:"):
            monkeypatch.setenv(key[len("env:") :], value)
        else:
            git(clone, "config", key, value)
    assert diff_hash(clone) != expected  # the setting does change the command's output
    meta = probe(clone, monkeypatch)
    assert meta is not None
    assert (meta.dirty, meta.diff) == (True, expected)


@pytest.mark.parametrize("copied", [False, True], ids=["fresh", "copied"])
@pytest.mark.parametrize(
    "setting",
    ["diff.submodule=log", "diff.submodule=diff", "diff.ignoreSubmodules=all"],
)
def test_a_changed_submodule_hashes_the_same_whatever_the_submodule_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str, copied: bool
) -> None:
    """A submodule moved to a new commit is written as two ``Subproject commit`` lines by
    default; ``diff.submodule`` writes its log or its diff instead, ``diff.ignoreSubmodules``
    hides it (a change recorded as clean), from ``git status`` too (a copied checkout's first
    child)."""
    inner = make_repo(tmp_path / "inner")
    outer = make_repo(tmp_path / "outer")
    git(outer, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(inner), "sub")
    git(outer, "commit", "-q", "-m", "add sub")
    (outer / "sub" / "file.txt").write_text("moved on\n")
    git(outer / "sub", "commit", "-q", "-am", "moved on")
    expected = diff_hash(outer)
    assert expected is not None
    key, _, value = setting.partition("=")
    (tmp_path / "empty-gitconfig").write_text(
        f"[{key.split('.')[0]}]\n\t{key.split('.')[1]} = {value}\n"
    )
    assert diff_hash(outer) != expected  # the user's setting does change the command's output
    if copied:
        subprocess.run(["cp", "-a", str(outer), str(tmp_path / "copy")], check=True)
        outer = tmp_path / "copy"
        # a stale index: git status asks first
        assert _git._index_is_stale(_git.find(str(outer)), git(outer, "rev-parse", "HEAD"))  # type: ignore[arg-type]
    meta = probe(outer, monkeypatch)
    assert meta is not None
    assert (meta.dirty, meta.diff) == (True, expected)


def test_a_file_system_monitor_hook_is_not_run_by_git_diff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``core.fsmonitor`` naming a command makes ``git diff`` run it (git 2.39); the probe's
    ``git diff`` runs with an empty ``core.fsmonitor``, and still sees the edit."""
    repo = make_repo(tmp_path / "repo")
    three_more_files(repo)  # one edit among four: the index is not stale
    ran = tmp_path / "hook-ran"
    hook = tmp_path / "hook"
    hook.write_text(f'#!/bin/sh\necho "$@" >> "{ran}"\nexit 1\n')
    hook.chmod(0o755)
    git(repo, "config", "core.fsmonitor", str(hook))
    (repo / "file.txt").write_text("edited\n")
    expected = diff_hash(repo)
    assert ran.exists()  # the documented command does run it
    ran.unlink()
    assert not _git._index_is_stale(_git.find(str(repo)), git(repo, "rev-parse", "HEAD"))  # type: ignore[arg-type]
    meta = probe(repo, monkeypatch)
    assert meta is not None and (meta.dirty, meta.diff) == (True, expected)
    assert not ran.exists()


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown to another uid needs root"
)
@pytest.mark.parametrize("copied", [False, True], ids=["fresh", "copied"])
def test_a_repository_of_another_user_runs_none_of_its_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, copied: bool
) -> None:
    """git refuses a repository owned by another user ("dubious ownership", ``safe.directory``)
    found from the working directory, since its config can name commands (a clean filter, an
    ``fsmonitor`` hook): ``/tmp/.git`` made by someone else. Naming it with ``--git-dir``
    skips that check, so the probe must not: ``dirty`` and ``diff`` are unknown, and nothing
    that repository names is run."""
    monkeypatch.delenv("SUDO_UID", raising=False)
    repo = make_repo(tmp_path / "repo")
    three_more_files(repo)
    ran = tmp_path / "ran"
    hook = tmp_path / "hook"
    hook.write_text(f'#!/bin/sh\necho "$0 $*" >> "{ran}"\ncat\n')
    hook.chmod(0o755)
    git(repo, "config", "filter.evil.clean", str(hook))
    git(repo, "config", "core.fsmonitor", str(hook))
    (repo / ".git" / "info" / "attributes").write_text("* filter=evil\n")
    (repo / "file.txt").write_text("edited\n")
    if copied:
        subprocess.run(["cp", "-a", str(repo), str(tmp_path / "copy")], check=True)
        repo = tmp_path / "copy"
    subprocess.run(["chown", "-R", "12345:12345", str(repo)], check=True)
    status = subprocess.run([str(GIT), "status"], cwd=repo, capture_output=True, check=False)
    assert b"dubious ownership" in status.stderr  # what plain git says there
    assert not ran.exists()
    meta = probe(repo, monkeypatch)
    assert meta is not None
    assert meta.commit is not None  # read from the files: no command involved
    assert (meta.dirty, meta.diff) == (None, None)
    assert not ran.exists()
    reasons = git_reasons()
    assert reasons is not None and " exited with 12" in reasons["git.dirty"]  # 128 or 129


def test_a_replaced_commit_is_diffed_as_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``git replace`` makes git read another commit wherever the replaced one is named (a local
    ref, not fetched by clones): ``git diff <commit>`` then compares with the other's tree. The
    hash belongs to the recorded ``commit``, so it is that of a clone without the replacement."""
    origin = make_repo(tmp_path / "origin")
    repo = tmp_path / "repo"
    git(tmp_path, "clone", "-q", str(origin), str(repo))
    commit = git(repo, "rev-parse", "HEAD")
    (repo / "file.txt").write_text("other\n")
    git(repo, "commit", "-q", "-am", "other")
    other = git(repo, "rev-parse", "HEAD")
    git(repo, "reset", "-q", "--hard", commit)
    git(repo, "replace", commit, other)
    plain = tmp_path / "plain"
    git(tmp_path, "clone", "-q", str(origin), str(plain))
    for where in (repo, plain):
        (where / "file.txt").write_text("edited\n")
    expected = diff_hash(plain)
    assert expected is not None and diff_hash(repo) != expected  # git diff HEAD follows it
    meta = probe(repo, monkeypatch)
    assert meta is not None and meta.commit == commit
    assert (meta.dirty, meta.diff) == (True, expected)


def test_a_repository_git_cannot_read_is_not_answered_for_by_the_one_around_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``.git`` whose ``HEAD`` is corrupt is no repository to git, which then looks further
    up: a ``git -C <worktree>`` would answer for a repository around it (a home folder kept in
    git). The children look no higher than the checkout found."""
    outer = make_repo(tmp_path / "outer")
    (outer / "file.txt").write_text("changed in the outer repository\n")
    inner = make_repo(outer / "inner")
    (inner / ".git" / "HEAD").write_text("garbage\n")
    meta = probe(inner, monkeypatch)
    assert meta is not None and meta.commit is None
    assert (meta.dirty, meta.diff) == (None, None)
    reasons = git_reasons()
    assert reasons is not None and "git status exited with 128" in reasons["git.dirty"]


@pytest.mark.skipif(not hasattr(os, "posix_spawn"), reason="the child started ahead of need")
def test_a_child_started_ahead_of_need_is_stopped_before_the_process_exits(tmp_path: Path) -> None:
    """A process that started the dirty check's git child ahead of need and exits before any
    record read it (an interrupted record, then exit) stops it, and waits for it, at exit: left
    running, a git status refreshing a stale index held index.lock after the process ended, and
    the next git command of the same script (``python train.py && git commit``) failed."""
    repo = make_repo(tmp_path / "repo")
    (repo / "file.txt").write_text("changed\n")
    lock = tmp_path / "index.lock"  # what git removes when SIGTERM stops it
    script = (
        f'PATH="{os.environ["PATH"]}"\n'  # (sleep and rm; this PATH holds the fake git)
        f"trap 'sleep 0.05; rm -f \"{lock}\"; exit 143' TERM\n"
        f': > "{lock}"\n'  # (after the trap: once the lock is there, SIGTERM removes it)
        "sleep 30 & wait\n"
        f'exec "{GIT}" "$@"\n'
    )
    env = dict(os.environ, PATH=str(fake_bin(tmp_path / "bin", "git", script)))
    env["GIT_CEILING_DIRECTORIES"] = str(tmp_path)
    env.pop("TANGO_STEPINFO_GIT_DIRTY", None)
    code = (
        "import os, time\n"
        "from tango_stepinfo import _probe\n"
        "_probe.prefetch_git()\n"
        f"while not os.path.exists({str(lock)!r}):\n"
        "    time.sleep(0.01)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, env=env, check=False, timeout=60, stderr=-1
    )
    assert done.returncode == 0 and done.stderr == b"", done.stderr
    assert not lock.exists()  # removed before the process ended
