"""Measure the git dirty/diff check in large and copied checkouts, in fresh processes.

Usage::

    python benchmarks/git_copied.py [--files N] [--repeat R] [--python PY] [--keep DIR] [--floor]

Builds a repository of ``N`` tracked files (default 20,000; ``--files 100000`` for the target
of issue 12) in a temporary folder, then, for each kind of checkout and each setting of
``TANGO_STEPINFO_GIT_REFRESH`` (``1``: the default, the stale index is refreshed once; ``0``:
as before, ``git status`` with ``GIT_OPTIONAL_LOCKS=0`` in every process), makes the checkout
afresh and times the first ``StepInfo(...)`` of three processes in a row, one after the other:

- ``copy``: ``cp -a`` of the repository (new inodes and change times: the index is stale);
- ``clone``: a fresh ``git clone`` of it;
- ``unchanged``: the repository itself, whose index git wrote.

Each figure is the median over ``R`` repetitions (each with a new copy or clone). Times are
wall-clock milliseconds of ``StepInfo(...)`` alone (imports excluded); the git children it waits
for dominate. Only the standard library is used; git's user and system configuration are kept
out (``GIT_CONFIG_GLOBAL`` is an empty file, ``GIT_CONFIG_NOSYSTEM=1``).

``--floor`` measures instead what any correct check costs in the repository itself once its
index is fresh (``R`` interleaved rounds, default 9; median wall and CPU milliseconds of each
command, the CPU of a child summed over its threads): starting git at all, reading the index,
``lstat`` of every tracked file by ``find`` (C, one thread) and by Python, and git's own
checks (``git status`` as the probe runs it, with one thread, ``git diff-files``,
``git diff-index``). Proving that no tracked file changed takes an ``lstat`` of each (no
file-system monitor runs on Linux with git 2.39), so its cost bounds every design, a
cross-process cache of answers included.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"

WORKER = """
import time
import tango_stepinfo
start = time.perf_counter()
info = tango_stepinfo.StepInfo("step-1", "Step", set(), True)
took = time.perf_counter() - start
git = info.environment.git
print(took * 1000.0, git.dirty if git else "no-git")
"""


def git_env(home: Path) -> Dict[str, str]:
    empty = home / "empty-gitconfig"
    empty.write_text("")
    env = dict(os.environ, GIT_CONFIG_GLOBAL=str(empty), GIT_CONFIG_NOSYSTEM="1")
    for role in ("AUTHOR", "COMMITTER"):
        env[f"GIT_{role}_NAME"] = "Bench"
        env[f"GIT_{role}_EMAIL"] = "bench@example.com"
    for key in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OPTIONAL_LOCKS"):
        env.pop(key, None)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def build(repo: Path, files: int, env: Dict[str, str]) -> None:
    """A repository of ``files`` small tracked files, 1,000 per folder, one commit, packed."""
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, env=env, check=True)
    for i in range(files):
        folder = repo / f"d{i // 1000:03}"
        if i % 1000 == 0:
            folder.mkdir()
        (folder / f"f{i}.txt").write_text(f"line {i}\n")
    for args in (["add", "-A"], ["-c", "gc.auto=0", "commit", "-q", "-m", "files"], ["gc", "-q"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True)


def one_process(python: str, where: Path, env: Dict[str, str]) -> Tuple[float, bool]:
    """Milliseconds of the first ``StepInfo``, and whether the dirty check gave up (timed out)."""
    done = subprocess.run(
        [python, "-c", WORKER], cwd=where, env=env, capture_output=True, text=True, check=True
    )
    took, dirty = done.stdout.split()
    if dirty not in ("False", "None"):
        raise SystemExit(f"expected a clean checkout in {where}, got dirty={dirty}")
    return float(took), dirty == "None"


FLOOR = [
    ("git rev-parse HEAD (starting git)", ["git", "rev-parse", "HEAD"]),
    ("git ls-files (reading the index)", ["git", "ls-files", "--", "no/such/path"]),
    (
        "find: lstat of every file (C)",
        [
            "find",
            ".",
            "-path",
            "./.git",
            "-prune",
            "-o",
            "-type",
            "f",
            "-newer",
            ".git/index",
            "-print",
        ],
    ),
    ("git status (the probe's command)", ["git", "status", "--porcelain", "--untracked-files=no"]),
    (
        "git status, core.preloadIndex=false",
        ["git", "-c", "core.preloadIndex=false", "status", "--porcelain", "--untracked-files=no"],
    ),
    ("git diff-files --quiet", ["git", "diff-files", "--quiet"]),
    ("git diff-index --quiet HEAD", ["git", "diff-index", "--quiet", "HEAD", "--"]),
]
LSTAT_ALL = """
import os, subprocess, sys, time
paths = subprocess.run(["git", "ls-files", "-z"], capture_output=True, check=True).stdout
paths = [os.fsdecode(p) for p in paths.split(b"\\0") if p]
wall, cpu = time.perf_counter(), time.process_time()
for p in paths:
    os.lstat(p)
print((time.perf_counter() - wall) * 1000.0, (time.process_time() - cpu) * 1000.0)
"""


def floor(python: str, repo: Path, env: Dict[str, str], rounds: int) -> None:
    """Print the median wall and CPU milliseconds of each command of :data:`FLOOR` in ``repo``."""
    import resource

    env = dict(env, GIT_OPTIONAL_LOCKS="0")
    subprocess.run(
        ["git", "update-index", "-q", "--refresh"], cwd=repo, env=env, check=False
    )  # fresh index
    times: Dict[str, Tuple[List[float], List[float]]] = {}
    for _ in range(rounds):
        for name, argv in FLOOR:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(argv, cwd=repo, env=env, stdout=subprocess.DEVNULL, check=True)
            wall = (time.perf_counter() - start) * 1000.0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000.0
            times.setdefault(name, ([], []))[0].append(wall)
            times[name][1].append(cpu)
        done = subprocess.run(
            [python, "-c", LSTAT_ALL], cwd=repo, env=env, capture_output=True, check=True
        )
        wall, cpu = map(float, done.stdout.split())
        times.setdefault("Python os.lstat of every file", ([], []))[0].append(wall)
        times["Python os.lstat of every file"][1].append(cpu)
    print(f"{'command (in a checkout with a fresh index)':44} {'wall ms':>8} {'CPU ms':>8}")
    for name, (walls, cpus) in times.items():
        print(f"{name:44} {statistics.median(walls):8.1f} {statistics.median(cpus):8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--repeat", type=int, help="repetitions (default 3; --floor: 9)")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--keep", type=Path, help="build (or reuse) the repository here")
    parser.add_argument("--floor", action="store_true", help="time the floor of any check")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="git-copied-"))
    try:
        env = git_env(tmp)
        repo = args.keep if args.keep is not None else tmp / "repo"
        if not (repo / ".git").is_dir():
            build(repo, args.files, env)
        tracked = subprocess.run(
            ["git", "ls-files"], cwd=repo, env=env, capture_output=True, check=True
        ).stdout.count(b"\n")
        version = subprocess.run(
            ["git", "--version"], capture_output=True, text=True, check=True
        ).stdout.strip()
        print(f"{tracked} tracked files, {os.cpu_count()} CPUs, {version}")
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        if args.floor:
            floor(args.python, repo, env, args.repeat or 9)
            print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
            return
        args.repeat = args.repeat or 3
        print(f"milliseconds for the first StepInfo of each process, median of {args.repeat}")
        print()
        print(
            f"{'checkout':10} {'REFRESH':8} {'process 1':>10} {'process 2':>10} {'process 3':>10}"
        )
        for kind in ("copy", "clone", "unchanged"):
            for refresh in ("1", "0"):
                runs: List[List[float]] = [[], [], []]
                gave_up = [False, False, False]
                for _ in range(args.repeat):
                    where = tmp / "checkout"
                    if kind == "copy":
                        subprocess.run(["cp", "-a", str(repo), str(where)], check=True)
                    elif kind == "clone":
                        subprocess.run(
                            ["git", "clone", "-q", str(repo), str(where)], env=env, check=True
                        )
                    else:
                        where = repo
                    penv = dict(env, TANGO_STEPINFO_GIT_REFRESH=refresh)
                    for i in range(3):
                        took, none = one_process(args.python, where, penv)
                        runs[i].append(took)
                        gave_up[i] = gave_up[i] or none
                    if where != repo:
                        shutil.rmtree(where)
                cells = " ".join(
                    f"{statistics.median(r):9.1f}{'*' if g else ' '}" for r, g in zip(runs, gave_up)
                )
                print(f"{kind:10} {refresh:8} {cells}", flush=True)
        print()
        print("*: the dirty check gave up (git timed out) in at least one repetition")
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            shutil.rmtree(tmp / "checkout", ignore_errors=True)


if __name__ == "__main__":
    main()
