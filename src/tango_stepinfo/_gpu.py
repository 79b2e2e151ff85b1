"""The GPUs visible to this process, read from the NVIDIA driver's files: no subprocess, and no
library but NVML (through :mod:`ctypes`) for the memory of each GPU.

What is read (below :data:`tango_stepinfo._machine.ROOT`, as the machine probes read):

- ``/proc/driver/nvidia/version``: present when the NVIDIA kernel driver is loaded; its first
  line (``NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  ...``, or ``... Open
  Kernel Module for x86_64  565.57.01  Release Build ...``) gives ``driver``, the first word
  made of digits and dots. No such file: no NVIDIA driver, ``gpus`` is ``None``.
- ``/proc/driver/nvidia/gpus/*/information``, one per GPU the driver serves (the format of
  ``nv_procfs_read_gpu_info`` in the driver's ``nv-procfs.c``): ``Model`` gives ``name``,
  ``GPU UUID`` ``uuid``, ``Bus Location`` ``bus``. GPUs marked ``GPU Excluded: Yes`` are left
  out, as CUDA leaves them out.
- ``memory``: ``nvmlDeviceGetMemoryInfo().total`` of ``libnvidia-ml.so.1``, loaded with
  :mod:`ctypes` only when the driver is there. ``nvmlInit`` may take seconds on a node whose
  GPUs are not in persistence mode, and may hang on a broken one, so NVML is asked in a daemon
  thread, waited for at most :data:`NVML_TIMEOUT` (0.2 s); after that ``memory`` is ``None``
  and the reason noted. The thread is started first and overlaps with the other first probes.

Which GPUs, in which order. CUDA numbers GPUs by ``CUDA_DEVICE_ORDER``: its default,
``FASTEST_FIRST``, puts the fastest first (ties by PCI bus id); ``PCI_BUS_ID`` orders them by
PCI bus id, as ``nvidia-smi`` and NVML do. This module always orders by PCI bus id: on a node of
identical GPUs (every multi-GPU training node) both orders are the same; on a node mixing
models, the indices of ``CUDA_VISIBLE_DEVICES`` are read here as ``CUDA_DEVICE_ORDER=PCI_BUS_ID``
would read them, which is what such nodes should set. ``$CUDA_VISIBLE_DEVICES`` then filters
and orders them as CUDA reads it:

- unset: every GPU; empty, or ``-1``: none (``[]``);
- a comma-separated list of entries, each an index (read as C's ``strtoul`` reads it, so
  ``"1gpu"`` is ``1``), a ``GPU-`` UUID, or a prefix of one that matches exactly one GPU;
- the first entry that is none of these (out of range, negative, unknown, ambiguous) ends the
  list; a GPU named twice makes the whole list empty (CUDA sees no device then);
- ``MIG-`` entries name MIG instances, which these files do not list: every GPU is recorded,
  and the reason noted.

AMD GPUs are read from the KFD topology of the ``amdgpu`` driver, only when ``/sys/class/kfd``
exists (no such folder: no AMD driver). Each node of ``/sys/class/kfd/kfd/topology/nodes/<N>``
is a CPU or a GPU; its ``properties`` file holds ``key value`` lines (the keys of
``node_show`` in the kernel's ``drivers/gpu/drm/amd/amdkfd/kfd_topology.c``). A node is a GPU
when ``simd_count`` is above 0 and ``vendor_id`` is 4098 (0x1002, AMD); the GPUs are kept in
node order, the order in which ROCm numbers them.

- ``name``: the ``gfx`` target made from ``gfx_target_version`` (90010 is ``gfx90a``: major,
  then minor and stepping in hex), as ``rocminfo`` names the GPU; without one (kernels before
  5.14), the node's ``name`` file, the driver's lower-cased ASIC name (``vega20``), unless that
  says only ``ip discovery``.
- ``bus``: ``location_id`` is the PCI bus, device and function packed as the kernel's
  ``pci_dev_id`` packs them (``bus << 8 | device << 3 | function``), with ``domain``; written
  ``0000:BB:DD.F`` as the NVIDIA driver writes its ``Bus Location``.
- ``uuid``: a non-zero ``unique_id`` as ``GPU-`` and 16 lower-case hex digits, the form of the
  ROCm runtime's ``HSA_AMD_AGENT_INFO_UUID`` (``rocminfo``'s ``Uuid``).
- ``memory``: the sum of ``size_in_bytes`` of the node's ``mem_banks/*/properties`` whose
  ``heap_type`` is 1 or 2 (frame buffer public or private: VRAM); ``None`` for a GPU without
  such a bank (an APU's memory is the system's).
- ``driver``: ``/sys/module/amdgpu/version`` when present (the out-of-tree DKMS driver writes
  it; the in-kernel driver does not, and ``driver`` is ``None``).

``$ROCR_VISIBLE_DEVICES`` filters and orders the AMD GPUs as the ROCm runtime reads it (see
:func:`rocr_visible`). ``$HIP_VISIBLE_DEVICES`` (and ``$CUDA_VISIBLE_DEVICES``, which HIP also
reads) apply on top of that in HIP only and are not applied here: when ``HIP_VISIBLE_DEVICES``
is set, the AMD GPUs ROCm shows are all recorded and the reason noted.

NVIDIA GPUs come first, then AMD's; ``gpus`` is ``None`` only when neither driver is present.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

from . import _fallbacks
from ._machine import KFD, NVIDIA_VERSION, path, problem, read

if TYPE_CHECKING:  # type aliases only for the checker: subscripting typing costs at import
    import threading

    GpuFacts = Tuple[str, Optional[str], Optional[str], Optional[str], Optional[int]]
    """``(name, uuid, bus, driver, memory)``, the fields of ``GpuMetadata`` in order."""

NVML_LIBRARY = "libnvidia-ml.so.1"
"""The NVML library :mod:`ctypes` loads (a file name searched as ``dlopen`` does, or a path)."""

NVML_TIMEOUT = 0.2
"""Seconds the first record waits for NVML's answer before recording no ``memory``."""


# --- the driver's files ------------------------------------------------------------------------


def _driver_version(text: str) -> Optional[str]:
    """The version number of the first line of ``/proc/driver/nvidia/version``."""
    for word in text.split("\n", 1)[0].split():
        if "." in word and word.replace(".", "").isdigit():
            return word
    return None


def _information(text: str) -> Dict[str, str]:
    """The ``key: value`` lines of an ``information`` file."""
    found: Dict[str, str] = {}
    for line in text.splitlines():
        key, colon, value = line.partition(":")
        if colon:
            found.setdefault(key.strip(), value.strip())
    return found


def _bus_order(bus: Optional[str]) -> Tuple[int, ...]:
    """A PCI bus id ``domain:bus:device.function`` (hex) as numbers, to sort by; unknown last."""
    try:
        return tuple(int(part, 16) for part in (bus or "").replace(".", ":").split(":"))
    except ValueError:
        return (1 << 64,)


def _nvidia_files() -> Optional[List[GpuFacts]]:
    """Every GPU the driver serves, in PCI bus order, without memory; ``None`` without driver."""
    try:
        driver = _driver_version(read(NVIDIA_VERSION))
    except FileNotFoundError:
        return None  # no NVIDIA driver: absence
    except OSError as e:
        _fallbacks.note("gpus", f"cannot read {NVIDIA_VERSION} ({problem(e)})")
        driver = None
    try:
        entries = sorted(os.listdir(path("/proc/driver/nvidia/gpus")))
    except FileNotFoundError:
        return []
    except OSError as e:
        _fallbacks.note(
            "gpus", f"cannot list /proc/driver/nvidia/gpus ({problem(e)}); recorded None"
        )
        return None
    found: List[GpuFacts] = []
    for entry in entries:
        name = f"/proc/driver/nvidia/gpus/{entry}/information"
        try:
            info = _information(read(name))
        except OSError as e:
            _fallbacks.note("gpus", f"cannot read {name} ({problem(e)}); left that GPU out")
            continue
        if info.get("GPU Excluded") == "Yes":
            continue
        bus = info.get("Bus Location") or entry
        model = info.get("Model") or "unknown"
        found.append((model, info.get("GPU UUID") or None, bus, driver, None))
    found.sort(key=lambda gpu: _bus_order(gpu[2]))
    return found


# --- CUDA_VISIBLE_DEVICES ----------------------------------------------------------------------


def _strtoul(entry: str) -> Optional[int]:
    """The number ``entry`` starts with, as C's ``strtoul`` reads it; ``None`` if none or < 0."""
    text = entry.strip()
    sign = text[:1] if text[:1] in "+-" else ""
    digits = ""
    for ch in text[len(sign) :]:
        if not ch.isdigit() or not ch.isascii():
            break
        digits += ch
    digits = digits.lstrip("0") or ("0" if digits else "")
    if not digits or (sign == "-" and digits != "0"):
        return None
    return int(digits) if len(digits) < 20 else 1 << 64  # past any GPU; int() stops at 4300


def _by_uuid(entry: str, uuids: Sequence[Optional[str]]) -> Optional[int]:
    """The index of the one GPU whose UUID starts with ``entry``; ``None`` if none or several."""
    matches = [i for i, uuid in enumerate(uuids) if uuid is not None and uuid.startswith(entry)]
    return matches[0] if len(matches) == 1 else None


def visible(value: Optional[str], uuids: Sequence[Optional[str]]) -> Optional[List[int]]:
    """The indices (into ``uuids``, in PCI bus order) of the GPUs ``CUDA_VISIBLE_DEVICES`` shows.

    :param value: the variable's value, ``None`` when it is unset.
    :param uuids: the GPUs' UUIDs (``GPU-...``) in PCI bus order.
    :returns: the indices in CUDA's order; ``None`` when the value names MIG instances.
    """
    if value is None:
        return list(range(len(uuids)))
    shown: List[int] = []
    for raw in value.split(","):
        entry = raw.strip()
        if entry.startswith("MIG-"):
            return None
        index = _by_uuid(entry, uuids) if entry.startswith("GPU-") else _strtoul(entry)
        if index is None or index >= len(uuids):
            break  # the first invalid entry ends the list
        if index in shown:
            return []  # a GPU named twice: CUDA sees none
        shown.append(index)
    return shown


def _filtered(gpus: List[GpuFacts]) -> List[GpuFacts]:
    order = visible(os.environ.get("CUDA_VISIBLE_DEVICES"), [gpu[1] for gpu in gpus])
    if order is None:
        _fallbacks.note(
            "gpus",
            "CUDA_VISIBLE_DEVICES names MIG instances, which the driver's files do not list; "
            "recorded every GPU",
        )
        return gpus
    return [gpus[i] for i in order]


# --- NVML --------------------------------------------------------------------------------------

_asking: Optional[threading.Thread] = None  # threading is imported only with NVIDIA GPUs
"""The thread asking NVML, kept so that a hung ``nvmlInit`` is asked once, not once per
:func:`~tango_stepinfo.clear_cache`."""


def _nvml_totals(uuids: Sequence[str]) -> Tuple[Dict[str, int], Optional[str]]:
    """Ask NVML the total memory of each GPU: ``({uuid: bytes}, problem or None)``."""
    import ctypes

    class Memory(ctypes.Structure):
        _fields_ = [(n, ctypes.c_ulonglong) for n in ("total", "free", "used")]

    try:
        nvml: Any = ctypes.CDLL(NVML_LIBRARY)
        init, shutdown = nvml.nvmlInit_v2, nvml.nvmlShutdown
        by_uuid, memory_info = nvml.nvmlDeviceGetHandleByUUID, nvml.nvmlDeviceGetMemoryInfo
    except (OSError, AttributeError) as e:
        return {}, f"cannot load {NVML_LIBRARY} ({e})"
    status = init()
    if status != 0:
        return {}, f"nvmlInit failed with status {status}"
    totals, failed = {}, []
    try:
        for uuid in uuids:
            handle, memory = ctypes.c_void_p(), Memory()
            status = by_uuid(uuid.encode(), ctypes.byref(handle))
            if status == 0:
                status = memory_info(handle, ctypes.byref(memory))
            if status == 0:
                totals[uuid] = int(memory.total)
            else:
                failed.append(f"{uuid} (status {status})")
    finally:
        shutdown()
    return totals, f"NVML gave no memory for {', '.join(failed)}" if failed else None


def _start_nvml(uuids: Sequence[str]) -> Callable[[], Tuple[Dict[str, int], Optional[str]]]:
    """Ask NVML in a daemon thread; return a function waiting for the answer (bounded)."""
    global _asking
    if _asking is not None and _asking.is_alive():  # a hung NVML: never one thread per record
        return lambda: ({}, "NVML has not answered an earlier question yet")
    answer: List[Tuple[Dict[str, int], Optional[str]]] = []

    def ask() -> None:
        try:
            answer.append(_nvml_totals(uuids))
        except Exception as e:  # ctypes.ArgumentError and the like: a reason, not a traceback
            answer.append(({}, f"NVML failed ({type(e).__name__}: {e})"))

    import threading  # 0.6 ms to import: only on a machine with NVIDIA GPUs

    thread = _asking = threading.Thread(target=ask, name="tango-stepinfo-nvml", daemon=True)
    thread.start()

    def wait() -> Tuple[Dict[str, int], Optional[str]]:
        thread.join(NVML_TIMEOUT)
        if not answer:
            return {}, f"NVML did not answer within {NVML_TIMEOUT} s"
        return answer[0]

    return wait


# --- AMD: the KFD topology ---------------------------------------------------------------------

KFD_NODES = "/sys/class/kfd/kfd/topology/nodes"
"""The folder of the KFD topology's nodes, one per CPU socket and one per GPU."""

AMD_VENDOR = 0x1002
"""The PCI vendor id of AMD, the ``vendor_id`` of an AMD GPU node."""

_VRAM_HEAPS = (1, 2)
"""``heap_type`` of VRAM banks: ``HSA_HEAPTYPE_FRAME_BUFFER_PUBLIC`` and ``..._PRIVATE``."""


def _properties(text: str) -> Dict[str, int]:
    """The ``key value`` lines of a KFD ``properties`` file whose value is a number."""
    found: Dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[1].isascii() and len(parts[1]) < 21:
            found.setdefault(parts[0], int(parts[1]))
    return found


def _pci_bus(properties: Dict[str, int]) -> Optional[str]:
    """``location_id`` and ``domain`` as ``domain:bus:device.function``; ``None`` without."""
    location = properties.get("location_id")
    if location is None:
        return None
    domain = properties.get("domain", 0) & 0xFFFF
    return f"{domain:04x}:{location >> 8 & 0xFF:02x}:{location >> 3 & 0x1F:02x}.{location & 7:x}"


def _gfx_name(version: Optional[int]) -> Optional[str]:
    """The ``gfx`` name of a ``gfx_target_version`` (``90010`` is ``gfx90a``); ``None`` if 0."""
    if not version:
        return None
    major, minor, stepping = version // 10000, version // 100 % 100, version % 100
    return f"gfx{major}{minor:x}{stepping:x}"


def _asic_name(node: str) -> str:
    """The ASIC name in the node folder's ``name`` file; ``"unknown"`` when it says nothing."""
    try:
        name = read(f"{node}/name").strip()[:128]  # the kernel's KFD_TOPOLOGY_PUBLIC_NAME_SIZE
    except OSError:
        return "unknown"
    return name if name and name != "ip discovery" else "unknown"


def _vram(node: str) -> Tuple[Optional[int], Optional[str]]:
    """The bytes of VRAM of the node folder ``node``: ``(bytes or None, problem or None)``."""
    banks = f"{node}/mem_banks"
    try:
        entries = sorted(os.listdir(path(banks)))
    except OSError as e:
        return None, f"cannot list {banks} ({problem(e)})"
    total: Optional[int] = None
    for entry in entries:
        try:
            bank = _properties(read(f"{banks}/{entry}/properties"))
        except OSError as e:
            return None, f"cannot read {banks}/{entry}/properties ({problem(e)})"
        if bank.get("heap_type") in _VRAM_HEAPS and "size_in_bytes" in bank:
            total = (total or 0) + bank["size_in_bytes"]
    return total, None


def _amd_files() -> Tuple[Optional[List[GpuFacts]], List[Tuple[str, str]]]:
    """Every AMD GPU of the KFD topology, in node order: ``(GPUs, [(key, reason)])``.

    The GPUs are ``None`` without ``/sys/class/kfd`` (no AMD driver).
    """
    if not os.path.isdir(path(KFD)):
        return None, []
    reasons: List[Tuple[str, str]] = []
    try:
        driver: Optional[str] = read("/sys/module/amdgpu/version").strip() or None
    except OSError:  # the in-kernel driver has no version file: absence
        driver = None
    try:
        nodes = [n for n in os.listdir(path(KFD_NODES)) if n.isdigit() and n.isascii()]
    except FileNotFoundError:
        return [], reasons
    except OSError as e:
        return None, [("gpus", f"cannot list {KFD_NODES} ({problem(e)}); recorded no AMD GPU")]
    found: List[GpuFacts] = []
    for number in sorted(nodes, key=int):
        node = f"{KFD_NODES}/{number}"
        try:
            properties = _properties(read(f"{node}/properties"))
        except OSError as e:
            reasons.append(("gpus", f"cannot read {node}/properties ({problem(e)})"))
            continue
        if properties.get("simd_count", 0) == 0 or properties.get("vendor_id") != AMD_VENDOR:
            continue  # a CPU node, or not an AMD GPU
        name = _gfx_name(properties.get("gfx_target_version")) or _asic_name(node)
        unique = properties.get("unique_id", 0) & (1 << 64) - 1
        memory, why = _vram(node)
        if why is not None:
            reasons.append(("gpus.memory", f"{why}; recorded no memory for that GPU"))
        uuid = f"GPU-{unique:016x}" if unique else None
        found.append((name, uuid, _pci_bus(properties), driver, memory))
    rocr = os.environ.get("ROCR_VISIBLE_DEVICES")
    if rocr is not None:
        found = [found[i] for i in rocr_visible(rocr, [gpu[1] for gpu in found])]
    if "HIP_VISIBLE_DEVICES" in os.environ and found:
        reasons.append(("gpus", "HIP_VISIBLE_DEVICES not applied to AMD GPUs; recorded them all"))
    return found, reasons


def _strtol(token: str) -> Optional[int]:
    """The whole of ``token`` as C's ``strtol(token, &end, 0)`` reads it; ``None`` otherwise."""
    sign = -1 if token[:1] == "-" else 1
    digits = token[1:] if token[:1] in ("+", "-") else token
    base = 10
    if digits[:2] in ("0X", "0x") and len(digits) > 2:
        base, digits = 16, digits[2:]
    elif digits[:1] == "0" and len(digits) > 1:
        base, digits = 8, digits[1:]
    if not digits.isascii() or not digits.isalnum() or len(digits) > 32:
        return None  # past 32 digits, strtol's overflow: out of range either way
    try:
        return sign * int(digits, base)
    except ValueError:
        return None


def rocr_visible(value: str, uuids: Sequence[Optional[str]]) -> List[int]:
    """The indices (into ``uuids``, in KFD node order) of the GPUs ``ROCR_VISIBLE_DEVICES`` shows.

    As the ROCm runtime reads it (``RvdFilter`` in ROCR-Runtime's ``amd_filter_device.cpp``):
    an empty value shows none; entries are split at commas, trimmed and upper-cased, and only
    as many are read as there are GPUs; an entry starting with ``G`` is a prefix (5 to 20
    characters) of exactly one GPU's ``GPU-`` UUID, any other a whole number as ``strtol`` reads
    it with base 0 (``0x1`` is 1, ``010`` is 8). The first entry that is none of these, out of
    range, or a GPU already shown ends the list.

    :param value: the variable's value.
    :param uuids: the GPUs' UUIDs (``GPU-`` and 16 hex digits; ``None`` for a zero ``unique_id``).
    :returns: the indices in ROCm's order.
    """
    if not value:
        return []
    known = [uuid.upper() if uuid else "" for uuid in uuids]
    shown: List[int] = []
    for raw in value.split(",")[: len(uuids)]:
        token = raw.strip().upper()
        if token.startswith("G"):
            matches = [i for i, uuid in enumerate(known) if uuid and uuid.startswith(token)]
            index = matches[0] if 5 <= len(token) <= 20 and len(matches) == 1 else None
        else:
            index = _strtol(token) if token else None  # ROCr throws on an empty entry
        if index is None or not 0 <= index < len(uuids) or index in shown:
            break
        shown.append(index)
    return shown


def _note_amd(reasons: List[Tuple[str, str]]) -> None:
    """Note the AMD probe's reasons after the NVIDIA probe's (joined when a key has both)."""
    for key, reason in reasons:
        earlier = (_fallbacks.collect([key.partition(".")[0]]) or {}).get(key)
        _fallbacks.note(key, f"{earlier}; {reason}" if earlier else reason)


# --- the probe ---------------------------------------------------------------------------------


def start() -> Callable[[], Optional[List[GpuFacts]]]:
    """Read the driver's files and start asking NVML; return a function giving the GPUs.

    Called first among the probes of a first record, so that NVML's answer overlaps with them.
    """
    _fallbacks.note("gpus", None)
    _fallbacks.note("gpus.memory", None)
    nvidia = _nvidia_files()
    if nvidia is not None:
        nvidia = _filtered(nvidia)
    uuids = [gpu[1] for gpu in nvidia or () if gpu[1] is not None]
    wait = _start_nvml(uuids) if uuids else lambda: ({}, None)
    amd, amd_reasons = _amd_files()  # read while NVML answers

    def finish() -> Optional[List[GpuFacts]]:
        totals, why = wait()
        if why is not None:
            _fallbacks.note("gpus.memory", f"{why}; recorded no memory for those GPUs")
        _note_amd(amd_reasons)
        if nvidia is None and amd is None:
            return None
        found = [(n, u, b, d, totals.get(u or "")) for n, u, b, d, _ in nvidia or ()]
        return found + (amd or [])

    return finish


def gpus() -> Optional[List[GpuFacts]]:
    """The GPUs visible to this process; ``[]`` when none is, ``None`` without GPU driver."""
    return start()()
