"""The alias that makes Tango's ``tango.step_info`` this library: the hook, and the .pth file.

A stand-in ``tango`` package in a temporary folder imports its classes the way Tango 1.3.2 does
(``from .step_info import ...``); its own ``step_info.py`` raises if it is ever run. Each test
runs a fresh interpreter, since the hook acts at import time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tango_stepinfo import _tango_alias
from tango_stepinfo._tango_alias import PTH_LINE, PTH_NAME, disable, enable, status

SRC = Path(__file__).resolve().parent.parent / "src"


@pytest.fixture
def fake_tango(tmp_path: Path) -> Path:
    package = tmp_path / "lib" / "tango"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("from .step_info import StepInfo, StepState\n")
    (package / "step_info.py").write_text("raise RuntimeError('Tango own step_info was run')\n")
    (package / "workspace.py").write_text(
        "from tango.step_info import EnvironmentMetadata, GitMetadata, StepInfo\n"
    )
    return tmp_path / "lib"


def python(code: str, path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "TANGO_STEPINFO_JSON"}
    environ["PYTHONPATH"] = f"{path}{os.pathsep}{SRC}"
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environ, check=False
    )


def test_the_hook_serves_our_classes_for_tango_step_info(fake_tango: Path) -> None:
    code = (
        "import tango_stepinfo._tango_alias as a; assert a.install(); assert not a.install()\n"
        "import os, tango, tango.workspace, tango.step_info as m, tango_stepinfo as t\n"
        "assert tango.StepInfo is t.StepInfo and tango.StepState is t.StepState\n"
        "assert tango.workspace.GitMetadata is t.GitMetadata and tango.step_info is m\n"
        "assert sorted(m.__all__) == sorted(a._EXPORTS), m.__all__\n"
        "print(os.environ['TANGO_STEPINFO_JSON'])\n"
    )
    done = python(code, fake_tango)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "tango\n"


def test_an_explicit_json_choice_is_kept(fake_tango: Path) -> None:
    code = "import tango_stepinfo._tango_alias as a, os; a.install(); import tango\n"
    code += "print(os.environ['TANGO_STEPINFO_JSON'])"
    done = python(code, fake_tango, TANGO_STEPINFO_JSON="ours")
    assert done.stdout == "ours\n", done.stderr


def test_without_the_hook_tango_s_own_module_runs(fake_tango: Path) -> None:
    done = python("import tango", fake_tango)
    assert "Tango own step_info was run" in done.stderr


def test_too_late_when_tango_step_info_is_already_imported(fake_tango: Path) -> None:
    code = "import sys, types; sys.modules['tango.step_info'] = types.ModuleType('x')\n"
    code += "import tango_stepinfo._tango_alias as a; print(a.install())"
    assert python(code, fake_tango).stdout == "False\n"


def test_the_pth_file_turns_it_on_for_new_interpreters_and_off(
    fake_tango: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    assert not status(site)
    path = enable(site)
    assert path == site / PTH_NAME and path.read_text() == PTH_LINE and status(site)
    assert [p.name for p in site.iterdir()] == [PTH_NAME]  # no temporary file left
    code = f"import site; site.addsitedir({str(site)!r}); import tango, tango_stepinfo as t\n"
    code += "print(tango.StepInfo is t.StepInfo)"
    on = python(code, fake_tango)
    assert on.stdout == "True\n", on.stderr
    assert disable(site) and not status(site) and not disable(site)
    off = python(code, fake_tango)
    assert "Tango own step_info was run" in off.stderr


def test_a_stale_pth_file_is_silent_when_the_library_is_gone(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    enable(site)
    code = f"import site; site.addsitedir({str(site)!r}); print('fine')"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env, check=False
    )  # -S: not even this venv's site-packages, so tango_stepinfo cannot be imported
    assert (done.stdout, done.stderr) == ("fine\n", "")


def test_the_pth_line_imports_nothing_until_tango_step_info(
    fake_tango: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    enable(site)
    code = f"import site, sys; site.addsitedir({str(site)!r})\n"
    code += "import tango_stepinfo_is_not_a_module_name_here\n"
    done = python(code, fake_tango)
    assert "ModuleNotFoundError" in done.stderr  # other names go on to the usual finders
    code = f"import site, sys; site.addsitedir({str(site)!r})\n"
    code += "print([m for m in sys.modules if m.startswith('tango')])\n"
    code += "import tango.workspace\n"
    code += "print('tango_stepinfo._tango_alias' in sys.modules)"
    done = python(code, fake_tango)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "True"]


def test_tango_location_imports_nothing(fake_tango: Path) -> None:
    code = "import sys, tango_stepinfo._tango_alias as a; print(a.tango_location())\n"
    code += "print('tango' in sys.modules)"
    done = python(code, fake_tango)
    assert done.stdout == f"{fake_tango / 'tango' / '__init__.py'}\nFalse\n", done.stderr
    assert _tango_alias.ALIASED == "tango.step_info"


def _status_in_a_child(site: Path) -> subprocess.CompletedProcess[str]:
    """``status(site)`` in a fresh interpreter: a FIFO once made it wait for a writer forever."""
    code = "import sys, pathlib, tango_stepinfo._tango_alias as a\n"
    code += "try:\n print(a.status(pathlib.Path(sys.argv[1])))\n"
    code += "except a.AliasFileError as e:\n print(e)\n"
    environ = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run(
        [sys.executable, "-c", code, str(site)],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,  # a guard against the old hang, not a speed assertion
        check=False,
    )


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_status_of_a_fifo_in_place_of_the_file_is_an_error_not_a_hang(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / PTH_NAME)
    done = _status_in_a_child(tmp_path)
    assert done.stdout == f"{tmp_path / PTH_NAME}: not a regular file (a FIFO)\n", done.stderr


def test_status_of_a_directory_or_an_edited_file_is_an_error_not_off(tmp_path: Path) -> None:
    path = tmp_path / PTH_NAME
    path.mkdir()
    with pytest.raises(_tango_alias.AliasFileError, match=r"not a regular file \(a directory\)"):
        status(tmp_path)
    path.rmdir()
    path.write_text("import os\n" + PTH_LINE)  # Python still runs it: neither on nor off
    with pytest.raises(_tango_alias.AliasFileError) as raised:
        status(tmp_path)
    assert str(raised.value) == (
        f"{path}: is not the file 'tango-alias on' writes (edited?); "
        "'on' rewrites it, 'off' removes it"
    )
    path.write_text(PTH_LINE)
    assert status(tmp_path)


def test_status_follows_a_symlink_as_python_does(tmp_path: Path) -> None:
    real = tmp_path / "real.txt"
    real.write_text(PTH_LINE)
    (tmp_path / PTH_NAME).symlink_to(real)
    assert status(tmp_path)
    real.unlink()  # dangling: Python skips it, so it is off
    assert not status(tmp_path)
    enable(tmp_path)  # replaces the link itself, never writes through it
    assert not (tmp_path / PTH_NAME).is_symlink() and status(tmp_path)


def test_a_failed_enable_leaves_no_temporary_file(tmp_path: Path) -> None:
    (tmp_path / PTH_NAME).mkdir()
    with pytest.raises(IsADirectoryError):
        enable(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [PTH_NAME]


def test_enable_never_writes_through_a_planted_temporary_name(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    site = tmp_path / "site"
    site.mkdir()
    (site / f"{PTH_NAME}.tmp").symlink_to(victim)  # the fixed name the old code wrote to
    enable(site)
    assert victim.read_text() == "keep me\n" and status(site)


def test_the_file_is_readable_by_every_user_of_the_environment(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = enable(tmp_path)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_status_of_a_site_that_is_not_a_folder_is_an_error_not_off(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-site"  # a mistyped --site must not read as "off"
    with pytest.raises(_tango_alias.AliasFileError) as raised:
        status(missing)
    assert str(raised.value) == f"{missing}: no such folder"
