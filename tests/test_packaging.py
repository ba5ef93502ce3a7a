"""A non-editable wheel, installed outside the checkout, finds its Lua scripts."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from coordinator.scripts import SCRIPT_NAMES

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
        "import coordinator.scripts as s, pathlib;"
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
