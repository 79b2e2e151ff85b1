"""The machine as this process sees it: CPU model, usable CPUs, memory and container.

Every file is read below :data:`ROOT` (``"/"``), the one indirection tests point at a fake root
built from real samples (``tests/data/machine``); :mod:`._gpu` reads through it too. Each probe
is a chain of small functions catching only the errors they expect; none raises. A file that
does not exist is absence (no cgroup limit, no container), not a fallback; a file that exists but
cannot be read or parsed is noted with :func:`tango_stepinfo._fallbacks.note`.

===================  ========================================================================
probe                value, then its fallbacks
===================  ========================================================================
:func:`cpu_model`    the first ``model name`` of ``/proc/cpuinfo`` (Linux; ``None`` elsewhere,
                     and on kernels that print none, as on ARM)
:func:`cpu_usable`   ``len(os.sched_getaffinity(0))`` (else ``os.cpu_count()``), lowered by the
                     CPU quota of the process's cgroup and its ancestors (v2 ``cpu.max``, v1
                     ``cpu.cfs_quota_us / cpu.cfs_period_us``), rounded up
:func:`memory`       ``MemTotal`` of ``/proc/meminfo`` (else ``SC_PHYS_PAGES * SC_PAGE_SIZE``),
                     lowered by the memory limit of the cgroup and its ancestors (v2
                     ``memory.max``, v1 ``memory.limit_in_bytes``); ``max`` or a value above
                     the machine's memory is no limit
:func:`container`    ``"kubernetes"`` (``$KUBERNETES_SERVICE_HOST`` set), ``"apptainer"``
                     (``$APPTAINER_CONTAINER`` or ``$SINGULARITY_CONTAINER``), ``"podman"``
                     (``/run/.containerenv``), ``"docker"`` (``/.dockerenv``), the first that
                     matches; ``None`` when none does
===================  ========================================================================

Cgroups are found as the kernel documents them (``Documentation/admin-guide/cgroup-v1`` and
``cgroup-v2.rst``): ``/proc/self/cgroup`` gives the process's cgroup in each hierarchy
(``ID:controllers:path``, ``0::path`` for v2), ``/proc/self/mountinfo`` where each hierarchy is
mounted (file system type ``cgroup`` with the controller among its super options, or
``cgroup2``) and which folder of the hierarchy is its root. A controller bound to a v1 hierarchy
is read there (v1 and hybrid systems), else in the v2 one. When the mount's root is not ``/``
(a container seeing part of the hierarchy) the path is taken relative to it; when the path is
outside it (a container without a cgroup namespace, moby/moby#34584), the mount point itself is
the process's cgroup.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, Iterator, List, Optional, Tuple

from . import _fallbacks

ROOT = "/"
"""The folder every probed path is read below; tests point it at a fake root."""


def path(name: str) -> str:
    """The path of the absolute ``name`` (``"/proc/cpuinfo"``) below :data:`ROOT`."""
    return os.path.join(ROOT, name.lstrip("/"))


def read(name: str) -> str:
    """The text of the file ``name`` below :data:`ROOT` (at most 1 MiB).

    :raises OSError: when it cannot be read (:class:`FileNotFoundError` when it does not exist).
    """
    with open(path(name), "rb") as f:
        return f.read(1 << 20).decode("utf-8", "replace")


def problem(e: OSError) -> str:
    """An error as a short phrase for a reason: its message, never a traceback."""
    return e.strerror or type(e).__name__


# --- CPU model ---------------------------------------------------------------------------------


def cpu_model() -> Optional[str]:
    """The first ``model name`` of ``/proc/cpuinfo``; ``None`` when there is none.

    Only the first lines are read (``/proc/cpuinfo`` of a 256-CPU machine is 300 kB and the
    kernel makes it as it is read).
    """
    _fallbacks.note("cpu_model", None)
    if sys.platform != "linux":
        return None
    try:
        with open(path("/proc/cpuinfo"), "rb") as f:
            for line in f:
                key, colon, value = line.partition(b":")
                if colon and key.strip() == b"model name":
                    return value.strip().decode("utf-8", "replace") or None
    except OSError as e:
        _fallbacks.note("cpu_model", f"cannot read /proc/cpuinfo ({problem(e)}); recorded None")
    return None


# --- cgroups -----------------------------------------------------------------------------------


def _unescape(field: str) -> str:
    """A mountinfo path field with its octal escapes (``\\040`` for a space) decoded."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _mounts(text: str) -> Iterator[Tuple[str, str, str, List[str]]]:
    """``(root, mount point, fs type, super options)`` of each cgroup line of a mountinfo."""
    for line in text.splitlines():
        before, dash, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if not dash or len(fields) < 5 or len(tail) < 2 or not tail[0].startswith("cgroup"):
            continue
        options = tail[2].split(",") if len(tail) > 2 else []
        yield _unescape(fields[3]), _unescape(fields[4]), tail[0], options


def _memberships(text: str) -> Iterator[Tuple[List[str], str]]:
    """``(controllers, path)`` of each line of ``/proc/self/cgroup`` (``[]`` for v2)."""
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            yield [c for c in parts[1].split(",") if c], parts[2]


def _join(mount_root: str, mount_point: str, cgroup: str) -> str:
    """The folder of ``cgroup`` in a hierarchy whose folder ``mount_root`` is at ``mount_point``."""
    if mount_root == "/":
        relative = cgroup
    elif cgroup == mount_root or cgroup.startswith(mount_root.rstrip("/") + "/"):
        relative = cgroup[len(mount_root) :]
    else:
        relative = ""  # outside the mount's root: the mount point is the process's cgroup
    relative = relative.strip("/")
    return mount_point.rstrip("/") + "/" + relative if relative else mount_point


def cgroup_dirs(controller: str) -> Optional[Tuple[int, List[str]]]:
    """The cgroup folders limiting ``controller`` for this process: ``(version, folders)``.

    The folders go from the process's cgroup up to the root of the mounted hierarchy (limits of
    ancestors apply too). ``None`` when the process is in no such hierarchy, or it is not
    mounted.

    :raises OSError: when ``/proc/self/cgroup`` or ``/proc/self/mountinfo`` cannot be read for
        another reason than not existing.
    """
    try:
        memberships = list(_memberships(read("/proc/self/cgroup")))
        mounts = list(_mounts(read("/proc/self/mountinfo")))
    except FileNotFoundError:
        return None  # no cgroups (or no /proc): absence
    for version, fs_type in ((1, "cgroup"), (2, "cgroup2")):
        for controllers, cgroup in memberships:
            if (version == 1) != (controller in controllers):
                continue
            for mount_root, mount_point, fs, options in mounts:
                if fs == fs_type and (version == 2 or controller in options):
                    return version, _ancestors(_join(mount_root, mount_point, cgroup), mount_point)
    return None


def _ancestors(folder: str, top: str) -> List[str]:
    found = [folder]
    while folder != top and folder.startswith(top.rstrip("/") + "/"):
        folder = folder.rsplit("/", 1)[0] or "/"
        found.append(folder)
    return found


def _lowest(
    key: str, controller: str, files: Callable[[int], Tuple[str, ...]], limit: Callable[..., object]
) -> Optional[int]:
    """The lowest limit of ``controller`` over the process's cgroup and its ancestors.

    ``files(version)`` names the files to read in each folder and ``limit(*texts)`` turns their
    texts into a limit (``None`` for none), raising :class:`ValueError` when they make no sense.
    A problem is noted under ``key``; the limit is then left out.
    """
    try:
        found = cgroup_dirs(controller)
    except OSError as e:
        _fallbacks.note(key, f"cannot read the process's cgroups ({problem(e)}); ignored limits")
        return None
    if found is None:
        return None
    version, folders = found
    lowest: Optional[int] = None
    for folder in folders:
        names = files(version)
        try:
            texts = [read(os.path.join(folder, name)) for name in names]
            value = limit(*texts)
        except FileNotFoundError:
            continue  # no limit set at this level (the root has none)
        except (OSError, ValueError) as e:
            why = problem(e) if isinstance(e, OSError) else str(e)
            where = os.path.join(folder, names[0])
            _fallbacks.note(key, f"cannot read {where} ({why}); ignored it")
            continue
        if isinstance(value, int) and (lowest is None or value < lowest):
            lowest = value
    return lowest


# --- usable CPUs -------------------------------------------------------------------------------


def _cpu_files(version: int) -> Tuple[str, ...]:
    return ("cpu.max",) if version == 2 else ("cpu.cfs_quota_us", "cpu.cfs_period_us")


def _cpu_limit(*texts: str) -> Optional[int]:
    """CPUs allowed by a quota: ``ceil(quota / period)``; ``None`` for no quota."""
    if len(texts) == 1:
        words = texts[0].split()  # v2: "max 100000" or "150000 100000"
        if len(words) != 2:
            raise ValueError(f"expected '$MAX $PERIOD', got {texts[0].strip()!r}")
        quota, period = words
    else:
        quota, period = texts[0].strip(), texts[1].strip()  # v1: -1 for no quota
    if quota == "max" or quota.startswith("-"):
        return None
    q, p = int(quota), int(period)
    if q <= 0 or p <= 0:
        raise ValueError(f"quota {q} over period {p}")
    return -(-q // p)


def _affinity() -> Optional[int]:
    getaffinity = getattr(os, "sched_getaffinity", None)
    if getaffinity is None:
        return None
    try:
        return len(getaffinity(0)) or None
    except OSError as e:
        _fallbacks.note(
            "cpu_usable", f"os.sched_getaffinity(0) failed ({problem(e)}); used os.cpu_count()"
        )
        return None


def cpu_usable() -> Optional[int]:
    """The CPUs this process may use: its affinity, lowered by its cgroup's CPU quota."""
    _fallbacks.note("cpu_usable", None)
    count = _affinity() or os.cpu_count()
    quota = _lowest("cpu_usable", "cpu", _cpu_files, _cpu_limit)
    if count is None or quota is None:
        return quota if count is None else count
    return min(count, quota)


# --- memory ------------------------------------------------------------------------------------


def _memory_files(version: int) -> Tuple[str, ...]:
    return ("memory.max",) if version == 2 else ("memory.limit_in_bytes",)


def _memory_limit(text: str) -> Optional[int]:
    value = text.strip()
    return None if value == "max" else int(value)


def _meminfo() -> Optional[int]:
    try:
        text = read("/proc/meminfo")
    except FileNotFoundError:
        return None
    except OSError as e:
        _fallbacks.note("memory", f"cannot read /proc/meminfo ({problem(e)}); asked sysconf")
        return None
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            words = line.split()
            if len(words) >= 2 and words[1].isdigit():
                return int(words[1]) * (1024 if words[2:3] == ["kB"] else 1)
    _fallbacks.note("memory", "no MemTotal line in /proc/meminfo; asked sysconf")
    return None


def _sysconf() -> Optional[int]:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # no sysconf, or no such name here
        return None
    return pages * size if pages > 0 and size > 0 else None


def memory() -> Optional[int]:
    """Bytes of memory this process may use: the machine's, lowered by its cgroup's limit."""
    _fallbacks.note("memory", None)
    total = _meminfo() or _sysconf()
    limit = _lowest("memory", "memory", _memory_files, _memory_limit)
    if total is None or limit is None:
        return limit if total is None else total
    return min(total, limit)


# --- container ---------------------------------------------------------------------------------


def container() -> Optional[str]:
    """The container runtime this process runs in, first match in the documented order."""
    env = os.environ
    if "KUBERNETES_SERVICE_HOST" in env:
        return "kubernetes"
    if "APPTAINER_CONTAINER" in env or "SINGULARITY_CONTAINER" in env:
        return "apptainer"
    if os.path.exists(path("/run/.containerenv")):
        return "podman"
    if os.path.exists(path("/.dockerenv")):
        return "docker"
    return None
