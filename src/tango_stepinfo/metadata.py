"""The metadata dataclasses: where and how a step ran.

These classes' module path, ``tango_stepinfo.metadata``, is part of the pickle format: pickles
name it, so the classes stay here for good.

Every field of :class:`PlatformMetadata` and :class:`EnvironmentMetadata` has a default factory
that probes this machine (see :mod:`tango_stepinfo._probe` for what each one reads and its
fallback). Passing a value explicitly never probes anything.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import __version__, _fallbacks, _probe
from ._record import FACTORY, Record, record_class

__all__ = [
    "EnvironmentMetadata",
    "GitMetadata",
    "GpuMetadata",
    "JobMetadata",
    "PlatformMetadata",
    "TangoMetadata",
]

_PROBED: Any = {"probe": True}
# Field metadata for the command line (see _facts.py and docs/format.rst, "Adding a field"):
# "label" names a field in show, diff and the capture summary ("diff_label" inside its diff
# group); "group" is the diff section it is listed under; "none" is how None prints;
# "show": False leaves it out of show; "cli": False out of all three.
_HIDDEN: Any = {"probe": True, "show": False}
_PROBED_SINCE_0_2: Any = {"since": "0.2.0", "probe": True}


def _fallbacks_of(cls_name: str) -> Callable[[], Optional[Dict[str, str]]]:
    """The default factory of a ``fallbacks`` field: the reasons noted for the class's fields.

    It runs after the other fields' factories (``fallbacks`` is the last field), so the reasons
    are those of the values the record just got.
    """
    names: List[str] = []

    def collect() -> Optional[Dict[str, str]]:
        if not names:
            cls = globals()[cls_name]
            names.extend(f.name for f in dataclasses.fields(cls) if f.name != "fallbacks")
        return _fallbacks.collect(names)

    return collect


@record_class  # @dataclass(init=False, eq=False, repr=False); see _record.FACTORY
class GitMetadata(Record):
    """The git checkout the step ran in.

    :ivar commit: the full hash of ``HEAD``, or ``None`` in a repository with no commits.
    :ivar remote: the URL of the ``origin`` remote (else of the first remote), with any user name
        and password removed; ``None`` when there is no remote.
    :ivar branch: the checked-out branch, ``None`` when ``HEAD`` is detached. Not in Tango.
    :ivar dirty: whether tracked files differ from ``HEAD``; ``None`` when unknown (no ``git``
        binary, the check timed out or is turned off). Not in Tango.
    :ivar diff: what the tracked files hold that ``HEAD`` does not: the SHA-256 (lowercase hex) of
        the output of ``git diff --binary --no-color --no-ext-diff --no-textconv --no-renames
        --src-prefix=a/ --dst-prefix=b/ HEAD``. ``None`` when the tree is clean, when there are
        no commits, or when it could not be computed. Untracked files are not part of it. Set
        exactly when ``dirty`` is true (when both are known). Not in Tango.
    """

    commit: Optional[str] = field(default=None, metadata={"none": "(no commits)"})
    remote: Optional[str] = field(default=None, metadata={"show": False})
    branch: Optional[str] = field(
        default=None, metadata={"since": "0.1.0", "show": False, "none": "(detached)"}
    )
    dirty: Optional[bool] = field(default=None, metadata={"since": "0.1.0", "none": "unknown"})
    diff: Optional[str] = field(default=None, metadata={"since": "0.2.0", "show": False})

    def __init__(
        self,
        commit: Optional[str] = None,
        remote: Optional[str] = None,
        branch: Optional[str] = None,
        dirty: Optional[bool] = None,
        diff: Optional[str] = None,
    ) -> None:
        self.commit = commit
        self.remote = remote
        self.branch = branch
        self.dirty = dirty
        self.diff = diff

    @classmethod
    def check_for_repo(cls) -> Optional[GitMetadata]:
        """Probe the git repository around the working directory, as Tango's method of that name.

        :returns: the repository's metadata, or ``None`` when the working directory is not inside
            a git repository. Never raises.
        """
        facts = _probe.git()
        return None if facts is None else cls(*facts)


LIBRARY = f"tango_stepinfo {__version__}"
"""This library's name and version, the default of :attr:`TangoMetadata.library`."""


def _tango_version() -> str:
    """The installed ai2-tango's version, else this library's (re-validating the package scan)."""
    return _probe.tango_version() or __version__


def _tango_in_environment() -> TangoMetadata:
    # EnvironmentMetadata's packages field, declared before this one, validated the package scan
    # microseconds ago: reading it again as it is saves a stat per sys.path folder per record.
    return TangoMetadata(_probe.tango_version(rescan=False) or __version__)


@record_class  # @dataclass(init=False, eq=False, repr=False); see _record.FACTORY
class TangoMetadata(Record):
    """The Tango the step ran under, and the library that wrote the record.

    :ivar version: the version of the installed ``ai2-tango`` distribution (found by the package
        scan of :attr:`EnvironmentMetadata.packages`) when there is one, else this library's
        version, as when this library stands in for Tango.
    :ivar library: the library that wrote the record, name and version
        (``"tango_stepinfo 0.2.0"``); ``None`` in records written before 0.2.0 or by Tango.
        Not in Tango.
    """

    version: str = field(default_factory=_tango_version, metadata=_PROBED)
    library: Optional[str] = field(default=LIBRARY, metadata={"since": "0.2.0"})

    def __init__(self, version: str = FACTORY, library: Optional[str] = LIBRARY) -> None:
        self.version = _tango_version() if version is FACTORY else version
        self.library = library


@record_class  # @dataclass(init=False, eq=False, repr=False); see _record.FACTORY
class GpuMetadata(Record):
    """A GPU visible to the process (see the concepts page for how GPUs are found). Not in Tango.

    :ivar name: the model: NVIDIA's ``Model`` line of the driver's ``information`` file; for AMD
        the ``gfx`` target from the KFD topology (``gfx90a``).
    :ivar uuid: its UUID (``GPU-...``).
    :ivar bus: its PCI bus id (``domain:bus:device.function``).
    :ivar driver: the version of its driver (``/proc/driver/nvidia/version``,
        ``/sys/module/amdgpu/version``).
    :ivar memory: its total memory in bytes (NVIDIA: from NVML; AMD: its VRAM banks); ``None``
        when unknown.
    """

    name: str
    uuid: Optional[str] = None
    bus: Optional[str] = None
    driver: Optional[str] = None
    memory: Optional[int] = None

    def __init__(
        self,
        name: str,
        uuid: Optional[str] = None,
        bus: Optional[str] = None,
        driver: Optional[str] = None,
        memory: Optional[int] = None,
    ) -> None:
        self.name = name
        self.uuid = uuid
        self.bus = bus
        self.driver = driver
        self.memory = memory


@record_class  # @dataclass(init=False, eq=False, repr=False); see _record.FACTORY
class JobMetadata(Record):
    """The batch job or CI run a process belongs to (see the concepts page for the order).

    :ivar system: ``"slurm"``, ``"beaker"``, ``"github-actions"``, ``"gitlab-ci"``, ``"pbs"``,
        ``"lsf"`` or ``"sge"``.
    :ivar id: the job's id; for an array task as the system names it: ``<job>_<task>``
        (Slurm), ``<job>[<index>]`` (LSF), ``<job>.<task>`` (SGE); PBS's id includes it.
    :ivar name: the job's or workflow's name, where the system gives one.
    :ivar url: the run's web page (GitHub Actions, GitLab CI), credentials removed.
    :ivar attempt: which attempt this is (Slurm restart count, GitHub run attempt).
    """

    system: str
    id: str
    name: Optional[str] = None
    url: Optional[str] = None
    attempt: Optional[str] = None

    def __init__(
        self,
        system: str,
        id: str,
        name: Optional[str] = None,
        url: Optional[str] = None,
        attempt: Optional[str] = None,
    ) -> None:
        self.system = system
        self.id = id
        self.name = name
        self.url = url
        self.attempt = attempt


_platform_fallbacks = _fallbacks_of("PlatformMetadata")
_environment_fallbacks = _fallbacks_of("EnvironmentMetadata")


def _gpus() -> Optional[List[GpuMetadata]]:
    facts = _probe.gpus()
    return None if facts is None else [GpuMetadata(*gpu) for gpu in facts]


def _job() -> Optional[JobMetadata]:
    facts = _probe.job()
    return None if facts is None else JobMetadata(*facts)


@record_class  # @dataclass(init=False, eq=False, repr=False); see _record.FACTORY
class PlatformMetadata(Record):
    """The machine a step ran on. Each field defaults to a probe of this machine.

    :ivar operating_system: ``platform.platform()``, e.g. ``Linux-6.1.0-x86_64-with-glibc2.36``.
    :ivar cpu_count: ``os.cpu_count()``; ``None`` when unknown.
    :ivar user: the login name; the numeric uid when the user has no name.
    :ivar host: the host name.
    :ivar cpu_model: the CPU's model name; ``None`` when unknown. Not in Tango (as every field
        below).
    :ivar cpu_usable: the CPUs this process may use: its CPU affinity, lowered by its cgroup's
        CPU quota (containers, batch jobs).
    :ivar memory: bytes of memory this process may use: the machine's, lowered by its cgroup's
        limit.
    :ivar gpus: the GPUs visible to the process: NVIDIA's in CUDA's order for ``PCI_BUS_ID``
        (filtered by ``CUDA_VISIBLE_DEVICES``), then AMD's in ROCm's order (filtered by
        ``ROCR_VISIBLE_DEVICES``); ``[]`` when a GPU driver is loaded but none is visible,
        ``None`` without NVIDIA or AMD GPU driver.
    :ivar container: ``"kubernetes"``, ``"apptainer"``, ``"podman"`` or ``"docker"``; ``None``
        when none is detected.
    :ivar fallbacks: for each field whose probe failed or fell back, one line saying why and
        what was recorded instead; ``None`` when every probe succeeded.
    """

    operating_system: str = field(
        default_factory=_probe.operating_system, metadata={**_HIDDEN, "label": "OS"}
    )
    cpu_count: Optional[int] = field(
        default_factory=_probe.cpu_count, metadata={**_HIDDEN, "label": "CPUs", "none": "unknown"}
    )
    user: str = field(default_factory=_probe.user, metadata=_HIDDEN)
    host: str = field(default_factory=_probe.host, metadata=_PROBED)
    cpu_model: Optional[str] = field(
        default_factory=_probe.cpu_model, metadata={**_PROBED_SINCE_0_2, "label": "CPU model"}
    )
    cpu_usable: Optional[int] = field(
        default_factory=_probe.cpu_usable, metadata={**_PROBED_SINCE_0_2, "label": "CPUs usable"}
    )
    memory: Optional[int] = field(
        default_factory=_probe.memory, metadata={**_PROBED_SINCE_0_2, "label": "memory (bytes)"}
    )
    gpus: Optional[List[GpuMetadata]] = field(
        default_factory=_gpus, metadata={**_PROBED_SINCE_0_2, "none": "(no GPU driver)"}
    )
    container: Optional[str] = field(default_factory=_probe.container, metadata=_PROBED_SINCE_0_2)
    # fallbacks stays the last field: its factory collects the reasons of the fields above.
    fallbacks: Optional[Dict[str, str]] = field(
        default_factory=_platform_fallbacks,
        metadata={**_PROBED_SINCE_0_2, "label": "platform fallbacks"},
    )

    def __init__(  # noqa: PLR0917 (positional, as the generated one and Tango's)
        self,
        operating_system: str = FACTORY,
        cpu_count: Optional[int] = FACTORY,
        user: str = FACTORY,
        host: str = FACTORY,
        cpu_model: Optional[str] = FACTORY,
        cpu_usable: Optional[int] = FACTORY,
        memory: Optional[int] = FACTORY,
        gpus: Optional[List[GpuMetadata]] = FACTORY,
        container: Optional[str] = FACTORY,
        fallbacks: Optional[Dict[str, str]] = FACTORY,
    ) -> None:
        self.operating_system = (
            _probe.operating_system() if operating_system is FACTORY else operating_system
        )
        self.cpu_count = _probe.cpu_count() if cpu_count is FACTORY else cpu_count
        self.user = _probe.user() if user is FACTORY else user
        self.host = _probe.host() if host is FACTORY else host
        self.cpu_model = _probe.cpu_model() if cpu_model is FACTORY else cpu_model
        self.cpu_usable = _probe.cpu_usable() if cpu_usable is FACTORY else cpu_usable
        self.memory = _probe.memory() if memory is FACTORY else memory
        self.gpus = _gpus() if gpus is FACTORY else gpus
        self.container = _probe.container() if container is FACTORY else container
        self.fallbacks = _platform_fallbacks() if fallbacks is FACTORY else fallbacks


@record_class  # @dataclass(init=False, eq=False, repr=False); see _record.FACTORY
class EnvironmentMetadata(Record):
    """The Python environment a step ran in. Each field defaults to a probe of this process.

    :ivar python: the Python version, ``platform.python_version()``.
    :ivar executable: the interpreter, ``sys.executable``.
    :ivar command: the command line of the process, shell-quoted, secrets redacted.
    :ivar root: the working directory.
    :ivar packages: the installed distributions as sorted ``(name, version)`` pairs, names
        normalised as PEP 503 does.
    :ivar git: the git checkout around the working directory; ``None`` outside one.
    :ivar tango: the Tango the step ran under and the library that wrote the record.
    :ivar implementation: the Python implementation, ``sys.implementation.name`` (``"cpython"``,
        ``"pypy"``). Not in Tango (as every field below).
    :ivar job: the batch job or CI run the process belongs to; ``None`` outside any.
    :ivar variables: the environment variables chosen by ``TANGO_STEPINFO_VARIABLES`` (by
        default a short list of settings that change results, such as ``CUDA_VISIBLE_DEVICES``
        and ``OMP_NUM_THREADS``), secret-looking names left out and values redacted; ``None``
        when the setting is empty. Not in Tango.
    :ivar privacy: ``"anonymous"`` when the record was made (or copied by
        :func:`tango_stepinfo.anonymize`) with user, host, paths and remote hidden; ``None``
        otherwise. Not in Tango.
    :ivar fallbacks: for each field whose probe failed or fell back (``"root"``, ``"git.dirty"``),
        one line saying why and what was recorded instead; ``None`` when every probe succeeded.
    """

    python: str = field(
        default_factory=_probe.python,
        metadata={**_HIDDEN, "label": "Python", "group": "Python", "diff_label": "version"},
    )
    executable: Path = field(
        default_factory=_probe.executable, metadata={**_HIDDEN, "group": "Python"}
    )
    command: str = field(default_factory=_probe.command, metadata={**_HIDDEN, "group": "Command"})
    root: Path = field(default_factory=_probe.root, metadata={**_HIDDEN, "group": "Command"})
    packages: Optional[List[Tuple[str, str]]] = field(
        default_factory=_probe.packages,
        metadata={**_HIDDEN, "group": "Packages", "none": "unknown"},
    )
    git: Optional[GitMetadata] = field(
        default_factory=GitMetadata.check_for_repo,
        metadata={"probe": True, "group": "Git", "none": "not a git repository"},
    )
    tango: Optional[TangoMetadata] = field(
        default_factory=_tango_in_environment, metadata={"probe": True, "cli": False}
    )
    implementation: Optional[str] = field(
        default_factory=_probe.implementation, metadata=_PROBED_SINCE_0_2
    )
    job: Optional[JobMetadata] = field(default_factory=_job, metadata=_PROBED_SINCE_0_2)
    variables: Optional[Dict[str, str]] = field(
        default_factory=_probe.variables, metadata={**_PROBED_SINCE_0_2, "none": "(not recorded)"}
    )
    privacy: Optional[str] = field(default_factory=_probe.privacy, metadata=_PROBED_SINCE_0_2)
    # fallbacks stays the last field: its factory collects the reasons of the fields above.
    fallbacks: Optional[Dict[str, str]] = field(
        default_factory=_environment_fallbacks,
        metadata={**_PROBED_SINCE_0_2, "label": "environment fallbacks"},
    )

    def __init__(  # noqa: PLR0917 (positional, as the generated one and Tango's)
        self,
        python: str = FACTORY,
        executable: Path = FACTORY,
        command: str = FACTORY,
        root: Path = FACTORY,
        packages: Optional[List[Tuple[str, str]]] = FACTORY,
        git: Optional[GitMetadata] = FACTORY,
        tango: Optional[TangoMetadata] = FACTORY,
        implementation: Optional[str] = FACTORY,
        job: Optional[JobMetadata] = FACTORY,
        variables: Optional[Dict[str, str]] = FACTORY,
        privacy: Optional[str] = FACTORY,
        fallbacks: Optional[Dict[str, str]] = FACTORY,
    ) -> None:
        self.python = _probe.python() if python is FACTORY else python
        self.executable = _probe.executable() if executable is FACTORY else executable
        self.command = _probe.command() if command is FACTORY else command
        self.root = _probe.root() if root is FACTORY else root
        self.packages = _probe.packages() if packages is FACTORY else packages
        self.git = GitMetadata.check_for_repo() if git is FACTORY else git
        self.tango = _tango_in_environment() if tango is FACTORY else tango
        self.implementation = (
            _probe.implementation() if implementation is FACTORY else implementation
        )
        self.job = _job() if job is FACTORY else job
        self.variables = _probe.variables() if variables is FACTORY else variables
        self.privacy = _probe.privacy() if privacy is FACTORY else privacy
        self.fallbacks = _environment_fallbacks() if fallbacks is FACTORY else fallbacks
