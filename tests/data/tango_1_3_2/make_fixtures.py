# mypy: ignore-errors
"""Produce the AI2 Tango 1.3.2 test fixtures in this folder.

Runs ONLY in a throwaway virtualenv that has the real Tango installed (Tango is never a
dependency of this project):

    PYENV_VERSION=3.11.7 python3.11 -m venv /tmp/tango-venv
    /tmp/tango-venv/bin/pip install ai2-tango==1.3.2 sqlitedict
    /tmp/tango-venv/bin/python tests/data/tango_1_3_2/make_fixtures.py   # from the repo root

Do NOT regenerate casually: the pickles and the sqlite file are test data that must keep
loading forever, exactly as they are. See README.md in this folder.

Everything below is written with real Tango objects and Tango's own code paths
(``StepInfo.to_json_dict()``, ``StepInfo.new_from_step()``, ``pickle.dumps`` of real
``StepInfo`` objects, a real ``tango run`` into a real ``LocalWorkspace``). Platform and
environment metadata are always passed explicitly except in the ``tango run`` for sqlite/,
which probes the machine it runs on (from a fixed temp dir that is not a git repository).
"""

import json
import os
import pickle
import platform
import shutil
import subprocess
import sys
from datetime import datetime
from importlib.metadata import version as dist_version
from pathlib import Path

# Set iteration order (dependencies) and therefore both the JSON list order and the pickle
# bytes depend on string hashing: pin it so reruns are byte-identical.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.execve(
        sys.executable,
        [sys.executable, *sys.argv],
        {**os.environ, "PYTHONHASHSEED": "0"},
    )

import pytz
from sqlitedict import SqliteDict
from tango.common.util import jsonify
from tango.step import Step, StepIndexer
from tango.step_info import (
    EnvironmentMetadata,
    GitMetadata,
    PlatformMetadata,
    StepInfo,
    TangoMetadata,
)
from tango.version import VERSION as TANGO_VERSION

assert TANGO_VERSION == "1.3.2", TANGO_VERSION

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[2]
SHARED_JSON = REPO_ROOT.parent / "shared" / "tango-1.3.2-json"
RUN_DIR = Path("/tmp/tango_1_3_2_fixture_run")  # fixed, so paths in the sqlite are stable
TANGO_BIN = Path(sys.executable).parent / "tango"

BASE_CASES = ["incomplete", "running", "completed", "failed", "uncacheable"]
PICKLE_PROTOCOLS = range(0, 6)
STEPINFO_FIELDS = [
    "unique_id",
    "step_class_name",
    "dependencies",
    "cacheable",
    "step_name",
    "version",
    "start_time",
    "end_time",
    "error",
    "result_location",
    "config",
    "metadata",
    "platform",
    "environment",
]


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def tango_time(*args) -> datetime:
    """A datetime built the way Tango's ``utc_now_datetime()`` builds one:
    ``datetime.utcnow().replace(tzinfo=pytz.utc)`` -- naive UTC wall time + pytz.utc."""
    return datetime(*args).replace(tzinfo=pytz.utc)


def iso(dt):
    return None if dt is None else dt.isoformat(timespec="microseconds")


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_tango_json(path: Path, step_info: StepInfo) -> None:
    """Exactly how the shared/ files were written: to_json_dict() + json.dumps(indent=2)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(step_info.to_json_dict(), indent=2, sort_keys=True) + "\n"
    path.write_text(text, encoding="ascii")  # ensure_ascii=True: always ASCII


def qualname(obj) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def explicit_values(si: StepInfo) -> dict:
    """The values a loader must produce, in a simple explicit JSON form."""
    extra = {k: v for k, v in vars(si).items() if k not in STEPINFO_FIELDS}
    return {
        "unique_id": si.unique_id,
        "step_name": si.step_name,
        "step_class_name": si.step_class_name,
        "version": si.version,
        "cacheable": si.cacheable,
        "dependencies": sorted(si.dependencies),
        "state": si.state.value,
        "start_time": iso(si.start_time),
        "end_time": iso(si.end_time),
        "error": si.error,
        "result_location": si.result_location,
        "config": si.config,
        "metadata": si.metadata,
        # exactly as Tango's to_json_dict() writes them (paths as str, tuples as lists)
        "platform": jsonify(si.platform),
        "environment": jsonify(si.environment),
        # instance attributes that are not dataclass fields (Tango sometimes adds some)
        "extra_attributes": jsonify(extra),
    }


def python_types(si: StepInfo) -> dict:
    env = si.environment
    out = {
        "object": qualname(si),
        "dependencies": qualname(si.dependencies),
        "start_time": None if si.start_time is None else qualname(si.start_time),
        "start_time.tzinfo": None if si.start_time is None else qualname(si.start_time.tzinfo),
        "end_time": None if si.end_time is None else qualname(si.end_time),
        "end_time.tzinfo": None if si.end_time is None else qualname(si.end_time.tzinfo),
        "platform": qualname(si.platform),
        "environment": qualname(env),
        "environment.executable": qualname(env.executable),
        "environment.root": qualname(env.root),
        "environment.packages": None if env.packages is None else qualname(env.packages),
        "environment.packages[i]": (
            None if not env.packages else sorted({qualname(p) for p in env.packages})
        ),
        "environment.git": None if env.git is None else qualname(env.git),
        "environment.tango": None if env.tango is None else qualname(env.tango),
    }
    return out


def pickled_globals(data: bytes) -> list:
    """Every (module, name) the unpickler looks up, as find_class receives them."""
    import io

    seen = []

    class Recorder(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) not in seen:
                seen.append((module, name))
            return super().find_class(module, name)

    Recorder(io.BytesIO(data)).load()
    return [f"{m}.{n}" for m, n in seen]


# --------------------------------------------------------------------------------------
# the five base records (same values as shared/tango-1.3.2-json)
# --------------------------------------------------------------------------------------


def base_platform() -> PlatformMetadata:
    return PlatformMetadata(
        operating_system="Linux-5.15.0-x86_64-with-glibc2.35",
        cpu_count=32,
        user="researcher",
        host="gpu-node-07",
    )


def base_git() -> GitMetadata:
    return GitMetadata(
        commit="3f9c2d1e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e",
        remote="https://github.com/example/project.git",
    )


def base_environment(**overrides) -> EnvironmentMetadata:
    kwargs = dict(
        python="3.10.12",
        executable=Path("/opt/conda/bin/python"),
        command="tango run experiment.jsonnet -w /data/ws",
        root=Path("/home/researcher/project"),
        packages=[("ai2-tango", "1.3.2"), ("numpy", "1.26.4"), ("torch", "2.1.0")],
        git=base_git(),
        tango=TangoMetadata(version="1.3.2"),
    )
    kwargs.update(overrides)
    return EnvironmentMetadata(**kwargs)


# Times of the shared JSON files, plus microseconds as utc_now_datetime() would have them.
START = tango_time(2024, 3, 10, 6, 59, 58, 123456)
END_COMPLETED = tango_time(2024, 3, 10, 7, 42, 3, 654321)
END_FAILED = tango_time(2024, 3, 10, 7, 0, 1, 500000)


def train_info(**overrides) -> StepInfo:
    kwargs = dict(
        unique_id="TrainStep-abc123",
        step_class_name="TrainStep",
        dependencies={"TokenizeStep-222", "DataStep-111"},
        cacheable=True,
        step_name="train",
        version="002",
        start_time=None,
        end_time=None,
        error=None,
        result_location=None,
        config={"data": {"ref": "DataStep-111", "type": "ref"}, "lr": 0.001, "type": "train"},
        metadata={"owner": "nlp-team"},
        platform=base_platform(),
        environment=base_environment(),
    )
    kwargs.update(overrides)
    return StepInfo(**kwargs)


def base_records() -> dict:
    return {
        "incomplete": train_info(),
        "running": train_info(start_time=START),
        "completed": train_info(
            start_time=START,
            end_time=END_COMPLETED,
            result_location="/data/ws/cache/TrainStep-abc123",
        ),
        "failed": train_info(
            start_time=START,
            end_time=END_FAILED,
            error="Traceback (most recent call last):\nValueError: bad learning rate",
        ),
        "uncacheable": StepInfo(
            unique_id="PrintStep-xyz",
            step_class_name="PrintStep",
            dependencies=set(),
            cacheable=False,
            platform=base_platform(),
            environment=base_environment(),
        ),
    }


def check_against_shared(case: str, si: StepInfo) -> None:
    """The rebuilt object must write the shared file (up to set order of dependencies)."""
    shared = json.loads((SHARED_JSON / f"{case}.json").read_text())
    mine = json.loads(json.dumps(si.to_json_dict()))
    shared["dependencies"] = sorted(shared["dependencies"])
    mine["dependencies"] = sorted(mine["dependencies"])
    assert mine == shared, (case, mine, shared)
    assert si.state.value == case, (si.state, case)


# --------------------------------------------------------------------------------------
# real Step objects for the step-reference case
# --------------------------------------------------------------------------------------


@Step.register("fixture_data")
class DataStep(Step):
    DETERMINISTIC = True
    CACHEABLE = True
    VERSION = "001"

    def run(self, n: int) -> list:  # type: ignore[override]
        return list(range(n))


@Step.register("fixture_tokenize")
class TokenizeStep(Step):
    DETERMINISTIC = True
    CACHEABLE = True

    def run(self, data: list) -> dict:  # type: ignore[override]
        return {"train": data, "test": data}


@Step.register("fixture_train")
class TrainStep(Step):
    DETERMINISTIC = True
    CACHEABLE = True
    VERSION = "002"

    def run(  # type: ignore[override]
        self, data: list, tokens: list, first: int, lr: float
    ) -> float:
        return lr


def step_refs_info() -> StepInfo:
    data = DataStep(step_name="data", n=3)
    tokenize = TokenizeStep(step_name="tokenize", data=data)
    tokens = StepIndexer(tokenize, "train")
    first = StepIndexer(data, 0)
    train = TrainStep(
        step_name="train",
        data=data,
        tokens=tokens,
        first=first,
        lr=0.001,
        # A raw config that holds the real Step / StepIndexer objects; new_from_step() turns
        # them into {"type": "ref", "ref": <unique_id>[, "key": <key>]}.
        step_config={
            "type": "fixture_train",
            "data": data,
            "tokens": tokens,
            "first": first,
            "lr": 0.001,
        },
        step_metadata={"owner": "nlp-team"},
    )
    si = StepInfo.new_from_step(
        train,
        start_time=START,
        end_time=END_COMPLETED,
        result_location=f"/data/ws/cache/{train.unique_id}",
        platform=base_platform(),
        environment=base_environment(),
    )
    return si


# --------------------------------------------------------------------------------------
# tiny real `tango run` into a LocalWorkspace
# --------------------------------------------------------------------------------------

STEPS_MODULE = '''\
from tango import Step


@Step.register("fixture_numbers")
class NumbersStep(Step):
    DETERMINISTIC = True
    CACHEABLE = True
    VERSION = "001"

    def run(self, n: int) -> list:
        return list(range(n))


@Step.register("fixture_shout")
class ShoutStep(Step):
    """Uncacheable: Tango records it, but never sets start/end time."""

    DETERMINISTIC = True
    CACHEABLE = False

    def run(self, value: int) -> str:
        return f"value is {value}!"


@Step.register("fixture_explode")
class ExplodeStep(Step):
    DETERMINISTIC = True
    CACHEABLE = True

    def run(self, data: list) -> int:
        raise ValueError(f"boom \\u2717 on {len(data)} items")


@Step.register("fixture_after")
class AfterStep(Step):
    """Depends on the failing step, so it never runs (stays incomplete)."""

    DETERMINISTIC = True
    CACHEABLE = True

    def run(self, x: int) -> int:
        return x + 1
'''

EXPERIMENT = {
    "steps": {
        "numbers": {"type": "fixture_numbers", "n": 3, "step_metadata": {"owner": "fixture"}},
        "shout": {"type": "fixture_shout", "value": {"type": "ref", "ref": "numbers", "key": 0}},
        "explode": {"type": "fixture_explode", "data": {"type": "ref", "ref": "numbers"}},
        "after_explode": {"type": "fixture_after", "x": {"type": "ref", "ref": "explode"}},
    }
}


def tango_run(run_name: str) -> subprocess.CompletedProcess:
    env = {
        "PATH": f"{TANGO_BIN.parent}:/usr/bin:/bin",
        "HOME": str(RUN_DIR / "home"),
        "LANG": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "TERM": "dumb",
    }
    cmd = [
        "tango",
        "--file-friendly-logging",
        "run",
        "experiment.json",
        "-w",
        "workspace",
        "-i",
        "fixture_steps",
        "-n",
        run_name,
    ]
    proc = subprocess.run(cmd, cwd=RUN_DIR, env=env, capture_output=True, text=True, check=False)
    # The run fails on purpose (one step raises), so tango exits 1.
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def load_sqlite(path: Path) -> dict:
    with SqliteDict(str(path), flag="r") as d:
        return {k: d[k] for k in d.keys()}  # noqa: SIM118 (SqliteDict)


def sqlite_expected(path: Path) -> dict:
    out = {}
    for key, si in sorted(load_sqlite(path).items()):
        assert isinstance(si, StepInfo)
        assert key == si.unique_id
        out[key] = explicit_values(si)
    return out


def make_sqlite(out_dir: Path) -> None:
    if RUN_DIR.exists():
        shutil.rmtree(RUN_DIR)
    (RUN_DIR / "home").mkdir(parents=True)
    (RUN_DIR / "fixture_steps.py").write_text(STEPS_MODULE)
    (RUN_DIR / "experiment.json").write_text(json.dumps(EXPERIMENT, indent=2) + "\n")
    out_dir.mkdir(parents=True, exist_ok=True)

    tango_run("first")
    shutil.copyfile(RUN_DIR / "workspace" / "stepinfo.sqlite", out_dir / "stepinfo.sqlite")
    write_json(out_dir / "expected.json", sqlite_expected(out_dir / "stepinfo.sqlite"))

    # Second `tango run` of the same experiment in the same workspace: numbers is a cache hit,
    # explode fails again (its metadata refreshed), and register_run() sets the non-field
    # attribute `name` on every StepInfo already present (see README).
    tango_run("second")
    shutil.copyfile(RUN_DIR / "workspace" / "stepinfo.sqlite", out_dir / "stepinfo_rerun.sqlite")
    write_json(out_dir / "expected_rerun.json", sqlite_expected(out_dir / "stepinfo_rerun.sqlite"))

    shutil.rmtree(RUN_DIR)


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------


def main() -> None:
    subdirs = ["json", "pickle", "expected", "sqlite"]
    for sub in subdirs:
        if (HERE / sub).exists():
            shutil.rmtree(HERE / sub)
        (HERE / sub).mkdir()

    # json/: the five shared files, byte for byte
    for case in BASE_CASES:
        shutil.copyfile(SHARED_JSON / f"{case}.json", HERE / "json" / f"{case}.json")

    # json/: more records written by real Tango
    completed = dict(
        start_time=START, end_time=END_COMPLETED, result_location="/data/ws/cache/TrainStep-abc123"
    )
    extra = {
        "git_null": train_info(**completed, environment=base_environment(git=None)),
        "packages_null": train_info(**completed, environment=base_environment(packages=None)),
        "tango_null": train_info(**completed, environment=base_environment(tango=None)),
        "cpu_count_null": train_info(
            **completed,
            platform=PlatformMetadata(
                operating_system="Linux-5.15.0-x86_64-with-glibc2.35",
                cpu_count=None,
                user="researcher",
                host="gpu-node-07",
            ),
        ),
        "unicode": train_info(
            step_name="entraînement-模型-🚀",
            start_time=START,
            end_time=END_FAILED,
            error=(
                "Traceback (most recent call last):\nValueError: taux «0.001» invalide ✗ 日本語 🚀"
            ),
            config={
                "data": {"ref": "DataStep-111", "type": "ref"},
                "lr": 0.001,
                "note": "naïve café ✓ Ω 日本語 🚀",
                "type": "train",
            },
            metadata={"owner": "équipe-nlp 🚀"},
            platform=PlatformMetadata(
                operating_system="Linux-5.15.0-x86_64-with-glibc2.35",
                cpu_count=32,
                user="chercheur-é",
                host="nœud-07",
            ),
            environment=base_environment(root=Path("/home/chercheur/projet-été")),
        ),
        "empty_dependencies": train_info(**completed, dependencies=set()),
        # .999999 shows that Tango truncates (never rounds) and drops the microseconds
        "microseconds": train_info(
            start_time=tango_time(2024, 3, 10, 6, 59, 58, 999999),
            end_time=tango_time(2024, 3, 10, 7, 42, 3, 1),
            result_location="/data/ws/cache/TrainStep-abc123",
        ),
        "step_refs": step_refs_info(),
    }
    for name, si in extra.items():
        write_tango_json(HERE / "json" / f"{name}.json", si)

    # pickle/ + expected/: the five base records
    records = base_records()
    pickle_globals = {}
    for case, si in records.items():
        check_against_shared(case, si)
        names = []
        for p in PICKLE_PROTOCOLS:
            data = pickle.dumps(si, protocol=p)
            fname = f"{case}.p{p}.pickle"
            (HERE / "pickle" / fname).write_bytes(data)
            names.append(fname)
            back = pickle.loads(data)
            assert back == si and back.to_json_dict() == si.to_json_dict()
            pickle_globals.setdefault(f"protocol {p}", set()).update(pickled_globals(data))
        write_json(
            HERE / "expected" / f"{case}.json",
            {
                "pickles": names,
                "values": explicit_values(si),
                "python_types": python_types(si),
                "to_json_dict": si.to_json_dict(),
            },
        )

    # pickle/ + expected/: lone metadata objects
    lone = {
        "platform_metadata": base_platform(),
        "environment_metadata": base_environment(),
        "git_metadata": base_git(),
    }
    for name, obj in lone.items():
        names = []
        for p in (2, 5):
            data = pickle.dumps(obj, protocol=p)
            fname = f"{name}.p{p}.pickle"
            (HERE / "pickle" / fname).write_bytes(data)
            names.append(fname)
            assert pickle.loads(data) == obj
            pickle_globals.setdefault(f"protocol {p}", set()).update(pickled_globals(data))
        write_json(
            HERE / "expected" / f"{name}.json",
            {"pickles": names, "type": qualname(obj), "values": jsonify(obj)},
        )
    # sqlite/: a real LocalWorkspace
    make_sqlite(HERE / "sqlite")
    import sqlite3

    for db in ("stepinfo.sqlite", "stepinfo_rerun.sqlite"):
        con = sqlite3.connect(HERE / "sqlite" / db)
        for (value,) in con.execute('SELECT value FROM "unnamed"'):
            key = "sqlite/ values (sqlitedict, protocol 5)"
            pickle_globals.setdefault(key, set()).update(pickled_globals(bytes(value)))
        con.close()

    # every module.name that find_class() is asked for, per protocol
    write_json(
        HERE / "expected" / "pickle_globals.json",
        {k: sorted(v) for k, v in sorted(pickle_globals.items())},
    )

    write_json(
        HERE / "produced_with.json",
        {
            "command": "/tmp/tango-venv/bin/python tests/data/tango_1_3_2/make_fixtures.py",
            "PYTHONHASHSEED": os.environ["PYTHONHASHSEED"],
            "python": platform.python_version(),
            "ai2-tango": TANGO_VERSION,
            "sqlitedict": dist_version("sqlitedict"),
            "pytz": dist_version("pytz"),
            "dill": dist_version("dill"),
            "pickle.HIGHEST_PROTOCOL": pickle.HIGHEST_PROTOCOL,
        },
    )

    total = sum(f.stat().st_size for f in HERE.rglob("*") if f.is_file())
    print(f"wrote fixtures into {HERE} ({total} bytes in total)")
    assert total < 1_000_000


if __name__ == "__main__":
    main()
