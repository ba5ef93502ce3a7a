'''The embedding guide's app test (docs/embedding.md), run as pasted into
a fresh project: its own directory, no conftest, no pytest configuration (pytest-asyncio in
its default strict mode), the coordinator importable as if installed.'''

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# README: "Testing your own app on fakeredis"
GUIDE = ROOT / "docs" / "embedding.md"


def _app_test() -> str:
    """The guide's one block that starts with ``# test_my_app.py``: what a reader pastes."""
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(encoding="utf-8"), flags=re.S)
    (app,) = [b for b in blocks if b.startswith("# test_my_app.py")]
    return app


def test_the_guides_app_test_runs_as_pasted_into_a_fresh_project(tmp_path: Path) -> None:
    (tmp_path / "test_my_app.py").write_text(_app_test(), encoding="utf-8")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("COORDINATOR_", "PYTEST_"))}
    env["PYTHONPATH"] = str(ROOT)  # stands for `pip install coordinator`
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_my_app.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


def test_every_python_block_of_the_guide_compiles() -> None:
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) >= 4
    for block in blocks:
        compile(block, str(GUIDE), "exec")
