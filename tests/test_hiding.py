"""How anonymous records hide values: :class:`Policy`'s stand-ins and the scrubbing of free
text (the probes and ``anonymize()`` that use it are tested in ``test_privacy.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pytest

from tango_stepinfo._hiding import Policy

from .conftest import import_fails
from .test_privacy import hidden


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        ("--entity Alice", "--entity anonymous"),
        ("malice alices", "malice alices"),  # letters around: another word
        ("alice2 alice_2 x-alice.y", "anonymous2 anonymous_2 x-anonymous.y"),
        ("node1 node12 xnode1 node1a", "anonymous node12 xnode1 anonymous" + "a"),
        ("node2.cs.uni.edu NODE1.CS.UNI.EDU", "node2.anonymous anonymous"),
        ("bob@corp.example.com", "anonymous"),
        (
            "10.1.2.3:29500 999.1.1.1 1.2.3.4.5 v1.2.3.4",
            "anonymous:29500 999.1.1.1 1.2.3.4.5 v1.2.3.4",
        ),
        (
            "0,GPU-8d8b1c2e-1234-5678-9abc-def012345678,mig-8D8B1C2E-1234-5678-9abc-def012345678",
            "0,anonymous,anonymous",
        ),
        ("[2001:db8::5]:29500 fe80::1%eth0", "[anonymous]:29500 anonymous"),
        (
            "12:30:45 aa:bb:cc:dd:ee:ff std::vector a::b::c",
            "12:30:45 aa:bb:cc:dd:ee:ff std::vector a::b::c",
        ),
        ("root ubuntu 1000 al", "root ubuntu 1000 al"),  # generic, a uid, too short: not looked for
    ],
)
def test_scrub_rules(text: str, scrubbed: str) -> None:
    names = ["alice", "node1.cs.uni.edu", "bob@corp.example.com", "root", "ubuntu", "1000", "al"]
    assert Policy(None, names).scrub(text) == scrubbed


def test_scrub_keeps_one_stand_in_per_name() -> None:
    policy = Policy("k3y", ["Alice"])
    assert policy.scrub("ALICE alice") == " ".join([hidden("k3y", "Alice")] * 2)
    assert policy.scrub(policy.scrub("alice 10.0.0.1")) == policy.scrub("alice 10.0.0.1")


def test_scrub_letters_that_match_in_another_case_than_they_lower_to() -> None:
    # re matches "AL\u0130" (dotted capital I) to "ali" and "ba\u017f\u017f" (long s) to
    # "bass", but their lower() is neither: the stand-in looked up by lower() raised KeyError
    policy = Policy("k3y", ["ali", "bass"])
    assert policy.scrub("AL\u0130 ba\u017f\u017f Ali") == " ".join(
        [hidden("k3y", "ali"), hidden("k3y", "bass"), hidden("k3y", "ali")]
    )


def test_an_address_is_hidden_when_ipaddress_cannot_load(monkeypatch: pytest.MonkeyPatch) -> None:
    # Out of file descriptors, `import ipaddress` fails: what looks like an IPv6 address is
    # hidden rather than left (the check falls back to "it is one").
    policy = Policy(None, names=[])
    text = "peer fe80::1ff:fe23:4567:890a up"
    assert "fe80" not in policy.scrub(text)  # ipaddress loads: an address, hidden
    import_fails(monkeypatch, "ipaddress")
    assert "fe80" not in Policy(None, names=[]).scrub(text)
    assert "deadbeef" in Policy(None, names=[]).scrub("commit deadbeef")  # not an address shape


def test_the_owner_of_a_deleted_working_directory_is_a_name_to_hide(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # os.getcwd() fails once the folder is deleted; the record's root then comes from
    # /proc/self/cwd, and so must the names to hide (the owner of /home/carol was kept).
    import os

    from tango_stepinfo import _hiding

    real_readlink = os.readlink

    def gone() -> str:
        raise FileNotFoundError(2, "No such file or directory")

    def readlink(path: str, *args: object, **kwargs: object) -> str:
        if path == "/proc/self/cwd":
            return "/home/carol/run (deleted)"
        return real_readlink(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setenv("HOME", "/root")
    monkeypatch.setattr(os, "getcwd", gone)
    monkeypatch.setattr(os, "readlink", readlink)
    names = _hiding.process_names()
    assert names is not None and "carol" in names


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (
            "CUDA_VISIBLE_DEVICES=GPU-8d8b1c2e,GPU-11112222",
            "CUDA_VISIBLE_DEVICES=anonymous,anonymous",
        ),
        ("HIP_VISIBLE_DEVICES=GPU-4a3b2c1d5e6f7a8b", "HIP_VISIBLE_DEVICES=anonymous"),  # AMD
        ("GPU-8d8b1c2e-1a2b-3c4d-5e6f-7a8b9c0d1e2f", "anonymous"),
        ("MIG-8d8b1c2e-1a2b-3c4d-5e6f-7a8b9c0d1e2f", "anonymous"),
        ("GPU-8d8b1c2e-1a2b", "anonymous"),  # a prefix CUDA takes
        ("GPU-short GPU-1234567 xGPU-8d8b1c2e", None),  # none is an id
        ("GPU-8d8b1c2e-1a2b-3c4d-5e6f-7a8b9c0d1e2f_0.log", "anonymous_0.log"),  # was -7a8b...
        ("GPU-4a3b2c1d5e6f7a8b_log GPU-8d8b1c2ez", "anonymous_log anonymousz"),
    ],
)
def test_gpu_ids_are_hidden_whole_or_by_prefix(text: str, kept: Optional[str]) -> None:
    # CUDA accepts any unique prefix of a UUID, and AMD's ids are GPU- and 16 hex digits: both
    # were left in CUDA_VISIBLE_DEVICES (a default variable) and HIP_VISIBLE_DEVICES.
    assert Policy(None, names=[]).scrub(text) == (text if kept is None else kept)


def test_names_are_read_where_there_is_no_dev_null(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The shortage check opens /dev/null: missing in a bare chroot, that is no shortage (else
    # every text of every anonymous record would be hidden whole, and nothing kept).
    import os

    from tango_stepinfo import _hiding

    monkeypatch.setattr(os, "devnull", str(tmp_path / "no-dev-null"))
    monkeypatch.setenv("USER", "carol")
    names = _hiding.process_names()
    assert names is not None and "carol" in names
    assert Policy(None).scrub("--entity carol") == "--entity anonymous"
