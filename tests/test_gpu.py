"""The GPU probe: the NVIDIA driver's files of a real 8-GPU node, every CUDA_VISIBLE_DEVICES
form, the PCI bus order, and NVML through a small real shared library built with the C compiler."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator, List, Optional

import pytest

import tango_stepinfo
from tango_stepinfo import PlatformMetadata, _fallbacks, _gpu, _machine

from .conftest import DATA

MACHINE = DATA / "machine"

# The 8-GPU node of tests/data/machine (NVIDIA/nvidia-docker#1506), in PCI bus order.
BUSES = ["1a", "1b", "60", "61", "b1", "b2", "da", "db"]
UUIDS = [
    "GPU-5d49bdf4-b8d0-21ce-9260-a89c66748d92",
    "GPU-bb7b99c7-32ed-1a0e-197d-538ead68df4c",
    "GPU-6773a289-bb4d-9bc7-b36b-4bafdff4addf",
    "GPU-89626cb0-2987-b13c-7702-5d4e5d8b02ad",
    "GPU-93198978-087a-6bd5-f939-2165d993b0da",
    "GPU-d62c8052-4e87-31d9-51bd-3ebdc5760f08",
    "GPU-10f93ec0-f9ed-4eee-bb40-cb1203d43849",
    "GPU-a664610b-dc7d-1a19-30cd-2424a8f6f77e",
]
MODEL = "NVIDIA GeForce RTX 2080 Ti"

FAKE_NVML = r"""
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
typedef struct { unsigned long long total, free, used; } memory_t;
static int env(const char *name) { const char *v = getenv(name); return v ? atoi(v) : 0; }
int nvmlInit_v2(void) { usleep(env("FAKE_NVML_SLEEP_MS") * 1000); return env("FAKE_NVML_INIT"); }
int nvmlShutdown(void) { return 0; }
int nvmlDeviceGetHandleByUUID(const char *uuid, void **handle) {
    if (strstr(uuid, "d62c8052") && env("FAKE_NVML_LOSE_ONE")) return 6; /* NOT_FOUND */
    *handle = (void *)strdup(uuid);
    return 0;
}
int nvmlDeviceGetMemoryInfo(void *handle, memory_t *memory) {
    const char *uuid = handle;
    memory->total = 11811160064ULL + (unsigned char)uuid[strlen(uuid) - 1];
    memory->free = memory->total;
    memory->used = 0;
    return 0;
}
"""


def fake_total(uuid: str) -> int:
    return 11811160064 + ord(uuid[-1])


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("CUDA_VISIBLE_DEVICES", "FAKE_NVML_SLEEP_MS", "FAKE_NVML_INIT"):
        monkeypatch.delenv(name, raising=False)
    tango_stepinfo.clear_cache()
    yield
    tango_stepinfo.clear_cache()


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The 8-GPU node's driver files under a fake root; no NVML library."""
    root = tmp_path / "root"
    shutil.copytree(MACHINE / "nvidia-8gpu", root)
    monkeypatch.setattr(_machine, "ROOT", str(root))
    monkeypatch.setattr(_gpu, "NVML_LIBRARY", str(tmp_path / "no-such-libnvidia-ml.so.1"))
    monkeypatch.setattr(_gpu, "_asking", None)  # a slow fake NVML of another test is not ours
    return root


@pytest.fixture(scope="module")
def fake_nvml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A shared library with the four NVML functions the probe calls, built with ``cc``."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or sys.platform != "linux":
        pytest.skip("needs a C compiler on Linux to build the fake NVML library")
    folder = tmp_path_factory.mktemp("nvml")
    (folder / "fake_nvml.c").write_text(FAKE_NVML)
    lib = folder / "libfake-nvml.so"
    subprocess.run(
        [cc, "-shared", "-fPIC", "-o", str(lib), str(folder / "fake_nvml.c")], check=True
    )
    return lib


def buses(gpus: Optional[List[_gpu.GpuFacts]]) -> List[str]:
    assert gpus is not None
    return [str(gpu[2])[5:7] for gpu in gpus]


# --- the driver's files ------------------------------------------------------------------------


def test_every_gpu_of_the_node_in_pci_bus_order(node: Path) -> None:
    gpus = _gpu.gpus()
    assert gpus == [
        (MODEL, uuid, f"0000:{bus}:00.0", "384.98", None) for uuid, bus in zip(UUIDS, BUSES)
    ]
    reasons = _fallbacks.collect(["gpus"])
    assert reasons is not None and set(reasons) == {"gpus.memory"}
    assert reasons["gpus.memory"].startswith("cannot load ")
    assert reasons["gpus.memory"].endswith("; recorded no memory for those GPUs")


@pytest.mark.parametrize(
    ("sample", "version"),
    [
        ("nvidia-8gpu/proc/driver/nvidia/version", "384.98"),
        ("nvidia-open-version", "565.57.01"),
        ("nvidia-jetson-version", "35.3.1"),
    ],
)
def test_driver_version_of_real_files(sample: str, version: str) -> None:
    assert _gpu._driver_version((MACHINE / sample).read_text()) == version


def test_pci_bus_order_is_numeric_over_domains() -> None:
    ids = ["0001:00:00.0", "0000:DB:00.0", "0000:1a:00.0", "0000:1a:00.1", "weird", None]
    assert sorted(ids, key=_gpu._bus_order) == [
        "0000:1a:00.0",
        "0000:1a:00.1",
        "0000:DB:00.0",
        "0001:00:00.0",
        "weird",
        None,
    ]


def test_an_excluded_gpu_is_left_out(node: Path) -> None:
    info = node / "proc/driver/nvidia/gpus/0000:60:00.0/information"
    info.write_text(info.read_text().replace("GPU Excluded:\t No", "GPU Excluded:\t Yes"))
    assert buses(_gpu.gpus()) == ["1a", "1b", "61", "b1", "b2", "da", "db"]


def test_an_unreadable_information_file(node: Path) -> None:
    info = node / "proc/driver/nvidia/gpus/0000:b1:00.0/information"
    info.unlink()
    info.mkdir()
    assert buses(_gpu.gpus()) == ["1a", "1b", "60", "61", "b2", "da", "db"]
    reasons = _fallbacks.collect(["gpus"]) or {}
    assert reasons["gpus"] == (
        "cannot read /proc/driver/nvidia/gpus/0000:b1:00.0/information (Is a directory); "
        "left that GPU out"
    )


def test_an_unreadable_version_file(node: Path) -> None:
    version = node / "proc/driver/nvidia/version"
    version.unlink()
    version.mkdir()
    gpus = _gpu.gpus()
    assert gpus is not None and len(gpus) == 8 and {gpu[3] for gpu in gpus} == {None}
    reasons = _fallbacks.collect(["gpus"]) or {}
    assert reasons["gpus"] == "cannot read /proc/driver/nvidia/version (Is a directory)"


def test_driver_loaded_without_gpus_is_an_empty_list(node: Path) -> None:
    shutil.rmtree(node / "proc/driver/nvidia/gpus")
    assert _gpu.gpus() == []
    assert _fallbacks.collect(["gpus"]) is None


def test_an_unlistable_gpus_folder(node: Path) -> None:
    gpus = node / "proc/driver/nvidia/gpus"
    shutil.rmtree(gpus)
    gpus.write_text("")  # listing a file: NotADirectoryError
    assert _gpu.gpus() is None
    reasons = _fallbacks.collect(["gpus"]) or {}
    assert reasons["gpus"] == (
        "cannot list /proc/driver/nvidia/gpus (Not a directory); recorded None"
    )


def test_no_driver_is_none_and_not_a_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_machine, "ROOT", str(tmp_path))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert _gpu.gpus() is None
    assert _fallbacks.collect(["gpus"]) is None


def test_gpu_driver_is_false_only_where_the_probe_finds_no_driver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first record's check before importing _gpu agrees with what _gpu finds."""
    root = tmp_path / "root"
    root.mkdir()
    monkeypatch.setattr(_machine, "ROOT", str(root))
    assert not _machine.gpu_driver()
    assert _gpu.gpus() is None
    (root / "sys/class/kfd").mkdir(parents=True)  # AMD's KFD without nodes: an empty list
    assert _machine.gpu_driver()
    assert _gpu.gpus() == []
    shutil.rmtree(root / "sys")
    (root / "proc/driver").mkdir(parents=True)
    (root / "proc/driver/nvidia").write_text("")  # stat fails with ENOTDIR: _gpu reads, notes
    assert _machine.gpu_driver()
    assert _gpu.gpus() is None
    reasons = _fallbacks.collect(["gpus"]) or {}
    assert (
        reasons["gpus"] == "cannot list /proc/driver/nvidia/gpus (Not a directory); recorded None"
    )


@pytest.mark.parametrize("driver", [None, "nvidia-8gpu", "amd-kfd"])
def test_a_first_record_imports_the_gpu_probe_only_with_a_driver(
    tmp_path: Path, driver: Optional[str]
) -> None:
    root = tmp_path / "root"
    if driver is None:
        root.mkdir()
    else:
        shutil.copytree(MACHINE / driver, root)
    code = (
        "import sys\n"
        "from tango_stepinfo import PlatformMetadata, _machine\n"
        f"_machine.ROOT = {str(root)!r}\n"
        "p = PlatformMetadata()\n"
        "gpu_reasons = [k for k in p.fallbacks or {} if k.startswith('gpus')]\n"
        "print(p.gpus is None, gpu_reasons, 'tango_stepinfo._gpu' in sys.modules)\n"
    )
    env = {"PATH": os.environ.get("PATH", os.defpath), "GIT_CEILING_DIRECTORIES": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
    ).stdout.split()
    if driver is None:
        assert out == ["True", "[]", "False"]
    else:
        assert out[0] == "False" and out[-1] == "True"


# --- CUDA_VISIBLE_DEVICES ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0,1,2,3,4,5,6,7", BUSES),
        ("7,0", ["db", "1a"]),  # CUDA's order is the variable's
        ("3", ["61"]),
        (" 2 , 5 ", ["60", "b2"]),  # spaces around entries
        ("1gpu,2ampere", ["1b", "60"]),  # strtoul reads the leading number
        ("+4", ["b1"]),
        ("", []),  # empty: none visible
        ("-1", []),  # the usual way of hiding every GPU
        ("-1,0", []),  # the invalid first entry ends the list
        ("0,-1,1", ["1a"]),
        ("0,8,1", ["1a"]),  # out of range ends the list
        ("0,x,1", ["1a"]),  # not a number ends the list
        ("0,,1", ["1a"]),  # an empty entry ends the list
        ("0,1,0", []),  # a GPU named twice: none visible
        (UUIDS[6], ["da"]),  # a full UUID
        (f"{UUIDS[3]},{UUIDS[0]}", ["61", "1a"]),
        ("GPU-d62c", ["b2"]),  # a unique prefix
        ("GPU-6,GPU-a6", ["60", "db"]),  # GPU-6 is unique (6773a289), GPU-a6 too (a664610b)
        ("GPU-", []),  # a prefix of all eight: ambiguous, ends the list at once
        ("GPU-a664,GPU-", ["db"]),
        ("GPU-ffff", []),  # no such GPU
        ("GPU-bb7b,GPU-bb7b99c7", []),  # the same GPU twice
        ("2,GPU-a664", ["60", "db"]),  # indices and UUIDs mix, entry by entry
        ("5d49bdf4", ["b2"]),  # a UUID without GPU- is read as a number: 5
    ],
)
def test_cuda_visible_devices(
    node: Path, monkeypatch: pytest.MonkeyPatch, value: str, expected: List[str]
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    assert buses(_gpu.gpus()) == expected
    reasons = _fallbacks.collect(["gpus"]) or {}
    assert "gpus" not in reasons  # a variable hiding GPUs is a fact, not a fallback


def test_unset_cuda_visible_devices_shows_all(node: Path) -> None:
    assert buses(_gpu.gpus()) == BUSES


def test_mig_devices_record_every_gpu_with_a_reason(
    node: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-5d49bdf4-b8d0-21ce-9260-a89c66748d92")
    assert buses(_gpu.gpus()) == BUSES
    reasons = _fallbacks.collect(["gpus"]) or {}
    assert reasons["gpus"] == (
        "CUDA_VISIBLE_DEVICES names MIG instances, which the driver's files do not list; "
        "recorded every GPU"
    )


def test_visible_with_no_gpus() -> None:
    assert _gpu.visible(None, []) == []
    assert _gpu.visible("0", []) == []


# --- NVML --------------------------------------------------------------------------------------


def test_memory_from_nvml(node: Path, fake_nvml: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_gpu, "NVML_LIBRARY", str(fake_nvml))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "6,1")
    gpus = _gpu.gpus()
    assert gpus == [
        (MODEL, UUIDS[6], "0000:da:00.0", "384.98", fake_total(UUIDS[6])),
        (MODEL, UUIDS[1], "0000:1b:00.0", "384.98", fake_total(UUIDS[1])),
    ]
    assert _fallbacks.collect(["gpus"]) is None


def test_nvml_slower_than_the_bound(
    node: Path, fake_nvml: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_gpu, "NVML_LIBRARY", str(fake_nvml))
    monkeypatch.setattr(_gpu, "NVML_TIMEOUT", 0.05)
    monkeypatch.setenv("FAKE_NVML_SLEEP_MS", "1000")
    gpus = _gpu.gpus()
    assert gpus is not None and len(gpus) == 8 and {gpu[4] for gpu in gpus} == {None}
    assert _fallbacks.collect(["gpus"]) == {
        "gpus.memory": "NVML did not answer within 0.05 s; recorded no memory for those GPUs"
    }


def test_nvml_init_failing(node: Path, fake_nvml: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_gpu, "NVML_LIBRARY", str(fake_nvml))
    monkeypatch.setenv("FAKE_NVML_INIT", "9")  # NVML_ERROR_DRIVER_NOT_LOADED
    gpus = _gpu.gpus()
    assert gpus is not None and {gpu[4] for gpu in gpus} == {None}
    assert _fallbacks.collect(["gpus"]) == {
        "gpus.memory": "nvmlInit failed with status 9; recorded no memory for those GPUs"
    }


def test_nvml_missing_one_gpu(node: Path, fake_nvml: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_gpu, "NVML_LIBRARY", str(fake_nvml))
    monkeypatch.setenv("FAKE_NVML_LOSE_ONE", "1")
    gpus = _gpu.gpus()
    assert gpus is not None
    assert [gpu[4] is None for gpu in gpus] == [uuid == UUIDS[5] for uuid in UUIDS]
    assert _fallbacks.collect(["gpus"]) == {
        "gpus.memory": f"NVML gave no memory for {UUIDS[5]} (status 6); "
        "recorded no memory for those GPUs"
    }


def test_platform_metadata_gpus(
    node: Path, fake_nvml: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_gpu, "NVML_LIBRARY", str(fake_nvml))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-a664")
    one, two = PlatformMetadata(), PlatformMetadata()
    assert one.gpus is not None and len(one.gpus) == 1
    gpu = one.gpus[0]
    assert (gpu.name, gpu.uuid, gpu.bus, gpu.driver) == (MODEL, UUIDS[7], "0000:db:00.0", "384.98")
    assert gpu.memory == fake_total(UUIDS[7])
    assert one.gpus == two.gpus and one.gpus is not two.gpus and one.gpus[0] is not two.gpus[0]
    data = one.to_json_dict()
    assert data["gpus"] == [
        {
            "name": MODEL,
            "uuid": UUIDS[7],
            "bus": "0000:db:00.0",
            "driver": "384.98",
            "memory": fake_total(UUIDS[7]),
        }
    ]
    assert PlatformMetadata.from_json_dict(data) == one


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1" * 5000, []),  # past Python's int-to-str limit: out of range, not a crash
        ("0," + "0" * 5000 + "3", ["1a", "61"]),  # leading zeros are still 3
        ("-" + "0" * 5000, ["1a"]),  # -0 is 0, as strtoul reads it
    ],
)
def test_cuda_visible_devices_with_huge_numbers(
    node: Path, monkeypatch: pytest.MonkeyPatch, value: str, expected: List[str]
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    assert buses(_gpu.gpus()) == expected


def test_a_hung_nvml_is_asked_once(
    node: Path, fake_nvml: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record per step with ``refresh()`` on a node whose NVML hangs: one thread, not one per
    record."""
    monkeypatch.setattr(_gpu, "NVML_LIBRARY", str(fake_nvml))
    monkeypatch.setattr(_gpu, "NVML_TIMEOUT", 0.05)
    monkeypatch.setenv("FAKE_NVML_SLEEP_MS", "2000")

    def asking() -> int:
        return sum(t.name == "tango-stepinfo-nvml" and t.is_alive() for t in threading.enumerate())

    before = asking()
    for _ in range(5):
        gpus = _gpu.gpus()
        assert gpus is not None and {gpu[4] for gpu in gpus} == {None}
    assert asking() == before + 1
    assert _fallbacks.collect(["gpus"]) == {
        "gpus.memory": "NVML has not answered an earlier question yet; "
        "recorded no memory for those GPUs"
    }


def test_nvml_raising_in_its_thread_is_a_reason(
    node: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(uuids: object) -> None:
        raise TypeError("bad argument")

    monkeypatch.setattr(_gpu, "_nvml_totals", broken)
    gpus = _gpu.gpus()
    assert gpus is not None and {gpu[4] for gpu in gpus} == {None}
    assert _fallbacks.collect(["gpus"]) == {
        "gpus.memory": "NVML failed (TypeError: bad argument); recorded no memory for those GPUs"
    }


# --- AMD: the KFD topology ---------------------------------------------------------------------

# tests/data/machine/amd-kfd: a CPU node (0) and two AMD GPU nodes (1: gfx906, 2: gfx950).
NODES = "sys/class/kfd/kfd/topology/nodes"
GFX906 = ("gfx906", "GPU-47ff7ee3bf413343", "0000:0a:00.0", "6.10.5", 17163091968)
GFX950 = ("gfx950", "GPU-a04045bdaaba1943", "0000:75:00.0", "6.10.5", 309220868096)


@pytest.fixture
def amd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The KFD topology of a CPU and two AMD GPUs under a fake root; no NVIDIA driver."""
    for name in ("ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES"):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "root"
    shutil.copytree(MACHINE / "amd-kfd", root)
    monkeypatch.setattr(_machine, "ROOT", str(root))
    monkeypatch.setattr(_gpu, "NVML_LIBRARY", str(tmp_path / "no-such-libnvidia-ml.so.1"))
    monkeypatch.setattr(_gpu, "_asking", None)
    return root


def set_property(root: Path, node: int, key: str, value: str) -> None:
    props = root / NODES / str(node) / "properties"
    lines = [
        f"{key} {value}" if line.split()[0] == key else line
        for line in props.read_text().splitlines()
    ]
    props.write_text("\n".join(lines) + "\n")


def test_amd_gpus_of_the_kfd_topology(amd: Path) -> None:
    assert _gpu.gpus() == [GFX906, GFX950]
    assert _fallbacks.collect(["gpus"]) is None


def test_amd_without_version_file_has_no_driver(amd: Path) -> None:
    (amd / "sys/module/amdgpu/version").unlink()
    assert _gpu.gpus() == [(*GFX906[:3], None, *GFX906[4:]), (*GFX950[:3], None, *GFX950[4:])]
    assert _fallbacks.collect(["gpus"]) is None  # the in-kernel driver: absence


def test_no_kfd_folder_is_no_amd_driver(amd: Path) -> None:
    shutil.rmtree(amd / "sys/class/kfd")
    assert _gpu.gpus() is None
    assert _fallbacks.collect(["gpus"]) is None


def test_kfd_without_topology_nodes_is_an_empty_list(amd: Path) -> None:
    shutil.rmtree(amd / NODES)
    assert _gpu.gpus() == []
    assert _fallbacks.collect(["gpus"]) is None


def test_only_cpu_nodes_is_an_empty_list(amd: Path) -> None:
    shutil.rmtree(amd / NODES / "1")
    shutil.rmtree(amd / NODES / "2")
    assert _gpu.gpus() == []


def test_an_unlistable_nodes_folder(amd: Path) -> None:
    shutil.rmtree(amd / NODES)
    (amd / NODES).write_text("")
    assert _gpu.gpus() is None
    assert _fallbacks.collect(["gpus"]) == {
        "gpus": f"cannot list /{NODES} (Not a directory); recorded no AMD GPU"
    }


def test_nodes_in_numeric_order(amd: Path) -> None:
    shutil.move(str(amd / NODES / "1"), str(amd / NODES / "10"))  # "10" < "2" as text
    assert _gpu.gpus() == [GFX950, GFX906]


def test_a_node_of_another_vendor_is_left_out(amd: Path) -> None:
    set_property(amd, 1, "vendor_id", "0")  # as a half-initialised node reports (ROCm/amdgpu#66)
    assert _gpu.gpus() == [GFX950]


@pytest.mark.parametrize(
    ("location", "domain", "bus"),
    [
        (2560, None, "0000:0a:00.0"),  # ROCm/amdgpu#66: bus 0x0a
        ((0xC1 << 8) | (0x1F << 3) | 7, "1", "0001:c1:1f.7"),
        (0, "65535", "ffff:00:00.0"),
    ],
)
def test_pci_bus_of_location_id(location: int, domain: Optional[str], bus: str) -> None:
    props = {"location_id": location}
    if domain is not None:
        props["domain"] = int(domain)
    assert _gpu._pci_bus(props) == bus
    assert _gpu._pci_bus({"domain": 0}) is None


def test_zero_unique_id_is_no_uuid(amd: Path) -> None:
    set_property(amd, 2, "unique_id", "0")
    assert _gpu.gpus() == [GFX906, (GFX950[0], None, *GFX950[2:])]


@pytest.mark.parametrize(
    ("version", "file", "name"),
    [
        ("90010", None, "gfx90a"),  # hex minor and stepping
        ("100300", None, "gfx1030"),
        ("120001", None, "gfx1201"),
        (None, "vega20", "vega20"),  # a kernel before gfx_target_version: the ASIC name
        (None, "ip discovery", "unknown"),  # the name of every IP-discovery ASIC says nothing
        (None, "", "unknown"),
        (None, "\x00\xff", "\x00\ufffd"),  # binary: kept, bounded, never a crash
        ("0", None, "vega20"),
    ],
)
def test_gpu_name(amd: Path, version: Optional[str], file: Optional[str], name: str) -> None:
    if version is None:
        props = amd / NODES / "1" / "properties"
        props.write_text(props.read_text().replace("gfx_target_version 90006\n", ""))
    else:
        set_property(amd, 1, "gfx_target_version", version)
    if file is not None:
        (amd / NODES / "1" / "name").write_bytes(file.encode("latin-1") + b"\n")
    assert (_gpu.gpus() or [])[0][0] == name


def test_vram_sums_public_and_private_banks_only(amd: Path) -> None:
    banks = amd / NODES / "1" / "mem_banks"
    (banks / "1").mkdir()
    (banks / "1" / "properties").write_text("heap_type 2\nsize_in_bytes 1000\n")
    (banks / "2").mkdir()
    (banks / "2" / "properties").write_text("heap_type 0\nsize_in_bytes 5000\n")
    assert (_gpu.gpus() or [])[0][4] == 17163091968 + 1000


def test_an_apu_without_vram_bank_has_no_memory(amd: Path) -> None:
    (amd / NODES / "1/mem_banks/0/properties").write_text("heap_type 0\nsize_in_bytes 9\n")
    assert (_gpu.gpus() or [])[0][4] is None
    assert _fallbacks.collect(["gpus"]) is None  # the memory is the system's: a fact


def test_missing_mem_banks(amd: Path) -> None:
    shutil.rmtree(amd / NODES / "2" / "mem_banks")
    assert _gpu.gpus() == [GFX906, (*GFX950[:4], None)]
    assert _fallbacks.collect(["gpus"]) == {
        "gpus.memory": f"cannot list /{NODES}/2/mem_banks (No such file or directory); "
        "recorded no memory for that GPU"
    }


def test_unreadable_properties_leave_that_node_out(amd: Path) -> None:
    props = amd / NODES / "1" / "properties"
    props.unlink()
    props.mkdir()
    assert _gpu.gpus() == [GFX950]
    assert _fallbacks.collect(["gpus"]) == {
        "gpus": f"cannot read /{NODES}/1/properties (Is a directory)"
    }


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x00\xff\xfe binary \x89PNG\r\n\x1a\n" * 50,
        b"simd_count lots\nvendor_id 4098\n",
        b"simd_count -4\nvendor_id 4098\n",
        b"simd_count 4 2\nvendor_id 4098\n",
        b"simd_count\nvendor_id\n",
        b"simd_count \xd9\xa4\nvendor_id 4098\n",  # an Arabic-Indic digit is not a number here
        b"x 1\n" * 300_000,  # 1.2 MB: read up to the 1 MiB bound, no GPU
    ],
)
def test_malformed_properties_are_no_gpu(amd: Path, content: bytes) -> None:
    (amd / NODES / "1" / "properties").write_bytes(content)
    assert _gpu.gpus() == [GFX950]


def test_a_huge_property_value_is_ignored() -> None:
    assert _gpu._properties("unique_id " + "9" * 5000 + "\nsimd_count 4\n") == {"simd_count": 4}


def test_first_value_of_a_repeated_key() -> None:
    assert _gpu._properties("simd_count 4\nsimd_count 0\n") == {"simd_count": 4}


# Four GPUs with the UUIDs of the examples of ROCR-Runtime's amd_filter_device.h.
RVD_UUIDS = [
    "GPU-babababababababa",
    "GPU-abbaabbaabbaabba",
    "GPU-babaabbaabbababa",
    "GPU-abbababababaabba",
]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", []),  # the examples of amd_filter_device.h
        ("-1", []),
        ("GPU-XX", []),
        ("3,GPU-BABABABABABABABA,4", [3, 0]),
        ("1,GPU-ABBAABBAABBAABBA,GPU-XX", [1]),  # GPU 1 named twice: the list ends there
        ("3,GPU-BABAABBA,GPU-XX", [3, 2]),
        ("0,1,2,3", [0, 1, 2, 3]),
        ("2, 0 ", [2, 0]),  # trimmed
        ("gpu-abbab", [3]),  # upper-cased, a unique prefix
        ("GPU-", []),  # shorter than 5 characters
        ("GPU-ABBA", []),  # two GPUs start so: ends the list
        ("GPU-BABABABABABABABA0", []),  # longer than 20 characters
        ("0x3,010", [3]),  # base 0: 0x3 is 3, 010 is 8 (out of range)
        ("+1,0", [1, 0]),
        ("1a", []),  # not wholly a number
        ("08", []),  # 0 then an 8 that octal does not read
        ("1,,2", [1]),  # an empty entry ends the list here (ROCr throws on it)
        ("0,1,2,3,0", [0, 1, 2, 3]),  # only as many entries as GPUs are read
        ("9" * 5000, []),
        ("\u0661", []),  # an Arabic-Indic one is not a digit for strtol
    ],
)
def test_rocr_visible(value: str, expected: List[int]) -> None:
    assert _gpu.rocr_visible(value, RVD_UUIDS) == expected


def test_rocr_visible_without_unique_id() -> None:
    assert _gpu.rocr_visible("GPU-B", [None, "GPU-babababababababa"]) == [1]  # None: no match
    assert _gpu.rocr_visible("GPU-BA,0", [None, "GPU-babababababababa"]) == [1, 0]
    assert _gpu.rocr_visible("0", []) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", [GFX950]), ("GPU-47FF,1", [GFX906, GFX950]), ("1,0", [GFX950, GFX906]), ("", [])],
)
def test_rocr_visible_devices_filters_amd_gpus(
    amd: Path, monkeypatch: pytest.MonkeyPatch, value: str, expected: List[_gpu.GpuFacts]
) -> None:
    monkeypatch.setenv("ROCR_VISIBLE_DEVICES", value)
    assert _gpu.gpus() == expected
    assert _fallbacks.collect(["gpus"]) is None  # a variable hiding GPUs is a fact


def test_hip_visible_devices_is_not_applied(amd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIP_VISIBLE_DEVICES", "0")
    monkeypatch.setenv("ROCR_VISIBLE_DEVICES", "1,0")
    assert _gpu.gpus() == [GFX950, GFX906]
    assert _fallbacks.collect(["gpus"]) == {
        "gpus": "HIP_VISIBLE_DEVICES not applied to AMD GPUs; recorded them all"
    }


def test_nvidia_first_then_amd(amd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(MACHINE / "nvidia-8gpu", amd, dirs_exist_ok=True)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")  # applies to NVIDIA's GPUs only
    assert _gpu.gpus() == [(MODEL, UUIDS[7], "0000:db:00.0", "384.98", None), GFX906, GFX950]
    reasons = _fallbacks.collect(["gpus"]) or {}
    assert set(reasons) == {"gpus.memory"}  # NVML is missing


def test_nvidia_and_amd_reasons_are_both_kept(amd: Path) -> None:
    shutil.copytree(MACHINE / "nvidia-8gpu", amd, dirs_exist_ok=True)
    shutil.rmtree(amd / NODES / "2" / "mem_banks")
    reasons = _fallbacks.collect(["gpus"]) if _gpu.gpus() else None
    assert reasons is not None
    assert reasons["gpus.memory"].startswith("cannot load ")
    assert reasons["gpus.memory"].endswith(
        f"; cannot list /{NODES}/2/mem_banks (No such file or directory); "
        "recorded no memory for that GPU"
    )


def test_platform_metadata_with_amd_gpus(amd: Path) -> None:
    gpus = PlatformMetadata().gpus
    assert gpus is not None
    assert [(g.name, g.uuid, g.bus, g.driver, g.memory) for g in gpus] == [GFX906, GFX950]
