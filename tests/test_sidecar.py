"""The helper processes' start (``python -I -c BOOTSTRAP``): they load this package from
the folder the daemon's copy lives in, import nothing outside the standard library and the
package's stdlib-only modules, and keep ``-I``'s protection from the user's environment."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from coordinator.child.watchdog_link import watchdog_command
from coordinator.guardian.guardian_link import guardian_command
from coordinator.sidecar import BOOTSTRAP, PACKAGE_ROOT

# what each helper may load of the package: nothing that reaches for redis, pydantic or asyncio
ALLOWED = {
    # the packages' __init__ modules hold docstrings only
    "watchdog": {"coordinator", "coordinator.child", "coordinator.child.watchdog_rules",
                 "coordinator.child.watchdog_processes"},
    "guardian": {"coordinator", "coordinator.guardian", "coordinator.guardian.guardian_redis"},
}
FORBIDDEN = {"redis", "pydantic", "pydantic_settings", "structlog", "asyncio", "hiredis"}
COMMANDS: dict[str, Callable[[], list[str]]] = {
    "watchdog": lambda: watchdog_command(0, 0.5, "t"),
    "guardian": lambda: guardian_command(0, "t"),
}


# run first: prints, as the helper exits, every module it loaded
REPORT_MODULES = ("import atexit, sys\n"
                  "atexit.register(lambda: print('MODULES', *sorted(sys.modules), file=sys.stderr))\n")


def _loaded(argv: list[str]) -> set[str]:
    """The modules in ``sys.modules`` when ``argv`` (a ``python -I -c CODE ...`` command)
    exits."""
    assert argv[1:3] == ["-I", "-c"], argv
    done = subprocess.run([*argv[:3], REPORT_MODULES + argv[3], *argv[4:]], capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("MODULES ")]
    return set(line.split()[1:])


def _help(command: list[str]) -> list[str]:
    """``command`` with its own arguments replaced by ``--help``: every module-level import
    of the helper runs, then argparse exits."""
    module_at = command.index(BOOTSTRAP) + 2
    return [*command[:module_at + 1], "--help"]


@pytest.mark.parametrize("helper", sorted(COMMANDS))
def test_a_helper_imports_only_the_standard_library_and_its_own_modules(helper: str) -> None:
    baseline = _loaded([sys.executable, "-I", "-c", "pass"])  # what site loads anyway
    loaded = _loaded(_help(COMMANDS[helper]())) - baseline
    assert any(n.startswith("coordinator.") for n in loaded), sorted(loaded)  # it did load them
    assert not {n.split(".")[0] for n in loaded} & FORBIDDEN, sorted(
        n for n in loaded if n.split(".")[0] in FORBIDDEN)
    outside = {n for n in loaded if n.split(".")[0] not in sys.stdlib_module_names
               and n.split(".")[0] != "coordinator"}
    assert not outside, sorted(outside)
    ours = {n for n in loaded if n.split(".")[0] == "coordinator"}
    assert ours <= ALLOWED[helper], sorted(ours - ALLOWED[helper])


def test_the_command_names_the_module_by_its_dotted_name_and_the_daemons_own_copy() -> None:
    command = watchdog_command(5, 0.5, "n")
    assert command[:4] == [sys.executable, "-I", "-c", BOOTSTRAP]
    assert command[4:6] == [str(PACKAGE_ROOT), "coordinator.child.watchdog"]
    assert (PACKAGE_ROOT / "coordinator" / "__init__.py").samefile(
        Path(sys.modules["coordinator"].__file__ or ""))
    assert guardian_command(5, "n")[4:6] == [str(PACKAGE_ROOT), "coordinator.guardian.guardian"]


def test_the_bootstrap_loads_the_package_from_the_folder_given_and_runs_the_module_as_main(
    tmp_path: Path,
) -> None:
    """Not the copy ``sys.path`` would find (this venv's editable install names /work/main
    or wherever it was installed from), and without putting the folder on ``sys.path``: what
    else lies beside the package (a site-packages holds much) must not shadow the standard
    library."""
    package = tmp_path / "coordinator"
    package.mkdir()
    (tmp_path / "json.py").write_text("raise SystemExit('a json.py beside the package got in')\n")
    (package / "__init__.py").write_text("")
    (package / "sibling.py").write_text("WHERE = __file__\n")
    (package / "probe.py").write_text(
        "import json, sys, coordinator\n"
        "from coordinator.sibling import WHERE\n"
        "print(coordinator.__file__, WHERE, __name__, sys.argv[1:],\n"
        f"      {str(tmp_path)!r} in sys.path, sep='\\n')\n")
    done = subprocess.run([sys.executable, "-I", "-c", BOOTSTRAP, str(tmp_path),
                           "coordinator.probe", "--a", "b"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [str(package / "__init__.py"), str(package / "sibling.py"),
                                        "__main__", "['--a', 'b']", "False"]


def test_a_missing_package_is_a_clear_exit(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-I", "-c", BOOTSTRAP, str(tmp_path),
                           "coordinator.child.watchdog", "--help"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 1
    assert f"no package for coordinator.child.watchdog in {tmp_path}" in done.stderr


@pytest.mark.parametrize("helper", sorted(COMMANDS))
def test_the_users_environment_stays_out(helper: str, tmp_path: Path) -> None:
    """PYTHONPATH and the modules in the current folder are what ``-I`` keeps out; the
    bootstrap must not let them back in."""
    trap = tmp_path / "trap"
    (trap / "coordinator").mkdir(parents=True)
    for module in ("json.py", "argparse.py", "coordinator/__init__.py"):
        (trap / module).write_text("raise SystemExit('the user environment got in')\n")
    env = {**os.environ, "PYTHONPATH": str(trap)}
    done = subprocess.run(_help(COMMANDS[helper]()), cwd=trap, env=env, capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert f"coordinator-{helper}" in done.stdout
