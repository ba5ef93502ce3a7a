"""A non-editable wheel, installed outside the checkout, finds its Lua scripts."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from coordinator.protocol.scripts import SCRIPT_NAMES

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True,
    )
    (built,) = out.glob("coordinator-*.whl")
    return built


def test_wheel_ships_the_lua_scripts_and_only_the_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    lua = sorted(n for n in names if n.endswith(".lua"))
    assert lua == sorted(f"coordinator/lua/{p.name}" for p in (ROOT / "lua").glob("*.lua"))
    top_levels = {n.split("/")[0] for n in names}
    assert top_levels == {"coordinator", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1]
                          + ".dist-info"}


def test_installed_wheel_loads_every_script_from_outside_the_checkout(
    wheel: Path, tmp_path: Path
) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
         str(wheel)],
        check=True,
    )
    probe = (
        "import coordinator.protocol.scripts as s, pathlib;"
        "d = s.lua_directory();"
        f"assert d.is_relative_to(pathlib.Path({str(target)!r})), d;"
        "print(sorted(len(s.script_source(n)) > 0 for n in s.SCRIPT_NAMES))"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {probe}"],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str([True] * len(SCRIPT_NAMES))


def test_installed_wheel_starts_its_helpers_from_its_own_copy(wheel: Path, tmp_path: Path) -> None:
    """The watchdog and the guardian are started by module name from the folder holding the
    package the daemon runs: from an installed wheel, that is the wheel's site, and the
    modules each imports are in the wheel."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
         str(wheel)],
        check=True,
    )
    probe = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(target)!r})\n"
        "from coordinator.child.watchdog_link import watchdog_command\n"
        "from coordinator.guardian.guardian_link import guardian_command\n"
        "print(json.dumps([watchdog_command(0, 0.5, 'n'), guardian_command(0, 'n')]))\n"
    )
    done = subprocess.run([sys.executable, "-I", "-c", probe], cwd=tmp_path, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    for command, prog in zip(json.loads(done.stdout), ("watchdog", "guardian"), strict=True):
        assert command[4] == str(target.resolve()), command[4:6]
        ran = subprocess.run([*command[:6], "--help"], cwd=tmp_path, capture_output=True,
                             text=True, timeout=30, check=False)
        assert ran.returncode == 0, ran.stderr
        assert f"coordinator-{prog}" in ran.stdout
