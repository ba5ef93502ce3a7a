"""The real CLI as an operator runs it: watch --json, events, pause/drain/resume, status."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from coordinator import Lease
from coordinator.protocol import keys
from coordinator.protocol.modes import set_automation_mode
from tests.redis_server import RedisServer, free_port, running_redis

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.e2e


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COORDINATOR_")}
    return {**env, "PYTHONPATH": str(ROOT), "COORDINATOR_LOG_FORMAT": "json"}


def coordinator(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator", *args], capture_output=True,
                          text=True, env=cli_env(), timeout=30, check=False)


class WatchProcess:
    """``coordinator watch --json`` as a child process, its stdout read line by line."""

    def __init__(self, url: str, namespace: str) -> None:
        self.lines: list[str] = []
        self._args = ["-m", "coordinator", "watch", "--json", "--redis-url", url,
                      "--namespace", namespace]

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, *self._args, env=cli_env(),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)

    async def next_event(self, timeout: float = 10.0) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        assert line, "watch exited early"
        self.lines.append(line.decode())
        event = json.loads(line)
        assert isinstance(event, dict)
        return event

    async def until(self, kind: str, **fields: Any) -> list[dict[str, Any]]:
        """Events read up to and including the first of ``kind`` with ``fields``."""
        seen = []
        while True:
            event = await self.next_event()
            seen.append(event)
            if event["type"] == kind and all(event.get(k) == v for k, v in fields.items()):
                return seen

    async def stop(self, sig: int) -> tuple[int, str]:
        self.process.send_signal(sig)
        rest, err = await asyncio.wait_for(self.process.communicate(), 10)
        self.lines.extend(rest.decode().splitlines(keepends=True))
        return await self.process.wait(), err.decode()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_watch_json_prints_one_event_per_line_across_a_restart(sig: int) -> None:
    with running_redis() as server:
        watcher = WatchProcess(server.url, "e2e")
        redis = aioredis.Redis(port=server.port)
        try:
            await watcher.start()
            first = await watcher.next_event()
            assert first == {"type": "resync", "lease": "global", "holder_id": None,
                             "holder_host": None, "term": None, "lease_expires_at": None,
                             "at": first["at"]}
            a = Lease(redis, holder_id="a", holder_host="a.host", ttl=5, namespace="e2e")
            got = await a.acquire()
            await a.release(term=got.term)
            await set_automation_mode(redis, "e2e", "paused")
            before = await watcher.until("automation_mode_changed")
            assert [e["type"] for e in before] == [
                "leader_changed", "lease_released", "automation_mode_changed"]
            assert before[0] == {"type": "leader_changed", "lease": "global", "holder_id": "a",
                                 "holder_host": "a.host", "term": got.term,
                                 "previous_holder_id": None,
                                 "at": got.redis_now}
            server.stop()
            assert (await watcher.next_event())["type"] == "disconnected"
            server.start_again()
            await redis.aclose()
            redis = aioredis.Redis(port=server.port)
            b = Lease(redis, holder_id="b", holder_host="b.host", ttl=5, namespace="e2e")
            await b.acquire()
            # whichever came first (the watcher's reconnect or b's acquire), b is reported
            after = await watcher.until("resync")
            if after[-1]["holder_id"] is None:
                after += await watcher.until("leader_changed", holder_id="b")
            assert any(e.get("holder_id") == "b" for e in after)
            status, stderr = await watcher.stop(sig)
        finally:
            if watcher.process.returncode is None:
                watcher.process.kill()
                await watcher.process.wait()
            await redis.aclose()
    assert status == 0, stderr
    assert all(line.endswith("\n") and isinstance(json.loads(line), dict)
               for line in watcher.lines)
    assert "watch.disconnected" in stderr  # logs go to stderr, never to stdout


async def test_watch_json_stdout_is_flushed_per_event_to_a_pipe(redis_server: RedisServer) -> None:
    # the watcher is not on a terminal here: each line must still arrive at once
    watcher = WatchProcess(redis_server.url, "e2e-flush")
    redis = aioredis.Redis(port=redis_server.port)
    try:
        await watcher.start()
        await watcher.next_event()
        started = time.monotonic()
        await set_automation_mode(redis, "e2e-flush", "draining")
        event = await watcher.next_event(timeout=3.0)
        assert event["type"] == "automation_mode_changed"
        assert time.monotonic() - started < 3.0
        status, _ = await watcher.stop(signal.SIGTERM)
        assert status == 0
    finally:
        await set_automation_mode(redis, "e2e-flush", "running")
        await redis.aclose()


async def test_pause_drain_resume_change_status_automation_mode(redis_server: RedisServer) -> None:
    flags = ["--redis-url", redis_server.url, "--namespace", "e2e-modes"]
    redis = aioredis.Redis(port=redis_server.port)
    await redis.delete(keys.automation_mode_key("e2e-modes"), keys.history_key("e2e-modes"))
    await redis.aclose()

    def mode_in_status() -> str:
        done = coordinator("status", "--json", *flags)
        assert done.returncode == 0, done.stderr
        return str(json.loads(done.stdout)["automation_mode"])

    assert mode_in_status() == "running"
    for command, mode, printed in [
        ("pause", "paused", "automation mode: running -> paused"),
        ("pause", "paused", "automation mode: paused (unchanged)"),
        ("drain", "draining", "automation mode: paused -> draining"),
        ("resume", "running", "automation mode: draining -> running"),
    ]:
        done = coordinator(command, *flags)
        assert (done.returncode, done.stdout.strip(), done.stderr) == (0, printed, "")
        assert mode_in_status() == mode
    history = coordinator("events", "--json", *flags)
    assert history.returncode == 0, history.stderr
    changes = [json.loads(line) for line in history.stdout.splitlines()]
    assert [(c["previous_mode"], c["mode"]) for c in changes] == [
        ("running", "paused"), ("paused", "draining"), ("draining", "running")]
    assert all(c["type"] == "automation_mode_changed" and c["id"] for c in changes)
    since = coordinator("events", "--json", "--since", changes[0]["id"], *flags)
    assert len(since.stdout.splitlines()) == 2
    recent = coordinator("events", "--since", "10m", *flags)
    assert recent.returncode == 0 and len(recent.stdout.splitlines()) == 3
    assert "automation mode changed from paused to draining" in recent.stdout


def test_operator_commands_fail_cleanly_without_redis_or_with_bad_input() -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    for args in (["pause"], ["drain"], ["resume"], ["events"]):
        done = coordinator(*args, "--redis-url", nowhere)
        assert done.returncode == 1 and done.stdout == ""
        assert len(done.stderr.splitlines()) == 1 and "Redis unavailable" in done.stderr
    for args in (["events", "--since", "ten minutes"], ["pause", "--namespace", "no spaces"],
                 ["drain", "--redis-url", "http://x"], ["resume", "--to", "x"]):
        done = coordinator(*args)
        assert done.returncode == 2 and done.stdout == "", args
