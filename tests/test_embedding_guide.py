'''The embedding guide's examples (README text in issue 14's report), each run as pasted into
a fresh project: its own directory, no conftest, no pytest configuration (pytest-asyncio in
its default strict mode), the coordinator importable as if installed.'''

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# README: "Testing your own app on fakeredis"
APP_TEST = '''
# test_my_app.py  (pip install coordinator "fakeredis[lua]" pytest pytest-asyncio; then: pytest)
import threading

import fakeredis
import pytest

from coordinator import BackgroundDaemon, Daemon, Hooks, LeaderContext, load_settings

NIGHTLY_RUNS = "{coordinator}:fenced:nightly_runs"


async def nightly(ctx: LeaderContext) -> None:  # the app's leader-only work
    await ctx.fenced_incrby(NIGHTLY_RUNS, 1)


def settings(node_id: str):
    return load_settings(node_id=node_id, lease_ttl=2, renew_interval=0.5)


@pytest.mark.asyncio
async def test_exactly_one_node_runs_the_nightly_job() -> None:
    server = fakeredis.FakeServer()  # one Redis, shared by both nodes
    heard = []
    hooks = Hooks(on_new_leader=lambda holder_id, term: heard.append(holder_id))
    a = Daemon(settings("a"), redis=fakeredis.FakeAsyncRedis(server=server))
    b = Daemon(settings("b"), redis=fakeredis.FakeAsyncRedis(server=server), hooks=hooks)
    async with a, b:
        assert await a.wait_until_leader(timeout=5)
        assert await a.run_scheduler_pass(nightly) == "scheduled"
        assert await b.run_scheduler_pass(nightly) == "skipped_not_leader"
        leading, term = a.leadership()
        assert leading and term is not None
    assert await fakeredis.FakeAsyncRedis(server=server).get(NIGHTLY_RUNS) == b"1"
    assert heard[0] == "a"


def test_a_threaded_app_with_plain_hooks() -> None:
    ran = threading.Event()

    def on_started_leading(ctx: LeaderContext) -> None:  # a plain def: a worker thread
        ctx.blocking.fenced_set("{coordinator}:fenced:owner", ctx.node_id)
        ran.set()

    hooks = Hooks(on_started_leading=on_started_leading)
    with BackgroundDaemon(settings("a"), hooks=hooks, redis=fakeredis.FakeAsyncRedis()) as bg:
        assert bg.wait_until_leader(timeout=5)
        assert ran.wait(5)
        leading, term = bg.leadership()
        assert bg.fenced_incrby(NIGHTLY_RUNS, 1, term=term).value == 1
'''


def test_the_guides_app_test_runs_as_pasted_into_a_fresh_project(tmp_path: Path) -> None:
    (tmp_path / "test_my_app.py").write_text(APP_TEST, encoding="utf-8")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("COORDINATOR_", "PYTEST_"))}
    env["PYTHONPATH"] = str(ROOT)  # stands for `pip install coordinator`
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_my_app.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
