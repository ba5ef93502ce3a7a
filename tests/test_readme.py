"""The README's examples are real: every ```python and ```sh block runs here, as pasted into a
fresh directory (not this checkout), except the few listed in NOT_RUN with the reason; the
JSON events are parsed as the events they claim to be.

Blocks known to fail as pasted are in BROKEN with the fix: they are run and must still fail
(strict), so the entry has to go when the README is fixed."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from coordinator.protocol.event_models import parse_event
from tests.redis_server import RedisServer, free_port, redis_server_binary

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
# a distinctive line of the block -> why the suite does not run it
NOT_RUN = {
    "scripts/run.sh        #": "sets up a venv and runs the daemon or the whole suite",
    'scripts/test.sh -m "not real and not e2e"': "is the test suite itself",
    "send-nightly-report": "needs a host redis.internal and a program that exist only there",
    "python -m tests.chaos": "the 13-minute chaos run",
    "coordinator redis install-functions": "needs the shipped ACL's installer user "
                                           "(tests/test_deploy.py runs it as that user)",
    'ACL SETUSER coordinator ">NEW-PASSWORD"': "rotates a live deployment's password "
                                               "(placeholders for its host and passwords)",
}
# a distinctive line of the block -> what fails as pasted (the README text to fix)
BROKEN: dict[str, str] = {}


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def block_id(block: str) -> str:
    return next(line for line in block.splitlines() if line.strip())[:40]


def classify(block: str) -> tuple[str, str]:
    for marker, why in NOT_RUN.items():
        if marker in block:
            return "not run", why
    for marker, why in BROKEN.items():
        if marker in block:
            return "broken", why
    return "run", ""


def test_every_block_not_run_is_still_in_the_readme() -> None:
    text = README.read_text()
    for marker in [*NOT_RUN, *BROKEN]:
        assert marker in text, f"{marker!r} is no longer in the README: drop its entry"


@pytest.fixture
def fresh(tmp_path: Path, redis_server: RedisServer) -> tuple[Path, dict[str, str], RedisServer]:
    """A directory outside the checkout, a `coordinator` command on PATH, and a Redis."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    command = bin_dir / "coordinator"
    # `coordinator watch` runs until Ctrl-C: here it gets Ctrl-C after three seconds
    command.write_text(f"""#!/bin/sh
if [ "$1" = watch ]; then
  timeout -s INT 3 {sys.executable} -m coordinator "$@"; s=$?
  if [ $s = 124 ] || [ $s = 130 ] || [ $s = 0 ]; then exit 0; fi; exit $s
fi
exec {sys.executable} -m coordinator "$@"
""")
    command.chmod(command.stat().st_mode | stat.S_IEXEC)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COORDINATOR_")}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", PYTHONPATH=str(ROOT),
               COORDINATOR_REDIS_URL=redis_server.url)
    work = tmp_path / "project"
    work.mkdir()
    # a reader pastes into a Redis without our namespace: what earlier tests left there (a
    # corrupt lease key from the status tests) made these blocks fail when run after them
    client = redis.Redis(port=redis_server.port)
    try:
        stale = list(client.scan_iter(match="{coordinator}*", count=1000))
        if stale:
            client.delete(*stale)
    finally:
        client.close()
    return work, env, redis_server


def run_python(block: str, where: tuple[Path, dict[str, str], RedisServer]) -> subprocess.CompletedProcess[str]:
    work, env, server = where
    code = block.replace("aioredis.Redis()", f"aioredis.Redis(port={server.port})")
    if "async def test_" in code:  # a test module: run it with pytest, as its reader would
        (work / "test_example.py").write_text(code)
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               "test_example.py"], cwd=work, env=env, capture_output=True,
                              text=True, timeout=60, check=False)
    (work / "example.py").write_text(code)
    return subprocess.run([sys.executable, "example.py"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def run_sh(block: str, where: tuple[Path, dict[str, str], RedisServer]) -> subprocess.CompletedProcess[str]:
    work, env, _ = where
    port = free_port()
    # its own Redis in place of the one on 6379, stopped afterwards with every daemon
    script = block.replace("--port 6379", f"--port {port} --save '' --dir {work}")
    env = {**env, "COORDINATOR_REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    wrapped = (f"set -e\n{script}\nsleep 1\ncoordinator status\n"
               f"kill $(jobs -p) 2>/dev/null || true\nwait || true\n"
               f"redis-cli -p {port} shutdown nosave >/dev/null 2>&1 || true\n")
    return subprocess.run(["bash", "-c", wrapped], cwd=work, env=env, capture_output=True,
                          text=True, timeout=90, check=False)


@pytest.mark.e2e
@pytest.mark.parametrize("block", blocks("python"), ids=block_id)
def test_python_block_runs_as_pasted(block: str, fresh: tuple[Path, dict[str, str], RedisServer]) -> None:
    kind, why = classify(block)
    if kind == "not run":
        pytest.skip(why)
    done = run_python(block, fresh)
    ok = done.returncode == 0 and ("passed" in done.stdout or "async def test_" not in block)
    if kind == "broken":
        assert not ok, f"this block runs now: drop its BROKEN entry ({why})"
        return
    assert ok, done.stdout + done.stderr


@pytest.mark.e2e
@pytest.mark.parametrize("block", blocks("sh"), ids=block_id)
def test_sh_block_runs_as_pasted(block: str, fresh: tuple[Path, dict[str, str], RedisServer]) -> None:
    kind, why = classify(block)
    if kind == "not run":
        pytest.skip(why)
    if redis_server_binary() is None:
        pytest.skip("no redis-server binary")
    done = run_sh(block, fresh)
    if kind == "broken":
        assert done.returncode != 0, f"this block runs now: drop its BROKEN entry ({why})"
        return
    assert done.returncode == 0, done.stdout + done.stderr
    assert "leader:" in done.stdout, done.stdout
    if "watch --json" in block:
        first = json.loads(next(line for line in done.stdout.splitlines()
                                if line.startswith("{")))
        assert first["type"] == "resync"


def test_the_readme_events_are_the_events_they_claim_to_be() -> None:
    (events,) = [b for b in blocks("json") if '"type"' in b]
    for line in events.splitlines():
        event = parse_event(line, source="README")
        assert event.to_dict() == json.loads(line), line


async def test_the_fakeredis_example_in_the_readme_passes() -> None:
    """The test of the README's fakeredis block, run in this suite's own event loop."""
    (example,) = [b for b in blocks("python") if "FakeAsyncRedis" in b]
    namespace: dict[str, object] = {}
    exec(compile(example, str(README), "exec"), namespace)
    test = namespace["test_only_one_worker_leads"]
    assert callable(test)
    await test()
