"""The machine probes: CPU model, usable CPUs, memory and container, on fake roots built from
real samples (tests/data/machine), every fallback made to happen, and on this machine's files."""

from __future__ import annotations

import os
import shutil
import sys
import threading
from pathlib import Path
from typing import Iterator, List, Optional

import pytest

import tango_stepinfo
from tango_stepinfo import PlatformMetadata, StepInfo, _fallbacks, _machine, _probe

from .conftest import DATA

MACHINE = DATA / "machine"
MEMTOTAL = 24731708 * 1024  # tests/data/machine/meminfo
LINUX = sys.platform == "linux"


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    tango_stepinfo.clear_cache()
    yield
    tango_stepinfo.clear_cache()


def fake_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tree: Optional[str] = None) -> Path:
    """A fake root: a sample tree (if any), plus the sample /proc/meminfo and /proc/cpuinfo."""
    root = tmp_path / "root"
    if tree is not None:
        shutil.copytree(MACHINE / tree, root)
    (root / "proc").mkdir(parents=True, exist_ok=True)
    shutil.copy(MACHINE / "meminfo", root / "proc" / "meminfo")
    shutil.copy(MACHINE / "cpuinfo" / "intel-xeon-e5620", root / "proc" / "cpuinfo")
    monkeypatch.setattr(_machine, "ROOT", str(root))
    return root


def affinity(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(count)), raising=False)


# --- CPU model ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sample", "model"),
    [
        ("intel-xeon-e5620", "Intel(R) Xeon(R) CPU           E5620  @ 2.40GHz"),
        ("amd-epyc-9654", "AMD EPYC 9654 96-Core Processor"),
        ("this-vm-2026-11-30", "Intel(R) Xeon(R) Processor"),
    ],
)
def test_cpu_model_of_real_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sample: str, model: str
) -> None:
    root = fake_root(tmp_path, monkeypatch)
    shutil.copy(MACHINE / "cpuinfo" / sample, root / "proc" / "cpuinfo")
    monkeypatch.setattr(sys, "platform", "linux")
    assert _machine.cpu_model() == model
    assert _fallbacks.collect(["cpu_model"]) is None


def test_cpu_model_without_a_model_name_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """arm64 kernels print no ``model name``: unknown, and not a fallback."""
    root = fake_root(tmp_path, monkeypatch)
    (root / "proc" / "cpuinfo").write_text("processor\t: 0\nBogoMIPS\t: 50.00\n\n")
    monkeypatch.setattr(sys, "platform", "linux")
    assert _machine.cpu_model() is None
    assert _fallbacks.collect(["cpu_model"]) is None


def test_cpu_model_of_a_loongarch_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """LoongArch kernels write ``Model Name`` capitalised, after a ``system type`` line
    (``show_cpuinfo`` in the kernel's ``arch/loongarch/kernel/proc.c``: ``"Model Name\\t\\t:
    %s\\n"``); the chip name here is a placeholder in the form the kernel builds it."""
    root = fake_root(tmp_path, monkeypatch)
    (root / "proc" / "cpuinfo").write_text(
        "system type\t\t: generic-loongson-machine\n\n"
        "processor\t\t: 0\npackage\t\t\t: 0\ncore\t\t\t: 0\nglobal_id\t\t: 0\n"
        "CPU Family\t\t: Loongson-64bit\nModel Name\t\t: Loongson-3A5000\n"
        "CPU Revision\t\t: 0x10\nFPU Revision\t\t: 0x00\nCPU MHz\t\t\t: 2500.00\n"
    )
    monkeypatch.setattr(sys, "platform", "linux")
    assert _machine.cpu_model() == "Loongson-3A5000"


def test_cpu_model_of_an_unreadable_cpuinfo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = fake_root(tmp_path, monkeypatch)
    (root / "proc" / "cpuinfo").unlink()
    (root / "proc" / "cpuinfo").mkdir()  # reading a folder: IsADirectoryError
    monkeypatch.setattr(sys, "platform", "linux")
    assert _machine.cpu_model() is None
    assert _fallbacks.collect(["cpu_model"]) == {
        "cpu_model": "cannot read /proc/cpuinfo (Is a directory); recorded None"
    }


def test_cpu_model_elsewhere_than_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert _machine.cpu_model() is None
    assert _fallbacks.collect(["cpu_model"]) is None


# --- cgroups: usable CPUs and memory ---------------------------------------------------------


@pytest.mark.parametrize(
    ("tree", "cpus", "memory"),
    [
        ("hybrid", 64, MEMTOTAL),
        ("hybrid-quota", 2, MEMTOTAL),
        ("v1-kubernetes", 2, MEMTOTAL),
        ("v1-slurm", 64, 17179869184),
        ("v1-slurm-quota", 3, 17179869184),
        ("v2-docker-limited", 6, 131072000),
        ("v2-docker-unlimited", 64, MEMTOTAL),
        ("v2-slurm", 64, 4194304000),
    ],
)
def test_cpu_usable_and_memory_of_real_cgroup_trees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tree: str, cpus: int, memory: int
) -> None:
    fake_root(tmp_path, monkeypatch, tree)
    affinity(monkeypatch, 64)
    assert _machine.cpu_usable() == cpus
    assert _machine.memory() == memory
    assert _fallbacks.collect(["cpu_usable", "memory"]) is None


def test_the_affinity_is_lower_than_the_quota(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_root(tmp_path, monkeypatch, "v2-docker-limited")  # 6 CPUs by quota
    affinity(monkeypatch, 4)  # taskset -c 0-3
    assert _machine.cpu_usable() == 4


def test_a_quota_rounds_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = fake_root(tmp_path, monkeypatch, "v2-docker-limited")
    affinity(monkeypatch, 64)
    (root / "sys/fs/cgroup/cpu.max").write_text("50000 100000\n")  # half a CPU
    assert _machine.cpu_usable() == 1


def test_no_cgroups_and_no_affinity_is_os_cpu_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_root(tmp_path, monkeypatch)  # no /proc/self at all
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 12)
    assert _machine.cpu_usable() == 12
    assert _machine.memory() == MEMTOTAL
    assert _fallbacks.collect(["cpu_usable", "memory"]) is None


def test_a_failing_affinity_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_root(tmp_path, monkeypatch, "v2-docker-unlimited")

    def fail(pid: int) -> object:
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(os, "sched_getaffinity", fail, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 12)
    assert _machine.cpu_usable() == 12
    assert _fallbacks.collect(["cpu_usable"]) == {
        "cpu_usable": "os.sched_getaffinity(0) failed (Invalid argument); used os.cpu_count()"
    }


@pytest.mark.parametrize("content", ["lots 100000\n", "max\n", "0 100000\n", "100 0\n"])
def test_a_malformed_cpu_max_is_ignored_with_a_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str
) -> None:
    root = fake_root(tmp_path, monkeypatch, "v2-docker-limited")
    affinity(monkeypatch, 64)
    (root / "sys/fs/cgroup/cpu.max").write_text(content)
    assert _machine.cpu_usable() == 64
    reasons = _fallbacks.collect(["cpu_usable"])
    assert reasons is not None
    assert reasons["cpu_usable"].startswith("cannot read the cpu limit in /sys/fs/cgroup (")
    assert reasons["cpu_usable"].endswith("); ignored it")


def test_a_malformed_memory_limit_is_ignored_with_a_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = fake_root(tmp_path, monkeypatch, "v2-slurm")
    user = "sys/fs/cgroup/system.slice/slurm-worker-1_slurmstepd.scope/job_4749/step_0/user"
    (root / user / "memory.max").write_text("4G\n")
    assert _machine.memory() == MEMTOTAL
    assert _fallbacks.collect(["memory"]) == {
        "memory": f"cannot read the memory limit in /{user} (invalid literal for int() with "
        "base 10: '4G'); ignored it"
    }


def test_unreadable_cgroup_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = fake_root(tmp_path, monkeypatch, "v2-docker-limited")
    affinity(monkeypatch, 64)
    (root / "proc/self/cgroup").unlink()
    (root / "proc/self/cgroup").mkdir()
    assert _machine.cpu_usable() == 64
    assert _machine.memory() == MEMTOTAL
    assert _fallbacks.collect(["cpu_usable", "memory"]) == {
        "cpu_usable": "cannot read the process's cgroups (Is a directory); ignored limits",
        "memory": "cannot read the process's cgroups (Is a directory); ignored limits",
    }


def test_memory_from_sysconf_when_meminfo_is_unreadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = fake_root(tmp_path, monkeypatch, "v2-docker-unlimited")
    (root / "proc/meminfo").unlink()
    (root / "proc/meminfo").mkdir()
    sizes = {"SC_PHYS_PAGES": 1000, "SC_PAGE_SIZE": 4096}
    monkeypatch.setattr(os, "sysconf", lambda name: sizes[name], raising=False)
    assert _machine.memory() == 4096000
    assert _fallbacks.collect(["memory"]) == {
        "memory": "cannot read /proc/meminfo (Is a directory); asked sysconf"
    }
    (root / "proc/meminfo").rmdir()
    (root / "proc/meminfo").write_text("MemFree: 1 kB\n")
    assert _machine.memory() == 4096000
    assert _fallbacks.collect(["memory"]) == {
        "memory": "no readable MemTotal line in /proc/meminfo; asked sysconf"
    }


def test_memory_unknown_without_meminfo_and_sysconf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = fake_root(tmp_path, monkeypatch)
    (root / "proc/meminfo").unlink()
    monkeypatch.delattr(os, "sysconf", raising=False)
    assert _machine.memory() is None
    assert _fallbacks.collect(["memory"]) is None  # nothing failed: nothing to ask


def test_mountinfo_paths_with_escaped_spaces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mountinfo writes a space in a path as ``\\040`` (proc(5))."""
    root = fake_root(tmp_path, monkeypatch)
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/cgroup").write_text("0::/my job\n")
    (root / "proc/self/mountinfo").write_text(
        "27 175 0:24 / /sys/fs/cgroup\\040x rw,nosuid shared:9 - cgroup2 cgroup rw,nsdelegate\n"
    )
    (root / "sys/fs/cgroup x/my job").mkdir(parents=True)
    (root / "sys/fs/cgroup x/my job/memory.max").write_text("1048576\n")
    assert _machine.memory() == 1048576


def test_cgroup_dirs_go_up_to_the_mount_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_root(tmp_path, monkeypatch, "v1-slurm")
    groups, why = _machine.cgroups()
    assert why is None
    found = _machine.cgroup_dirs("memory", groups)
    assert found == (
        1,
        [
            "/sys/fs/cgroup/memory/slurm/uid_2687/job_13759490/step_batch/task_0",
            "/sys/fs/cgroup/memory/slurm/uid_2687/job_13759490/step_batch",
            "/sys/fs/cgroup/memory/slurm/uid_2687/job_13759490",
            "/sys/fs/cgroup/memory/slurm/uid_2687",
            "/sys/fs/cgroup/memory/slurm",
            "/sys/fs/cgroup/memory",
        ],
    )
    assert _machine.cgroup_dirs("cpu", groups) is not None
    assert _machine.cgroup_dirs("pids", groups) is None  # in no such hierarchy here


def test_a_hybrid_system_reads_v1_controllers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_root(tmp_path, monkeypatch, "hybrid")
    groups = _machine.cgroups()[0]
    found = _machine.cgroup_dirs("memory", groups)
    assert found is not None and found[0] == 1
    assert found[1][0] == "/sys/fs/cgroup/memory/process_api/5579ab60734c4c5f96e851f4712c328d"
    assert _machine.cgroup_dirs("io", groups) == (2, ["/sys/fs/cgroup/unified"])


# --- container ---------------------------------------------------------------------------------

CONTAINER_VARS = (
    "KUBERNETES_SERVICE_HOST",
    "APPTAINER_CONTAINER",
    "SINGULARITY_CONTAINER",
)


@pytest.mark.parametrize(
    ("variables", "files", "expected"),
    [
        ((), (), None),
        ((), ("/.dockerenv",), "docker"),
        ((), ("/run/.containerenv",), "podman"),
        ((), ("/run/.containerenv", "/.dockerenv"), "podman"),
        (("SINGULARITY_CONTAINER",), ("/.dockerenv",), "apptainer"),
        (("APPTAINER_CONTAINER",), ("/run/.containerenv",), "apptainer"),
        (("KUBERNETES_SERVICE_HOST",), ("/.dockerenv",), "kubernetes"),
        (("KUBERNETES_SERVICE_HOST", "APPTAINER_CONTAINER"), ("/.dockerenv",), "apptainer"),
    ],
)
def test_container_in_priority_order(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    variables: List[str],
    files: List[str],
    expected: Optional[str],
) -> None:
    root = fake_root(tmp_path, monkeypatch)
    for name in CONTAINER_VARS:
        monkeypatch.delenv(name, raising=False)
    for name in variables:
        monkeypatch.setenv(name, "10.0.0.1" if name.startswith("KUBERNETES") else "/img.sif")
    for name in files:
        target = root / name.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("")
    assert _machine.container() == expected


def test_apptainer_inside_a_kubernetes_pod_is_apptainer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Apptainer passes most of the host's variables into its containers (the Apptainer user
    docs, "Environment and Metadata"), so a job it runs in a Kubernetes pod (an OSG pilot, a CI
    runner pod) sees the pod's ``KUBERNETES_SERVICE_HOST`` too. ``APPTAINER_CONTAINER`` is set
    only inside an Apptainer container: the innermost runtime is the one recorded."""
    fake_root(tmp_path, monkeypatch)
    for name in CONTAINER_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("APPTAINER_CONTAINER", "/cvmfs/unpacked.cern.ch/el9")
    assert _machine.container() == "apptainer"


# A Docker container's mountinfo: Docker bind-mounts /etc/resolv.conf, /etc/hostname and
# /etc/hosts from /var/lib/docker/containers/<id>/ into every container (the mount lines of
# ``mount`` in a container, as yeasy/docker_practice advanced_network/dns.md shows them).
DOCKER_MOUNTINFO = (
    "611 558 0:52 / / rw,relatime master:302 - overlay overlay rw,lowerdir=/var/lib/docker/"
    "overlay2/l/ABC:/var/lib/docker/overlay2/l/DEF,upperdir=/var/lib/docker/overlay2/123/diff\n"
    "624 611 254:1 /var/lib/docker/containers/0f1e2d/resolv.conf /etc/resolv.conf"
    " rw,relatime - ext4 /dev/vda1 rw\n"
    "625 611 254:1 /var/lib/docker/containers/0f1e2d/hostname /etc/hostname"
    " rw,relatime - ext4 /dev/vda1 rw\n"
    "626 611 254:1 /var/lib/docker/containers/0f1e2d/hosts /etc/hosts"
    " rw,relatime - ext4 /dev/vda1 rw\n"
)
# WSL 2 with a distribution imported from ``docker export``: the tarball keeps the container's
# /.dockerenv (docker/cli#3037; Arch-WSL shipped one, VSWSL/Arch-WSL#10, starship/starship#3862),
# but nothing is bind-mounted over /etc/hostname.
WSL_MOUNTINFO = (
    "60 62 8:48 / / rw,relatime - ext4 /dev/sdd rw,discard,errors=remount-ro,data=ordered\n"
    "84 60 0:60 / /mnt/c rw,noatime - 9p C:\\134 rw,aname=drvfs;path=C:\\;uid=1000;gid=1000\n"
)


@pytest.mark.parametrize(
    ("mountinfo", "expected"),
    [(DOCKER_MOUNTINFO, "docker"), (WSL_MOUNTINFO, None), (None, "docker")],
)
def test_a_dockerenv_left_behind_is_no_docker_container(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mountinfo: Optional[str], expected: str
) -> None:
    """``/.dockerenv`` counts only when ``/etc/hostname`` is a mount, as in every Docker container;
    without a readable mountinfo (no /proc) the file alone still counts."""
    root = fake_root(tmp_path, monkeypatch)
    for name in CONTAINER_VARS:
        monkeypatch.delenv(name, raising=False)
    (root / ".dockerenv").write_text("")
    if mountinfo is not None:
        (root / "proc/self").mkdir(parents=True)
        (root / "proc/self/mountinfo").write_text(mountinfo)
    assert _machine.container() == expected
    assert _fallbacks.collect(["container"]) is None


def test_container_uses_the_mountinfo_the_cgroups_were_read_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given the process's cgroups, the docker check reads /etc/hostname's mount from the same
    reading of mountinfo (read once for the first record), not from a second one."""
    root = fake_root(tmp_path, monkeypatch)
    for name in CONTAINER_VARS:
        monkeypatch.delenv(name, raising=False)
    (root / ".dockerenv").write_text("")
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/cgroup").write_text("0::/\n")
    (root / "proc/self/mountinfo").write_text(DOCKER_MOUNTINFO)
    found = _machine.cgroups()
    (root / "proc/self/mountinfo").write_text(WSL_MOUNTINFO)  # what a second reading would see
    assert _machine.container(found) == "docker"
    assert _machine.container() is None
    assert _machine.container((None, None)) is None  # no cgroups read: mountinfo read again


# --- the records -------------------------------------------------------------------------------


def test_platform_metadata_gets_the_machine_facts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_root(tmp_path, monkeypatch, "v2-docker-limited")
    affinity(monkeypatch, 64)
    monkeypatch.setattr(sys, "platform", "linux")
    for name in CONTAINER_VARS:
        monkeypatch.delenv(name, raising=False)
    platform = PlatformMetadata()
    assert platform.cpu_model == "Intel(R) Xeon(R) CPU           E5620  @ 2.40GHz"
    assert (platform.cpu_usable, platform.memory) == (6, 131072000)
    assert platform.container == "docker"
    assert platform.gpus is None  # no NVIDIA driver in this root
    assert platform.fallbacks is None
    data = platform.to_json_dict()
    assert data["cpu_usable"] == 6 and "cpu_usable" not in platform.to_json_dict(tango_compat=True)
    assert PlatformMetadata.from_json_dict(data) == platform


def test_machine_facts_are_probed_once_by_16_racing_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_root(tmp_path, monkeypatch, "v2-docker-limited")
    calls: List[str] = []
    real_read = _machine.read

    def counting_read(name: str) -> str:
        calls.append(name)
        return real_read(name)

    monkeypatch.setattr(_machine, "read", counting_read)
    barrier = threading.Barrier(16)
    results: List[PlatformMetadata] = []

    def work() -> None:
        barrier.wait()
        results.append(PlatformMetadata())

    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 16 and len({repr(r) for r in results}) == 1
    # cpu_usable and memory read the cgroup files once for both, and meminfo once.
    assert calls.count("/proc/self/cgroup") == 1
    assert calls.count("/proc/meminfo") == 1
    calls.clear()
    PlatformMetadata()
    assert calls == []  # later records read nothing
    tango_stepinfo.clear_cache()
    PlatformMetadata()
    assert calls.count("/proc/meminfo") == 1  # clear_cache probes again


def test_refresh_reprobes_the_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = fake_root(tmp_path, monkeypatch, "v2-docker-limited")
    info = StepInfo("a", "A", set(), True)
    assert info.platform.memory == 131072000
    (root / "sys/fs/cgroup/memory.max").write_text("max\n")
    assert StepInfo("b", "B", set(), True).platform.memory == 131072000  # cached
    info.refresh()
    assert info.platform.memory == MEMTOTAL


# --- this machine ------------------------------------------------------------------------------


def meminfo_total() -> Optional[int]:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def test_this_machine() -> None:
    """Whatever this machine's files hold, the facts agree with each other and the stdlib."""
    platform = PlatformMetadata()
    count = os.cpu_count()
    assert platform.cpu_usable is None or platform.cpu_usable >= 1
    if count is not None and platform.cpu_usable is not None:
        assert platform.cpu_usable <= count
    if hasattr(os, "sched_getaffinity") and platform.cpu_usable is not None:
        assert platform.cpu_usable <= len(os.sched_getaffinity(0))
    total = meminfo_total()
    if total is not None:
        assert platform.memory is not None and 0 < platform.memory <= total
    if LINUX and os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        assert platform.cpu_model == (names[0] if names else None)
    if os.path.exists("/proc/driver/nvidia/version"):
        assert platform.gpus is not None
    else:
        assert platform.gpus is None
    if not any(v in os.environ for v in CONTAINER_VARS) and os.path.exists("/.dockerenv"):
        # this development VM's root file system came from a container image: it has a
        # /.dockerenv but is no Docker container (no /etc/hostname bind mount, 2026-11-30)
        docker = " /etc/hostname " in Path("/proc/self/mountinfo").read_text()
        expected = ("docker", "podman") if docker else (None, "podman")
        assert platform.container in expected
    assert platform.fallbacks is None or all(
        isinstance(v, str) for v in platform.fallbacks.values()
    )
    assert _probe.implementation() == sys.implementation.name


# --- hostile files (review: none of these may raise, or read without bound) --------------------


@pytest.mark.parametrize(
    "line",
    [
        "MemTotal: \u00b2\u00b3 kB\n",  # str.isdigit() digits that int() refuses
        "MemTotal: " + "9" * 5000 + " kB\n",  # past Python's int-to-str digit limit
        "MemTotal:\n",
    ],
)
def test_a_hostile_memtotal_falls_back_to_sysconf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str
) -> None:
    root = fake_root(tmp_path, monkeypatch)
    (root / "proc/meminfo").write_text(line)
    sizes = {"SC_PHYS_PAGES": 1000, "SC_PAGE_SIZE": 4096}
    monkeypatch.setattr(os, "sysconf", lambda name: sizes[name], raising=False)
    assert _machine.memory() == 4096000
    reasons = _fallbacks.collect(["memory"]) or {}
    assert reasons["memory"] == "no readable MemTotal line in /proc/meminfo; asked sysconf"


@pytest.mark.parametrize(
    "field", ["/sys/fs/cgroup\\999", "/sys/fs/cgroup\\\u00b2\u00b2\u00b2", "\\04"]
)
def test_mountinfo_with_bad_escapes_is_read_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, field: str
) -> None:
    """A backslash not followed by three octal digits is kept (``\\999`` made int() raise)."""
    root = fake_root(tmp_path, monkeypatch)
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/cgroup").write_text("0::/\n")
    (root / "proc/self/mountinfo").write_text(
        f"27 175 0:24 / {field} rw,nosuid shared:9 - cgroup2 cgroup rw,nsdelegate\n"
    )
    assert _machine.memory() == MEMTOTAL
    assert _machine._unescape(field) == field


def test_binary_junk_in_every_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = fake_root(tmp_path, monkeypatch, "v2-docker-limited")
    junk = bytes(range(256)) * 64 + b"\\999:\x00:\n0::\xff\\\n - cgroup2"
    for name in ("proc/self/cgroup", "proc/self/mountinfo", "proc/meminfo", "proc/cpuinfo"):
        (root / name).write_bytes(junk)
    for name in ("cpu.max", "memory.max"):
        (root / "sys/fs/cgroup" / name).write_bytes(junk)
    monkeypatch.setattr(sys, "platform", "linux")
    assert _machine.cpu_model() is None
    assert _machine.cpu_usable() == (_machine._affinity() or os.cpu_count())
    assert _machine.memory() == _machine._sysconf()


def test_cpuinfo_is_read_only_up_to_a_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ``model name`` in a huge /proc/cpuinfo, or one line without end: reading stops."""
    root = fake_root(tmp_path, monkeypatch)
    monkeypatch.setattr(sys, "platform", "linux")
    reads: List[int] = []
    real_open = open

    class Counting:
        def __init__(self, name: str, mode: str) -> None:
            self.f = real_open(name, mode)

        def __enter__(self) -> Counting:
            return self

        def __exit__(self, *args: object) -> None:
            self.f.close()

        def readline(self, limit: int = -1) -> bytes:
            line: bytes = self.f.readline(limit)
            reads.append(len(line))
            return line

    monkeypatch.setattr(_machine, "open", Counting, raising=False)
    for content in (b"x" * (4 << 20), b"processor\t: 0\nBogoMIPS\t: 50.00\n\n" * 100_000):
        reads.clear()
        (root / "proc/cpuinfo").write_bytes(content + b"model name\t: late\n")
        assert _machine.cpu_model() is None
        assert sum(reads) <= _machine._CPUINFO_BUDGET + 4096


def test_a_v1_line_is_never_taken_for_the_v2_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hybrid system whose memory controller is in no v1 hierarchy: the limit is read at the
    ``0::`` path, not at the path of the first v1 line that lacks the controller."""
    root = fake_root(tmp_path, monkeypatch)
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/cgroup").write_text(
        "3:pids:/elsewhere\n1:name=systemd:/elsewhere\n0::/job\n"
    )
    (root / "proc/self/mountinfo").write_text(
        "32 31 0:29 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n"
        "33 31 0:30 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
    )
    for where, limit in (("elsewhere", "1000"), ("job", "2000")):
        (root / "sys/fs/cgroup/unified" / where).mkdir(parents=True)
        (root / "sys/fs/cgroup/unified" / where / "memory.max").write_text(limit)
    assert _machine.memory() == 2000


def test_a_cgroup_above_the_namespace_root_reads_the_mount_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a cgroup namespace a process moved out of it sees ``0::/../x``: never read outside
    the mount (``/sys/fs/cgroup/../x`` is ``/sys/fs/x``)."""
    root = fake_root(tmp_path, monkeypatch, "v2-docker-limited")
    (root / "proc/self/cgroup").write_text("0::/../../outside\n")
    (root / "sys/fs/outside").mkdir(parents=True)
    (root / "sys/fs/outside/memory.max").write_text("1000\n")
    groups = _machine.cgroups()[0]
    assert _machine.cgroup_dirs("memory", groups) == (2, ["/sys/fs/cgroup"])
    assert _machine.memory() != 1000


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("9223372036854771712\n", None),  # v1 "no limit", 4 KiB pages
        ("9223372036854710272\n", None),  # v1 "no limit", 64 KiB pages
        ("-1\n", "negative"),
    ],
)
def test_huge_and_negative_memory_limits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str, expected: Optional[str]
) -> None:
    """Without MemTotal and sysconf, v1's "no limit" must not be recorded as the memory."""
    root = fake_root(tmp_path, monkeypatch, "v2-docker-limited")
    (root / "sys/fs/cgroup/memory.max").write_text(content)
    (root / "proc/meminfo").unlink()
    monkeypatch.delattr(os, "sysconf", raising=False)
    assert _machine.memory() is None
    reasons = _fallbacks.collect(["memory"]) or {}
    assert ("negative" in reasons.get("memory", "")) == (expected == "negative")


def test_a_cgroup_name_starting_with_two_dots_is_below_the_mount() -> None:
    assert _machine._join("/", "/sys/fs/cgroup", "/job/..x") == "/sys/fs/cgroup/job/..x"
    assert _machine._join("/", "/sys/fs/cgroup", "/job/../x") == "/sys/fs/cgroup"


def test_read_gives_the_whole_file_up_to_one_mib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_machine, "ROOT", str(tmp_path))
    (tmp_path / "proc").mkdir()
    lines = "".join(f"line {i}: é\n" for i in range(5000))  # 60 KB: several 16 KiB reads
    (tmp_path / "proc" / "meminfo").write_text(lines, encoding="utf-8")
    assert _machine.read("/proc/meminfo") == lines
    (tmp_path / "proc" / "big").write_bytes(b"x" * (3 << 19))  # 1.5 MiB
    assert _machine.read("/proc/big") == "x" * (1 << 20)
    (tmp_path / "proc" / "empty").write_bytes(b"")
    assert _machine.read("/proc/empty") == ""
    with pytest.raises(FileNotFoundError):
        _machine.read("/proc/missing")


# --- real-world cgroup layouts the sample trees do not show ------------------------------------

# The memory.stat of a Docker container on cgroup v1 (posted in an rstudio notes file, read with
# find_string "hierarchical_memory_limit 9223372036854771712"), its limit lines set as below.
MEMORY_STAT_V1 = """cache 139583488
rss 4206592
rss_huge 0
mapped_file 6574080
swap 0
pgpgin 368752
pgpgout 333647
pgfault 1484463
pgmajfault 402
inactive_anon 2228224
active_anon 1929216
inactive_file 41877504
active_file 97697792
unevictable 0
hierarchical_memory_limit {limit}
hierarchical_memsw_limit {limit}
total_cache 139583488
total_rss 4206592
"""


def v1_container_without_its_own_limit(root: Path, limit: int) -> Path:
    """A cgroup v1 container without a cgroup namespace whose limit is set on its parent: an ECS
    or Fargate task with only task-level memory (heroku/buildpacks-nodejs#220: the container's
    ``memory.limit_in_bytes`` is 9223372036854771712, the task has 512 MB), or a Kubernetes
    container without a limit under ``/kubepods`` (cloudfoundry/gosigar#56,
    VictoriaMetrics/VictoriaMetrics#699). The mount's root is the container's cgroup, so the
    parent's folder is not visible (moby/moby#34584); ``memory.stat`` gives the limit over the
    hierarchy (``hierarchical_memory_limit``, kernel ``Documentation/admin-guide/cgroup-v1/
    memory.rst`` section 5.2)."""
    cgroup = "/ecs/5a7b1c2d3e4f/9f8e7d6c5b4a"
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/cgroup").write_text(f"4:memory:{cgroup}\n")
    (root / "proc/self/mountinfo").write_text(
        f"396 394 0:24 {cgroup} /sys/fs/cgroup/memory ro,nosuid,nodev,noexec,relatime"
        " - cgroup cgroup rw,memory\n"
    )
    folder = root / "sys/fs/cgroup/memory"
    folder.mkdir(parents=True)
    (folder / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (folder / "memory.stat").write_text(MEMORY_STAT_V1.format(limit=limit))
    return folder


def test_a_v1_limit_set_on_an_invisible_parent_is_read_from_memory_stat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = fake_root(tmp_path, monkeypatch)
    v1_container_without_its_own_limit(root, 536870912)  # the task's 512 MiB
    assert _machine.memory() == 536870912
    assert _fallbacks.collect(["memory"]) is None


def test_memory_stat_without_a_limit_in_the_hierarchy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = fake_root(tmp_path, monkeypatch)
    folder = v1_container_without_its_own_limit(root, 9223372036854771712)
    assert _machine.memory() == MEMTOTAL
    (folder / "memory.limit_in_bytes").write_text("1048576\n")  # the container's own limit
    assert _machine.memory() == 1048576  # still the lowest
    assert _fallbacks.collect(["memory"]) is None


@pytest.mark.parametrize(
    "stat", ["cache 0\n", "hierarchical_memory_limit lots\n", "hierarchical_memory_limit -1\n"]
)
def test_a_memory_stat_without_a_readable_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stat: str
) -> None:
    """No line (a kernel that writes none) is no limit; a malformed one is a noted fallback."""
    root = fake_root(tmp_path, monkeypatch)
    folder = v1_container_without_its_own_limit(root, 0)
    (folder / "memory.stat").write_text(stat)
    assert _machine.memory() == MEMTOTAL
    reasons = _fallbacks.collect(["memory"])
    if stat.startswith("cache"):
        assert reasons is None
    else:
        assert reasons == {
            "memory": "cannot read hierarchical_memory_limit in /sys/fs/cgroup/memory/memory.stat;"
            " ignored it"
        }


def test_a_mount_whose_root_is_above_the_cgroup_namespace_is_no_place_to_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A container with its own cgroup namespace (Docker's default on v2) that bind-mounts the
    host's hierarchy (``-v /sys/fs/cgroup:/sys/fs/cgroup``): its cgroup is ``0::/`` and the
    mount's root, relative to the namespace's, is ``/../..`` (``kernfs_path_from_node`` in the
    kernel's ``fs/kernfs/dir.c``: "a relative path (which includes '..'s)"; cgroup_namespaces(7)).
    The mount point is the host's root cgroup, not the container's: the container's folder two
    levels below it cannot be named, so its limits are unknown, which is noted, never silently
    read as "no limit" from the host's root."""
    root = fake_root(tmp_path, monkeypatch)
    affinity(monkeypatch, 64)
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/cgroup").write_text("0::/\n")
    (root / "proc/self/mountinfo").write_text(
        "1012 1001 0:30 /../.. /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4"
        " - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"
    )
    scope = root / "sys/fs/cgroup/system.slice/docker-0f1e2d3c.scope"
    scope.mkdir(parents=True)
    (scope / "memory.max").write_text("1073741824\n")
    (scope / "cpu.max").write_text("200000 100000\n")
    assert _machine.cgroup_dirs("memory", _machine.cgroups()[0]) == (2, [])
    assert (_machine.cpu_usable(), _machine.memory()) == (64, MEMTOTAL)
    reason = (
        "the {} hierarchy is mounted from above this cgroup namespace's root (a bind mount of"
        " the host's): the process's cgroup cannot be located; ignored limits"
    )
    assert _fallbacks.collect(["cpu_usable", "memory"]) == {
        "cpu_usable": reason.format("cpu"),
        "memory": reason.format("memory"),
    }
