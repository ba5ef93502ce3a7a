"""How the daemon starts its standard-library-only helper processes (the watchdog, the
guardian): ``python -I -c BOOTSTRAP <folder> <module> <args...>``.

``-I`` keeps the user's environment out (PYTHONPATH, the user's site, the current folder),
and with it not even a script's own folder is on ``sys.path``: a helper started as a file
could not import a sibling. BOOTSTRAP instead loads the very package the daemon runs, looked
up in the folder that contains it and nowhere else (importlib's path finder on that folder
alone: the folder is not put on ``sys.path``, so nothing else in it, a site-packages say,
can shadow the standard library), then runs the module by name as ``__main__``, as
``python -m`` would. It adds a handful of standard-library imports (runpy, importlib.util)
to the helper's start, which stays free of the daemon's dependencies.
"""

from __future__ import annotations

import sys
from pathlib import Path

import coordinator

# the folder that contains the package: a source checkout or a site-packages
PACKAGE_ROOT = Path(coordinator.__file__).resolve().parent.parent

BOOTSTRAP = """\
import sys, runpy, importlib.machinery, importlib.util
root, name = sys.argv.pop(1), sys.argv.pop(1)
spec = importlib.machinery.PathFinder.find_spec(name.partition(".")[0], [root])
if spec is None or spec.loader is None:
    raise SystemExit(f"no package for {name} in {root}")
package = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = package
spec.loader.exec_module(package)
runpy.run_module(name, run_name="__main__", alter_sys=True)
"""


def sidecar_command(module: str, args: list[str]) -> list[str]:
    """The command line that runs ``module`` (a dotted name in this package) with ``args``,
    isolated from the user's environment."""
    return [sys.executable, "-I", "-c", BOOTSTRAP, str(PACKAGE_ROOT), module, *args]
